"""dalle-server --device cuda on the emulated CUDA device: $BUILD/dalle-server-emu is the
server linked with kernels/cuda compiled against kernels/cuda/emu (docs/gpu-emulator.md), so
the CUDA backend's kernels, cuBLAS calls and recorded decode steps run on the CPU. One image
end to end (text, decode, VQGAN, CLIP ranking, JPEG) and the device is reported as cuda.
One 256-step generation on fibers takes ~30 s here (minutes under ASan: skipped there, the
emulated kernels run under ASan in tests/gpu/test_gpu_emu.c)."""
import os

import pytest

from conftest import BIN, Server, decode_images, jpeg_size

EMU_BIN = BIN.with_name("dalle-server-emu")
SANITIZED = EMU_BIN.exists() and b"__asan_init" in EMU_BIN.read_bytes()


@pytest.mark.skipif(SANITIZED, reason="a generation on fibers under ASan takes minutes")
def test_generate_on_emulated_cuda_device():
    s = Server("--device", "cuda", binary=EMU_BIN,
               env={"DALLE_EMU_SCHEDULES": os.environ.get("DALLE_EMU_SCHEDULES", "forward"),
                    "OMP_WAIT_POLICY": "passive", "OPENBLAS_NUM_THREADS": "1"})
    try:
        info = s.get("/info").json()
        assert info["model"]["backend"] == "cuda", info
        assert [d["backend"] for d in info["devices"]] == ["cuda"], info
        body = {"prompt": "a red square", "n": 1, "seed": 3}
        a = s.post("/generate", body)
        assert a.status_code == 200, a.text
        j = a.json()
        [img] = decode_images(j["images"])
        assert jpeg_size(img) == (64, 64)
        assert j["timings_ms"]["decode"] > 0 and j["timings_ms"]["clip"] >= 0
    finally:
        s.stop()
