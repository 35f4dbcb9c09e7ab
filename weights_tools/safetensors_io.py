"""Minimal safetensors reader and writer (numpy only).

File layout (https://github.com/huggingface/safetensors):
    8 bytes   little-endian uint64 N = length of the JSON header
    N bytes   JSON header: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}
    rest      data section; ``data_offsets`` = [begin, end) relative to its start

The writer pads the header with spaces so the data section starts at a multiple of 8 bytes,
writes the tensors contiguously in sorted-name order (the format forbids holes), and streams
them one at a time so huge models never need to sit in memory twice.

bfloat16 has no numpy dtype: ``get()`` returns bf16 tensors widened to float32 (exact), or the
raw uint16 bit patterns with ``raw=True``; the writer takes uint16 bit patterns for "BF16".
"""

import json
import os
import struct
import tempfile

import numpy as np

try:
    from ._common import ToolError
except ImportError:  # run as a script from inside weights_tools/
    from _common import ToolError

# safetensors dtype -> (numpy dtype used for the raw bytes, bytes per element)
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bit patterns
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
MAX_HEADER = 100 * 1024 * 1024  # same limit as the reference implementation


class SafetensorsError(ToolError):
    pass


# ----------------------------------------------------------------------------- bfloat16

def bf16_bits_to_f32(bits):
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> uint16 bfloat16 bit patterns, round to nearest even (NaN stays NaN)."""
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    x = np.ascontiguousarray(x).reshape(shape)  # (ascontiguousarray turns 0-d into 1-d)
    u = x.view(np.uint32)
    rounding = ((u >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)
    with np.errstate(over="ignore"):
        out = ((u + rounding) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out.reshape(shape)


# ----------------------------------------------------------------------------- reading

class SafetensorsFile:
    """Parses and checks the header; tensors are read on demand with ``get()``."""

    def __init__(self, path):
        self.path = path
        try:
            self.file_size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise SafetensorsError("%s: not a safetensors file (shorter than 8 bytes)" % path)
                (n,) = struct.unpack("<Q", head)
                if n > MAX_HEADER or 8 + n > self.file_size:
                    raise SafetensorsError("%s: not a safetensors file or truncated (header length %d, file size %d)"
                                           % (path, n, self.file_size))
                raw = f.read(n)
        except OSError as e:
            raise SafetensorsError("%s: cannot read: %s" % (path, e))
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise SafetensorsError("%s: invalid safetensors JSON header: %s" % (path, e))
        if not isinstance(header, dict):
            raise SafetensorsError("%s: safetensors header is not a JSON object" % path)
        self.header_len = n
        self.data_start = 8 + n
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise SafetensorsError("%s: __metadata__ must map strings to strings" % path)
        self.metadata = meta
        self.tensors = {}
        data_len = self.file_size - self.data_start
        for name, info in header.items():
            try:
                dtype = info["dtype"]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise SafetensorsError("%s: malformed header entry for tensor '%s'" % (path, name))
            if dtype not in DTYPES:
                raise SafetensorsError("%s: tensor '%s' has unsupported dtype %s" % (path, name, dtype))
            if any(s < 0 for s in shape):
                raise SafetensorsError("%s: tensor '%s' has a negative dimension" % (path, name))
            nbytes = int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype].itemsize
            if not (0 <= begin <= end <= data_len) or end - begin != nbytes:
                raise SafetensorsError(
                    "%s: tensor '%s' has bad data_offsets [%d, %d) for %s %s (data section %d bytes; "
                    "file truncated?)" % (path, name, begin, end, dtype, list(shape), data_len))
            self.tensors[name] = (dtype, shape, begin, end)

    def keys(self):
        return list(self.tensors.keys())

    def __contains__(self, name):
        return name in self.tensors

    def dtype(self, name):
        return self.tensors[name][0]

    def shape(self, name):
        return self.tensors[name][1]

    def get(self, name, raw=False):
        """Tensor as a numpy array (little-endian; BF16 widened to float32 unless raw)."""
        dtype, shape, begin, end = self.tensors[name]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            buf = f.read(end - begin)
        if len(buf) != end - begin:
            raise SafetensorsError("%s: truncated while reading tensor '%s'" % (self.path, name))
        arr = np.frombuffer(buf, dtype=DTYPES[dtype]).reshape(shape)
        if dtype == "BF16" and not raw:
            return bf16_bits_to_f32(arr)
        return arr.copy()


def read_header(path):
    """(metadata dict, {name: (dtype, shape)}) without reading tensor data."""
    f = SafetensorsFile(path)
    return f.metadata, {k: (v[0], v[1]) for k, v in f.tensors.items()}


def load(path):
    """(dict name -> numpy array, metadata)."""
    f = SafetensorsFile(path)
    return {k: f.get(k) for k in f.keys()}, f.metadata


# ----------------------------------------------------------------------------- writing

def numpy_to_st_dtype(dt):
    dt = np.dtype(dt)
    for k, v in DTYPES.items():
        if k != "BF16" and v.kind == dt.kind and v.itemsize == dt.itemsize:
            return k
    raise SafetensorsError("no safetensors dtype for numpy dtype %s" % dt)


def write(path, entries, metadata=None):
    """Write a safetensors file.

    entries: iterable of (name, st_dtype, shape, data) where data is a numpy array or a
    zero-argument callable returning one (called once, in sorted-name order, so big files can
    be produced tensor by tensor). The array must have the element size of st_dtype (uint16
    bit patterns for BF16) and exactly ``shape``.
    The file is written to a temporary name in the same folder and renamed at the end, so a
    failed write never leaves a partial output file behind.
    """
    entries = sorted(entries, key=lambda e: e[0])
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError("metadata keys and values must be strings (%r)" % (k,))
        header["__metadata__"] = dict(metadata)
    offset = 0
    seen = set()
    for name, dtype, shape, _ in entries:
        if name in seen:
            raise SafetensorsError("duplicate tensor name '%s'" % name)
        seen.add(name)
        if dtype not in DTYPES:
            raise SafetensorsError("unsupported dtype %s for '%s'" % (dtype, name))
        shape = [int(s) for s in shape]
        nbytes = int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype].itemsize
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hjson = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hjson)))
            f.write(hjson)
            for name, dtype, shape, data in entries:
                arr = data() if callable(data) else data
                arr = np.asarray(arr)
                want = DTYPES[dtype]
                if arr.dtype.itemsize != want.itemsize or arr.dtype.kind != want.kind:
                    if not (dtype == "BF16" and arr.dtype == np.uint16):
                        raise SafetensorsError("tensor '%s': array dtype %s does not match %s" % (name, arr.dtype, dtype))
                if tuple(arr.shape) != tuple(int(s) for s in shape):
                    raise SafetensorsError("tensor '%s': array shape %s does not match %s"
                                           % (name, list(arr.shape), list(shape)))
                arr = np.ascontiguousarray(arr, dtype=want)
                f.write(memoryview(arr.reshape(-1)).cast("B"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(path, tensors, metadata=None):
    """Write a dict name -> numpy array (dtype mapped directly; use write() for BF16)."""
    write(path, [(k, numpy_to_st_dtype(v.dtype), v.shape, v) for k, v in tensors.items()], metadata)
