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
import math
import os
import struct

import numpy as np

from ._common import ToolError, atomic_output, open_input

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

def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError("key '%s' appears twice" % dup)
    return dict(pairs)


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


class SafetensorsFile:
    """Parses and checks the header; tensors are read on demand with ``get()``.

    Checked before anything is used: the header length against the file and MAX_HEADER, the
    JSON (UTF-8, an object, no duplicate names), each entry's dtype, shape (non-negative JSON
    integers) and offsets (dtype size x shape), and that the tensors tile the data section
    exactly: no overlap, no gap, nothing after the last one (as the reference implementation
    requires)."""

    def __init__(self, path):
        self.path = path
        with open_input(path, "safetensors file") as f:
            self.file_size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise SafetensorsError("%s: not a safetensors file (%d bytes, shorter than the 8-byte header length)"
                                       % (path, len(head)))
            (n,) = struct.unpack("<Q", head)
            if n > self.file_size - 8:
                raise SafetensorsError("%s: safetensors header length %d is larger than the rest of the file "
                                       "(%d bytes): truncated, or not a safetensors file" % (path, n, self.file_size - 8))
            if n > MAX_HEADER:
                raise SafetensorsError("%s: safetensors header length %d exceeds the limit of %d bytes"
                                       % (path, n, MAX_HEADER))
            raw = f.read(n)
            if len(raw) != n:
                raise SafetensorsError("%s: truncated while reading the safetensors header" % path)
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except UnicodeDecodeError as e:
            raise SafetensorsError("%s: safetensors header is not valid UTF-8 (byte %d)" % (path, e.start))
        except (ValueError, RecursionError) as e:
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
            if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
                raise SafetensorsError("%s: malformed header entry for tensor '%s' (needs dtype, shape, data_offsets)"
                                       % (path, name))
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if not isinstance(dtype, str) or dtype not in DTYPES:
                raise SafetensorsError("%s: tensor '%s' has unsupported dtype %r" % (path, name, dtype))
            if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
                raise SafetensorsError("%s: tensor '%s' has shape %s; expected a list of non-negative integers"
                                       % (path, name, json.dumps(shape)[:80]))
            if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
                raise SafetensorsError("%s: tensor '%s' has data_offsets %s; expected [begin, end] integers"
                                       % (path, name, json.dumps(offsets)[:80]))
            begin, end = offsets
            nbytes = math.prod(shape) * DTYPES[dtype].itemsize  # Python integers: no overflow
            if not (0 <= begin <= end <= data_len) or end - begin != nbytes:
                raise SafetensorsError(
                    "%s: tensor '%s' has bad data_offsets [%d, %d) for %s %s (%d bytes; data section %d bytes; "
                    "file truncated?)" % (path, name, begin, end, dtype, shape, nbytes, data_len))
            self.tensors[name] = (dtype, tuple(shape), begin, end)
        at, prev = 0, None
        for name, (_, _, begin, end) in sorted(self.tensors.items(), key=lambda kv: (kv[1][2], kv[1][3])):
            if begin < at:
                raise SafetensorsError("%s: tensors '%s' (ending at byte %d) and '%s' (starting at byte %d) "
                                       "overlap in the data section" % (path, prev, at, name, begin))
            if begin > at:
                raise SafetensorsError("%s: %d unused bytes in the data section before tensor '%s' (offset %d); "
                                       "tensors must be stored back to back" % (path, begin - at, name, at))
            if end > begin:
                at, prev = end, name
        if at != data_len:
            raise SafetensorsError("%s: %d bytes after the last tensor in the data section (%d bytes used of %d)"
                                   % (path, data_len - at, at, data_len))

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
        with open_input(self.path, "safetensors file") as f:
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
    The file is written to a temporary name in the same folder, fsynced and renamed at the end
    (_common.atomic_output), so a failed write never leaves a partial output file behind and
    never damages the file it was to replace.
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
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hjson = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)

    with atomic_output(path) as f:
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


def save(path, tensors, metadata=None):
    """Write a dict name -> numpy array (dtype mapped directly; use write() for BF16)."""
    write(path, [(k, numpy_to_st_dtype(v.dtype), v.shape, v) for k, v in tensors.items()], metadata)
