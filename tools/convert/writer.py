"""Streaming safetensors writer: the header is computed from the shapes alone, then each tensor is
produced, checked, narrowed to the output dtype and written before the next one is read."""
import json
import os
import struct

import numpy as np

from .readers import ConvertError, release_pages

ALIGN = 256
OUT_DTYPES = {"f32": ("F32", 4), "f16": ("F16", 2), "bf16": ("BF16", 2)}


def order_for_alignment(items):
    """Order (name, nbytes) so that as many tensors as possible start ALIGN-aligned: big tensors
    first; after a tensor that leaves the offset unaligned, the smallest tensor that closes the
    gap exactly (or else the smallest one) follows."""
    rest = sorted(items, key=lambda t: (-t[1], t[0]))
    out, off = [], 0
    while rest:
        gap = (-off) % ALIGN
        if gap == 0:
            pick = rest[0]
        else:
            closing = [t for t in rest if t[1] % ALIGN == gap]
            pick = closing[-1] if closing else rest[-1]
        rest.remove(pick)
        out.append(pick)
        off += pick[1]
    return [n for n, _ in out]


def f32_to_bf16_bits(a):
    """float32 → bfloat16 bit patterns, round to nearest even (inputs are finite)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype("<u2")


def narrow(name, a, dtype):
    if not np.all(np.isfinite(a)):
        raise ConvertError(f"{name}: contains NaN or Inf")
    if dtype == "f32":
        return np.ascontiguousarray(a, dtype="<f4")
    if dtype == "f16":
        big = np.abs(a) > 65504.0
        if big.any():
            raise ConvertError(f"{name}: {int(big.sum())} value(s) exceed the fp16 range (max |x| "
                               f"{float(np.abs(a).max()):g}); use --dtype f32 or bf16")
        return np.ascontiguousarray(a, dtype="<f2")
    if dtype == "bf16":
        return f32_to_bf16_bits(a)
    raise ValueError(dtype)


def write_safetensors(path, plan, dtype, metadata=None):
    """plan: list of (name, shape, produce) where produce() returns a float32 array of that shape.
    Returns (file size, aligned tensor count, tensor count)."""
    st_dtype, itemsize = OUT_DTYPES[dtype]
    shapes = {}
    producers = {}
    for name, shape, produce in plan:
        if name in shapes:
            raise ConvertError(f"{name}: produced twice")
        shapes[name] = tuple(int(s) for s in shape)
        producers[name] = produce
    nbytes = {k: int(np.prod(s, dtype=np.int64)) * itemsize for k, s in shapes.items()}
    order = order_for_alignment(list(nbytes.items()))
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for k in order:
        header[k] = {"dtype": st_dtype, "shape": list(shapes[k]), "data_offsets": [off, off + nbytes[k]]}
        off += nbytes[k]
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-(8 + len(hb))) % ALIGN)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for k in order:
                a = producers[k]()
                if tuple(a.shape) != shapes[k]:
                    raise ConvertError(f"{k}: produced shape {list(a.shape)}, planned {list(shapes[k])}")
                b = narrow(k, a, dtype)
                del a
                f.write(memoryview(b).cast("B"))
                del b
                release_pages()
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)
    start = 8 + len(hb)
    aligned = sum(1 for k in order if (start + header[k]["data_offsets"][0]) % ALIGN == 0)
    return os.path.getsize(path), aligned, len(order)
