"""Minimal writers for the tests' bad inputs, without torch or flax: a torch.save zip (hand-written
pickle opcodes: what torch.save emits for a dict of tensors) and a flax msgpack file."""
import io
import struct
import zipfile

import numpy as np

_STORAGE = {np.dtype("float32"): "FloatStorage", np.dtype("float16"): "HalfStorage",
            np.dtype("int64"): "LongStorage"}
_FLAX_DTYPE = {np.dtype("float32"): "float32", np.dtype("float16"): "float16", np.dtype("int64"): "int64"}


def _u(s):
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def _int(n):
    return b"J" + struct.pack("<i", n)


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def save_torch(path, tensors):
    """tensors: name → numpy array (float32/float16/int64). Writes what torch.save writes for a
    dict of contiguous tensors (zip: archive/data.pkl, archive/data/N, archive/version)."""
    pkl = bytearray(b"\x80\x02}(")  # PROTO 2, EMPTY_DICT, MARK
    blobs = []
    for i, (k, a) in enumerate(tensors.items()):
        a = np.ascontiguousarray(a)
        stride, acc = [], 1
        for s in reversed(a.shape):
            stride.append(acc)
            acc *= s
        stride.reverse()
        pid = _tuple([_u("storage"), b"ctorch\n" + _STORAGE[a.dtype].encode() + b"\n", _u(str(i)), _u("cpu"),
                      _int(a.size)]) + b"Q"
        pkl += _u(k)
        pkl += b"ctorch._utils\n_rebuild_tensor_v2\n"
        pkl += _tuple([pid, _int(0), _tuple([_int(s) for s in a.shape]), _tuple([_int(s) for s in stride]),
                       b"\x89", b"ccollections\nOrderedDict\n)R"]) + b"R"
        blobs.append((f"archive/data/{i}", a.tobytes()))
    pkl += b"u."  # SETITEMS, STOP
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", bytes(pkl))
        for name, b in blobs:
            z.writestr(name, b)
        z.writestr("archive/version", "3\n")


def _pack(o, out):
    if isinstance(o, dict):
        n = len(o)
        out += bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        for k, v in o.items():
            _pack(str(k), out)
            _pack(v, out)
    elif isinstance(o, bool):
        out += b"\xc3" if o else b"\xc2"
    elif isinstance(o, int):
        out += b"\xd3" + struct.pack(">q", o)
    elif isinstance(o, str):
        b = o.encode()
        out += b"\xdb" + struct.pack(">I", len(b)) + b
    elif isinstance(o, (list, tuple)):
        out += b"\xdd" + struct.pack(">I", len(o))
        for v in o:
            _pack(v, out)
    elif isinstance(o, bytes):
        out += b"\xc6" + struct.pack(">I", len(o)) + o
    elif isinstance(o, np.ndarray):
        payload = bytearray()
        _pack([list(o.shape), _FLAX_DTYPE[o.dtype], np.ascontiguousarray(o).tobytes()], payload)
        out += b"\xc9" + struct.pack(">I", len(payload)) + b"\x01" + payload
    else:
        raise TypeError(type(o))


def save_flax(path, tree):
    """tree: nested dict of numpy arrays → flax msgpack (ExtType 1 arrays)."""
    out = bytearray()
    _pack(tree, out)
    with open(path, "wb") as f:
        f.write(bytes(out))
