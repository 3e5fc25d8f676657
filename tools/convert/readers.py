"""Readers for the published checkpoint formats, without torch, jax or flax.

Every reader maps the file into memory (mmap) and returns lazy tensors: nothing is read until a
tensor is asked for, and then only that tensor (or one layer of a scanned stack) is copied, so a
conversion holds one tensor at a time however large the checkpoint is.

  * read_torch(path)       torch.save zip archives (min-dalle *.pt, Hugging Face pytorch_model.bin):
                           data.pkl through a restricted unpickler that knows only tensors,
                           storages and OrderedDict; the storages are read in place (STORED
                           members of the zip).
  * read_flax_msgpack(path) flax.serialization.to_bytes / msgpack_serialize files
                           (flax_model.msgpack): nested string-keyed maps, ndarray ExtType 1,
                           numpy scalar ExtType 3, chunked arrays {"__msgpack_chunked_array__"}.
  * read_safetensors(path) safetensors files.
"""
import json
import mmap
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np


class ConvertError(Exception):
    pass


# dtype names → (numpy storage dtype, our name). bfloat16 is carried as uint16 bit patterns.
DTYPES = {
    "float32": (np.dtype("<f4"), "f32"),
    "float16": (np.dtype("<f2"), "f16"),
    "bfloat16": (np.dtype("<u2"), "bf16"),
    "float64": (np.dtype("<f8"), "f64"),
    "int64": (np.dtype("<i8"), "i64"),
    "int32": (np.dtype("<i4"), "i32"),
    "uint8": (np.dtype("u1"), "u8"),
    "bool": (np.dtype("?"), "bool"),
}


def _to_f32(a, kind):
    if kind == "bf16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


class Lazy:
    """A tensor not read yet: shape, kind ('f32', 'f16', 'bf16', ...), and a way to get it.

    get_flat(start, count) returns `count` elements from flat position `start` as a numpy array
    (a view of the mapped file where possible) of the storage dtype."""

    def __init__(self, shape, kind, get_flat, where):
        self.shape = tuple(int(s) for s in shape)
        self.kind = kind
        self._get_flat = get_flat
        self.where = where  # for messages: "file: key"

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_float(self):
        return self.kind in ("f32", "f16", "bf16", "f64")

    def f32(self):
        """The whole tensor as a new C-contiguous float32 array."""
        return _to_f32(self._get_flat(0, self.size), self.kind).reshape(self.shape)

    def index0(self, i):
        """Lazy view of tensor[i] (first axis), e.g. one layer of a scanned stack."""
        if not self.shape or not 0 <= i < self.shape[0]:
            raise ConvertError(f"{self.where}: cannot take index {i} of shape {list(self.shape)}")
        inner = self.shape[1:]
        n = 1
        for s in inner:
            n *= s
        base = self._get_flat
        return Lazy(inner, self.kind, lambda s, c: base(i * n + s, c), f"{self.where}[{i}]")


# ---------------------------------------------------------------------------------------------
# safetensors

ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
             "I64": "int64", "I32": "int32", "U8": "uint8", "BOOL": "bool"}


_MAPS = []  # every mapped input, so that release_pages() can drop what was read


def release_pages():
    """Tell the kernel the mapped input pages read so far are not needed any more: they are clean
    file pages (re-read from the page cache if needed again), but while mapped they count in
    the resident set. Called after each tensor is written, so RSS stays about one tensor."""
    for mm in _MAPS:
        if hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass


def _map(path):
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open: {e.strerror}")
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ConvertError(f"{path}: empty file")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    _MAPS.append(mm)
    return mm


def _flat_reader(mm, offset, np_dtype, n_total, where):
    def get(start, count):
        if start < 0 or count < 0 or start + count > n_total:
            raise ConvertError(f"{where}: read past the tensor")
        return np.frombuffer(mm, dtype=np_dtype, count=count, offset=offset + start * np_dtype.itemsize)
    return get


def read_safetensors(path):
    mm = _map(path)
    if len(mm) < 8:
        raise ConvertError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", mm[:8])
    if n > len(mm) - 8 or n > 100 << 20:
        raise ConvertError(f"{path}: header length {n} does not fit the file ({len(mm)} bytes)")
    try:
        header = json.loads(bytes(mm[8:8 + n]).decode("utf-8"))
    except ValueError as e:
        raise ConvertError(f"{path}: header is not JSON: {e}")
    if not isinstance(header, dict):
        raise ConvertError(f"{path}: header is not a JSON object")
    base = 8 + n
    out = OrderedDict()
    for k, v in header.items():
        if k == "__metadata__":
            continue
        where = f"{path}: {k}"
        try:
            dt, shape, (a, b) = v["dtype"], v["shape"], v["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ConvertError(f"{where}: malformed header entry {v!r}")
        if dt not in ST_DTYPES:
            raise ConvertError(f"{where}: unsupported dtype {dt}")
        np_dtype, kind = DTYPES[ST_DTYPES[dt]]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if b - a != count * np_dtype.itemsize or base + b > len(mm) or a < 0:
            raise ConvertError(f"{where}: data_offsets [{a}, {b}] do not match shape {shape} {dt} "
                               f"or the file size")
        out[k] = Lazy(shape, kind, _flat_reader(mm, base + a, np_dtype, count, where), where)
    return out


# ---------------------------------------------------------------------------------------------
# torch zip (torch.save since torch 1.6)

TORCH_STORAGES = {
    "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64", "LongStorage": "int64", "IntStorage": "int32",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}
TORCH_DTYPES = {"float32": "float32", "float": "float32", "float16": "float16", "half": "float16",
                "bfloat16": "bfloat16", "float64": "float64", "double": "float64",
                "int64": "int64", "long": "int64", "int32": "int32", "uint8": "uint8", "bool": "bool"}


class _StorageType:
    def __init__(self, dtype_name):
        self.dtype_name = dtype_name


class _Storage:
    def __init__(self, dtype_name, get_flat, numel, where):
        self.dtype_name, self.get_flat, self.numel, self.where = dtype_name, get_flat, numel, where


class _TorchDtype:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_rest):
    if not isinstance(storage, _Storage):
        raise ConvertError(f"tensor built from {type(storage).__name__}, not a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    np_dtype, kind = DTYPES[storage.dtype_name]
    numel = 1
    for s in size:
        numel *= s
    # C-contiguous strides expected; anything else is gathered element-wise on read
    want, acc = [], 1
    for s in reversed(size):
        want.append(acc)
        acc *= s
    want = tuple(reversed(want))
    span = 1 + sum((s - 1) * st for s, st in zip(size, stride)) if numel else 0
    if offset < 0 or offset + span > storage.numel:
        raise ConvertError(f"{storage.where}: tensor of size {list(size)} at offset {offset} runs "
                           f"past its storage of {storage.numel} elements")
    if stride == want or numel <= 1:
        get = lambda s, c, g=storage.get_flat, o=offset: g(o + s, c)  # noqa: E731
    else:
        def get(s, c, g=storage.get_flat, o=offset):
            full = np.lib.stride_tricks.as_strided(
                g(o, span), shape=size, strides=tuple(st * np_dtype.itemsize for st in stride))
            return np.ascontiguousarray(full).reshape(-1)[s:s + c]
    t = Lazy(size, kind, get, storage.where)
    return t


def _rebuild_parameter(data, *_rest):
    return data


class _TorchUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): OrderedDict,
    }

    def __init__(self, f, path, storage_reader):
        super().__init__(f)
        self.path = path
        self.storage_reader = storage_reader

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in TORCH_STORAGES:
            return _StorageType(TORCH_STORAGES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return _TorchDtype(TORCH_DTYPES[name])
        if module == "torch" and name == "UntypedStorage":
            return _StorageType(None)
        raise ConvertError(f"{self.path}: refusing to unpickle {module}.{name} (only tensors, "
                           f"storages and dicts are allowed in a weights file)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ConvertError(f"{self.path}: unknown persistent id {pid!r:.80}")
        stype, key, _loc, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        dtype_name = stype.dtype_name if isinstance(stype, _StorageType) else (
            stype.name if isinstance(stype, _TorchDtype) else None)
        if dtype_name is None:
            raise ConvertError(f"{self.path}: storage {key} has no dtype ({stype!r:.60})")
        return self.storage_reader(key, dtype_name, numel)


def read_torch(path):
    """A torch.save zip → {name: Lazy}. Accepts a flat dict (or OrderedDict) of tensors, or a
    dict with a 'state_dict' entry holding one."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise ConvertError(f"{path}: legacy (pre-1.6, non-zip) torch.save format; re-save it with "
                               f"a recent torch (torch.save(torch.load(p), p)) and convert again")
        raise ConvertError(f"{path}: not a torch zip archive")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open: {e.strerror}")
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise ConvertError(f"{path}: expected one */data.pkl in the archive, found {len(pkl)}")
    prefix = pkl[0][: -len("data.pkl")]
    mm = _map(path)

    def storage_reader(key, dtype_name, numel):
        name = f"{prefix}data/{key}"
        where = f"{path}: storage {key}"
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise ConvertError(f"{where}: member {name} missing from the archive")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ConvertError(f"{where}: compressed member; torch writes them stored")
        if dtype_name not in DTYPES:
            raise ConvertError(f"{where}: unsupported dtype {dtype_name}")
        np_dtype = DTYPES[dtype_name][0]
        h = info.header_offset
        if mm[h:h + 4] != b"PK\x03\x04":
            raise ConvertError(f"{where}: bad local header")
        n_name, n_extra = struct.unpack("<HH", mm[h + 26:h + 30])
        off = h + 30 + n_name + n_extra
        if info.file_size != numel * np_dtype.itemsize or off + info.file_size > len(mm):
            raise ConvertError(f"{where}: {info.file_size} bytes for {numel} {dtype_name} elements")
        return _Storage(dtype_name, _flat_reader(mm, off, np_dtype, numel, where), numel, where)

    with zf.open(pkl[0]) as f:
        try:
            obj = _TorchUnpickler(f, path, storage_reader).load()
        except ConvertError:
            raise
        except Exception as e:  # noqa: BLE001 (a damaged pickle raises anything)
            raise ConvertError(f"{path}: cannot read data.pkl: {type(e).__name__}: {e}")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    out = OrderedDict()
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, Lazy):
            raise ConvertError(f"{path}: entry {k!r} is not a named tensor")
        v.where = f"{path}: {k}"
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# flax msgpack

class _Msgpack:
    """Just enough msgpack to walk a flax checkpoint in place (arrays are not copied)."""

    def __init__(self, mm, path):
        self.mm, self.path = mm, path

    def err(self, pos, what):
        raise ConvertError(f"{self.path}: byte {pos}: {what}")

    def _n(self, pos, fmt, size):
        if pos + size > len(self.mm):
            self.err(pos, "truncated")
        return struct.unpack(fmt, self.mm[pos:pos + size])[0], pos + size

    def read(self, pos, key="", depth=0):
        if depth > 64:
            self.err(pos, "nesting deeper than 64")
        if pos >= len(self.mm):
            self.err(pos, "truncated")
        b = self.mm[pos]
        pos += 1
        if b <= 0x7f:
            return b, pos
        if b >= 0xe0:
            return b - 256, pos
        if 0x80 <= b <= 0x8f:
            return self._map(pos, b & 0x0f, key, depth)
        if 0x90 <= b <= 0x9f:
            return self._array(pos, b & 0x0f, key, depth)
        if 0xa0 <= b <= 0xbf:
            return self._str(pos, b & 0x1f)
        if b == 0xc0:
            return None, pos
        if b == 0xc2:
            return False, pos
        if b == 0xc3:
            return True, pos
        simple = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q", 0xd0: ">b", 0xd1: ">h",
                  0xd2: ">i", 0xd3: ">q", 0xca: ">f", 0xcb: ">d"}
        if b in simple:
            return self._n(pos, simple[b], struct.calcsize(simple[b]))
        if b in (0xd9, 0xda, 0xdb):
            n, pos = self._n(pos, {0xd9: ">B", 0xda: ">H", 0xdb: ">I"}[b], {0xd9: 1, 0xda: 2, 0xdb: 4}[b])
            return self._str(pos, n)
        if b in (0xc4, 0xc5, 0xc6):
            n, pos = self._n(pos, {0xc4: ">B", 0xc5: ">H", 0xc6: ">I"}[b], {0xc4: 1, 0xc5: 2, 0xc6: 4}[b])
            if pos + n > len(self.mm):
                self.err(pos, "truncated bin")
            return ("bin", pos, n), pos + n
        if b in (0xdc, 0xdd):
            n, pos = self._n(pos, ">H" if b == 0xdc else ">I", 2 if b == 0xdc else 4)
            return self._array(pos, n, key, depth)
        if b in (0xde, 0xdf):
            n, pos = self._n(pos, ">H" if b == 0xde else ">I", 2 if b == 0xde else 4)
            return self._map(pos, n, key, depth)
        if 0xd4 <= b <= 0xd8:
            n = 1 << (b - 0xd4)
            code, pos = self._n(pos, ">b", 1)
            return self._ext(pos, code, n, key, depth)
        if b in (0xc7, 0xc8, 0xc9):
            n, pos = self._n(pos, {0xc7: ">B", 0xc8: ">H", 0xc9: ">I"}[b], {0xc7: 1, 0xc8: 2, 0xc9: 4}[b])
            code, pos = self._n(pos, ">b", 1)
            return self._ext(pos, code, n, key, depth)
        self.err(pos - 1, f"unsupported msgpack type byte 0x{b:02x}")

    def _str(self, pos, n):
        if pos + n > len(self.mm):
            self.err(pos, "truncated string")
        try:
            return bytes(self.mm[pos:pos + n]).decode("utf-8"), pos + n
        except UnicodeDecodeError:
            self.err(pos, "string is not UTF-8")

    def _array(self, pos, n, key, depth):
        out = []
        for _ in range(n):
            v, pos = self.read(pos, key, depth + 1)
            out.append(v)
        return out, pos

    def _map(self, pos, n, key, depth):
        out = OrderedDict()
        for _ in range(n):
            k, pos = self.read(pos, key, depth + 1)
            if isinstance(k, int):
                k = str(k)
            if not isinstance(k, str):
                self.err(pos, f"{key}: map key is not a string")
            if k in out:
                self.err(pos, f"{key}/{k}: duplicate key")
            v, pos = self.read(pos, f"{key}/{k}" if key else k, depth + 1)
            out[k] = v
        return out, pos

    def _ext(self, pos, code, n, key, depth):
        end = pos + n
        if end > len(self.mm):
            self.err(pos, "truncated ext")
        if code not in (1, 3):
            self.err(pos, f"{key}: msgpack ext type {code} (flax: 1 ndarray, 3 numpy scalar) "
                          f"is not a weight array")
        payload, p2 = self.read(pos, key, depth + 1)
        if p2 != end or not isinstance(payload, list) or len(payload) != 3:
            self.err(pos, f"{key}: malformed ndarray payload")
        shape, dtype_name, buf = payload
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            self.err(pos, f"{key}: malformed shape {shape!r}")
        if isinstance(dtype_name, tuple) and dtype_name[0] == "bin":
            dtype_name = bytes(self.mm[dtype_name[1]:dtype_name[1] + dtype_name[2]]).decode()
        if dtype_name not in DTYPES:
            self.err(pos, f"{key}: unsupported dtype {dtype_name!r}")
        if not (isinstance(buf, tuple) and buf[0] == "bin"):
            self.err(pos, f"{key}: array data is not binary")
        np_dtype, kind = DTYPES[dtype_name]
        count = 1
        for s in shape:
            count *= s
        if buf[2] != count * np_dtype.itemsize:
            self.err(pos, f"{key}: {buf[2]} bytes of data for shape {shape} {dtype_name}")
        where = f"{self.path}: {key}"
        return Lazy(shape, kind, _flat_reader(self.mm, buf[1], np_dtype, count, where), where), end


def _unchunk(d, where):
    shape = d.get("shape")
    chunks = d.get("chunks")
    if not isinstance(shape, dict) or not isinstance(chunks, dict):
        raise ConvertError(f"{where}: chunked array without shape/chunks maps")
    try:
        shape = [shape[str(i)] for i in range(len(shape))]
        parts = [chunks[str(i)] for i in range(len(chunks))]
    except KeyError as e:
        raise ConvertError(f"{where}: chunked array: missing index {e}")
    if not all(isinstance(p, Lazy) and len(p.shape) == 1 for p in parts):
        raise ConvertError(f"{where}: chunked array parts must be flat arrays")
    kinds = {p.kind for p in parts}
    if len(kinds) != 1:
        raise ConvertError(f"{where}: chunked array parts of different dtypes {sorted(kinds)}")
    sizes = [p.shape[0] for p in parts]
    total = 1
    for s in shape:
        total *= s
    if sum(sizes) != total:
        raise ConvertError(f"{where}: chunks hold {sum(sizes)} elements, shape {shape} needs {total}")
    starts = np.cumsum([0] + sizes)

    def get(s, c):
        pieces, pos, end = [], s, s + c
        while pos < end:
            j = int(np.searchsorted(starts, pos, side="right") - 1)
            take = min(end, int(starts[j + 1])) - pos
            pieces.append(parts[j]._get_flat(pos - int(starts[j]), take))
            pos += take
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else parts[0]._get_flat(0, 0)
    return Lazy(shape, kinds.pop(), get, where)


def _resolve_chunks(tree, where):
    if isinstance(tree, dict):
        if "__msgpack_chunked_array__" in tree:
            return _unchunk(tree, where)
        return OrderedDict((k, _resolve_chunks(v, f"{where}/{k}" if where else k)) for k, v in tree.items())
    return tree


def read_flax_msgpack(path):
    """flax_model.msgpack → nested dict of Lazy leaves (chunked arrays joined lazily)."""
    mm = _map(path)
    tree, end = _Msgpack(mm, path).read(0)
    if end != len(mm):
        raise ConvertError(f"{path}: {len(mm) - end} trailing bytes after the msgpack object")
    if not isinstance(tree, dict):
        raise ConvertError(f"{path}: top level is not a map")
    tree = _resolve_chunks(tree, "")
    for k, v in flatten(tree).items():
        if isinstance(v, Lazy):
            v.where = f"{path}: {k}"
    return tree


def flatten(tree, prefix=""):
    out = OrderedDict()
    for k, v in tree.items():
        name = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, name))
        else:
            out[name] = v
    return out
