"""Read PyTorch zip checkpoints (torch.save >= 1.6 and TorchScript archives) without torch.

Layout of such a file (a zip, entries stored uncompressed):
    <top>/data.pkl          pickle of the saved object (a state dict, a wrapper dict, or for
                            TorchScript the module tree as ``__torch__.*`` objects)
    <top>/data/<key>        raw little-endian bytes of each storage
    <top>/byteorder         optional, "little" or "big"
    <top>/version, <top>/constants.pkl, <top>/code/...   (TorchScript; not needed here)

Safety model
------------
A pickle is a program: every GLOBAL it names is imported and may be called. ``SafeUnpickler``
overrides ``find_class`` so that the only names it ever resolves are our own harmless
stand-ins:

* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` / ``_rebuild_parameter_with_state``
  and ``torch._tensor._rebuild_from_type_v2`` -> functions that build a ``LazyTensor`` record
  (storage reference, offset, size, stride) - no data is touched, nothing is imported;
* ``collections.OrderedDict`` -> the real OrderedDict (a plain container);
* ``torch.FloatStorage`` etc. -> inert ``StorageType`` tokens (not callable);
* ``torch.Tensor``, ``torch.nn.parameter.Parameter`` -> inert type tokens;
* ``torch.jit._pickle.restore_type_tag`` / ``build_*list`` -> identity functions;
* ``_codecs.encode`` -> str->bytes in latin-1 only (how protocol 2 pickles bytes);
* ``__torch__.*`` (TorchScript module classes) -> a generic ``TorchScriptObject`` that only
  records the state handed to it.

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, numpy, ...) raises
``UnsafePickleError`` naming it, before anything is called. Persistent ids are accepted only
in the ``('storage', <StorageType>, key, location, numel)`` form. Torch, numpy and the
archive's ``code/`` are never imported or executed. Storages are read as raw bytes and checked
against the sizes, offsets and strides that reference them.
"""

import _compat_pickle
import collections
import io
import math
import os
import pickle
import re
import zipfile
import zlib

import numpy as np

from ._common import MAX_TEXT_INPUT, ToolError, atomic_output, open_input
from .safetensors_io import bf16_bits_to_f32, f32_to_bf16_bits


class TorchZipError(ToolError):
    pass


class UnsafePickleError(TorchZipError):
    pass


# storage class name -> numpy dtype of its raw bytes ("bfloat16" stored as uint16 bits)
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
# torch dtype name for each storage (what info.py reports)
STORAGE_TORCH_DTYPE = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
_KEY_RE = re.compile(r"^[A-Za-z0-9_]+$")
# PyTorch stores zip entries uncompressed; an entry over MAX_RATIO_FREE bytes that inflates more
# than MAX_COMPRESSION_RATIO times is refused before inflating (deflate reaches ~1030x: bombs).
MAX_RATIO_FREE = 1 << 20
MAX_COMPRESSION_RATIO = 100


class _Frozen:
    """Base for the inert tokens handed to the pickle: no attribute can be changed afterwards
    (a pickle's BUILD opcode could otherwise tamper with these shared objects)."""
    __slots__ = ()

    def __setattr__(self, name, value):
        raise UnsafePickleError("refusing to modify %r from a pickle" % (self,))

    def __setstate__(self, state):
        raise UnsafePickleError("refusing to modify %r from a pickle" % (self,))


class StorageType(_Frozen):
    """Inert token standing for torch.<Name>Storage. Deliberately not callable."""
    __slots__ = ("name",)

    def __init__(self, name):
        object.__setattr__(self, "name", name)

    def __repr__(self):
        return "torch.%s" % self.name


class TypeToken(_Frozen):
    """Inert token for torch.Tensor / torch.nn.Parameter (used by _rebuild_from_type_v2)."""
    __slots__ = ("name",)

    def __init__(self, name):
        object.__setattr__(self, "name", name)

    def __repr__(self):
        return self.name


class SafeFunction(_Frozen):
    """Wraps one of our rebuild functions; immutable, so a pickle cannot alter it."""
    __slots__ = ("fn", "name")

    def __init__(self, fn, name):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "name", name)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return "<safe %s>" % self.name


class StorageRef:
    def __init__(self, archive, key, stype, numel):
        self.archive = archive
        self.key = key
        self.stype = stype
        self.numel = numel


class LazyTensor:
    """A tensor recorded from the pickle; its bytes are read only by numpy()."""

    def __init__(self, storage, offset, shape, stride):
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride

    @property
    def dtype(self):
        """torch dtype name: 'float16', 'bfloat16', 'int64', ..."""
        return STORAGE_TORCH_DTYPE[self.storage.stype.name]

    @property
    def is_floating(self):
        return self.dtype in ("float64", "float32", "float16", "bfloat16")

    @property
    def numel(self):
        return math.prod(self.shape)  # Python integers: a hostile size cannot wrap to 0

    def numpy(self):
        """Contiguous numpy array (bf16 widened to float32, exactly)."""
        st = self.storage
        if not isinstance(st, StorageRef) or not isinstance(st.stype, StorageType) \
                or st.stype.name not in STORAGE_DTYPES:
            raise TorchZipError("malformed tensor record in pickle")
        data = st.archive.storage_array(st)
        n = self.numel
        if n and not (isinstance(self.offset, int) and self.offset >= 0 and len(self.shape) == len(self.stride)
                      and all(isinstance(v, int) and v >= 0 for v in self.shape + self.stride)
                      and self.offset + sum((k - 1) * s for k, s in zip(self.shape, self.stride)) < data.size):
            raise TorchZipError("tensor record (size %s, stride %s, offset %s) reaches past its storage"
                                % (self.shape, self.stride, self.offset))
        if n > data.size:
            raise TorchZipError("tensor record (size %s, stride %s) has %d elements but its storage only %d: "
                                "broadcast (stride-0) tensors are not supported" % (self.shape, self.stride, n, data.size))
        if n == 0:
            out = np.zeros(self.shape, dtype=data.dtype)
        else:
            out = np.lib.stride_tricks.as_strided(
                data[self.offset:], shape=self.shape,
                strides=tuple(s * data.itemsize for s in self.stride))
            out = np.array(out, copy=True)
        if self.storage.stype.name == "BFloat16Storage":
            out = bf16_bits_to_f32(out)
        return out

    def __repr__(self):
        return "LazyTensor(%s, %s)" % (self.dtype, list(self.shape))


class _FrozenClass(type):
    def __setattr__(cls, name, value):
        raise UnsafePickleError("refusing to modify class %s from a pickle" % cls.__name__)


class TorchScriptObject(metaclass=_FrozenClass):
    """Generic stand-in for a TorchScript ``__torch__.*`` class: records its state only."""

    qualname = "__torch__"

    def __init__(self, *args, **kwargs):
        self._ts_args = args
        self._ts_state = None

    def __setstate__(self, state):
        self._ts_state = state

    def attributes(self):
        st = self.__dict__.get("_ts_state")
        return st if isinstance(st, dict) else {}

    def __repr__(self):
        return "<%s>" % self.qualname


# ----------------------------------------------------------------------------- rebuild functions

def _as_int_tuple(x, what):
    if not isinstance(x, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        raise TorchZipError("malformed tensor record in pickle: %s is %r" % (what, x))
    return x


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, StorageRef):
        raise TorchZipError("malformed tensor record in pickle: storage is %r" % (storage,))
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise TorchZipError("malformed tensor record in pickle: storage offset %r" % (storage_offset,))
    size = _as_int_tuple(size, "size")
    stride = _as_int_tuple(stride, "stride")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise TorchZipError("malformed tensor record in pickle: size %r stride %r" % (size, stride))
    numel = math.prod(size)  # Python integers: no wrap-around
    if numel:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise TorchZipError("tensor (size %s, stride %s, offset %d) reaches past its storage '%s' of %d elements"
                                % (list(size), list(stride), storage_offset, storage.key, storage.numel))
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    if not isinstance(data, LazyTensor):
        raise TorchZipError("malformed parameter record in pickle")
    return data


def _rebuild_from_type_v2(func, new_type, args, state=None):
    if not any(func is r for r in _REBUILDERS) or not isinstance(new_type, TypeToken) \
            or not isinstance(args, tuple):
        raise TorchZipError("unsupported _rebuild_from_type_v2 record in pickle")
    return func(*args)


def _identity_first(value, *rest):
    return value


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("refusing _codecs.encode(%r, %r) in pickle" % (type(obj).__name__, encoding))
    return obj.encode("latin-1")


_SAFE_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.jit._pickle", "restore_type_tag"): _identity_first,
    ("torch.jit._pickle", "build_intlist"): _identity_first,
    ("torch.jit._pickle", "build_doublelist"): _identity_first,
    ("torch.jit._pickle", "build_boollist"): _identity_first,
    ("torch.jit._pickle", "build_tensorlist"): _identity_first,
    ("_codecs", "encode"): _codecs_encode,
}
SAFE_GLOBALS = {k: SafeFunction(fn, "%s.%s" % k) for k, fn in _SAFE_FUNCTIONS.items()}
SAFE_GLOBALS[("collections", "OrderedDict")] = collections.OrderedDict
SAFE_GLOBALS[("torch", "Tensor")] = TypeToken("torch.Tensor")
SAFE_GLOBALS[("torch.nn.parameter", "Parameter")] = TypeToken("torch.nn.parameter.Parameter")
for _name in STORAGE_DTYPES:
    SAFE_GLOBALS[("torch", _name)] = StorageType(_name)
_REBUILDERS = (SAFE_GLOBALS[("torch._utils", "_rebuild_tensor_v2")],
               SAFE_GLOBALS[("torch._utils", "_rebuild_parameter")],
               SAFE_GLOBALS[("torch._utils", "_rebuild_parameter_with_state")])


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed names above (see module docstring)."""

    def __init__(self, file, archive, what):
        super().__init__(file, encoding="utf-8")
        self.archive = archive
        self.what = what
        self._ts_classes = {}

    def find_class(self, module, name):
        key = (module, name)
        if key in SAFE_GLOBALS:
            return SAFE_GLOBALS[key]
        if (module == "__torch__" or module.startswith("__torch__.")) and re.match(r"^[A-Za-z0-9_.]+$", module + name):
            qual = module + "." + name
            cls = self._ts_classes.get(qual)
            if cls is None:
                cls = type("TorchScript_" + re.sub(r"\W", "_", name), (TorchScriptObject,), {"qualname": qual})
                self._ts_classes[qual] = cls
            return cls
        shown = "'%s.%s'" % (module, name)
        # protocol 0-2 pickles spell Python 3 names the Python 2 way (__builtin__.eval): show both
        py3 = _compat_pickle.NAME_MAPPING.get((module, name))
        if py3 is None and module in _compat_pickle.IMPORT_MAPPING:
            py3 = (_compat_pickle.IMPORT_MAPPING[module], name)
        if py3 is not None and py3 != (module, name):
            shown = "'%s.%s' (written as '%s.%s')" % (py3[0], py3[1], module, name)
        raise UnsafePickleError(
            "%s: refusing to load global %s from the pickle: it is not a tensor-rebuilding function "
            "and could execute code. Only plain PyTorch state dicts / TorchScript CLIP archives are "
            "accepted; nothing in the file was executed." % (self.what, shown))

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int) or pid[4] < 0):
            raise UnsafePickleError("%s: refusing unexpected persistent id %r in the pickle" % (self.what, pid))
        _, stype, key, _location, numel = pid
        return self.archive.storage_ref(key, stype, numel)


class TorchArchive:
    """An opened PyTorch zip file. ``obj`` is the unpickled data.pkl (with LazyTensors)."""

    def __init__(self, path):
        self.path = path
        self._cache = {}
        self._refs = {}
        self._file = open_input(path, "checkpoint")
        try:
            self.file_size = os.fstat(self._file.fileno()).st_size
            head = self._file.read(16)
            self._file.seek(0)
            self.zip = zipfile.ZipFile(self._file)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OverflowError) as e:
            self._file.close()
            raise TorchZipError(self._not_zip_message(path, e, head))
        except OSError as e:
            self._file.close()
            raise TorchZipError("%s: cannot read: %s" % (path, e))
        except BaseException:
            self._file.close()
            raise
        try:
            self._load(names)
        except BaseException:
            self.close()
            raise

    def _load(self, names):
        path = self.path
        tops = sorted(n[:-len("/data.pkl")] for n in names
                      if n.endswith("/data.pkl") and n.count("/") == 1)
        if not tops:
            raise TorchZipError("%s: zip file has no <name>/data.pkl entry: not a PyTorch checkpoint" % path)
        if len(tops) > 1:
            raise TorchZipError("%s: zip file has several data.pkl entries (%s)" % (path, ", ".join(tops)))
        self.top = tops[0]
        self.names = set(names)
        self.is_torchscript = (self.top + "/constants.pkl") in self.names or any(
            n.startswith(self.top + "/code/") for n in names)
        self.byteorder = "little"
        if (self.top + "/byteorder") in self.names:
            self.byteorder = self._read(self.top + "/byteorder", 64).decode("ascii", "replace").strip()
            if self.byteorder not in ("little", "big"):
                raise TorchZipError("%s: unknown byteorder %r" % (path, self.byteorder))
        data = self._read(self.top + "/data.pkl", MAX_TEXT_INPUT)
        try:
            self.obj = SafeUnpickler(io.BytesIO(data), self, path).load()
        except ToolError:
            raise
        except RecursionError:
            raise TorchZipError("%s: data.pkl nests too deeply" % path)
        except Exception as e:  # malformed pickle: report, never execute anything
            raise TorchZipError("%s: cannot parse data.pkl: %s: %s" % (path, type(e).__name__, e))

    @staticmethod
    def _not_zip_message(path, err, head):
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return ("%s: looks like a legacy (pre-1.6, non-zip) PyTorch file (it starts with a pickle); that "
                    "serialization is not supported: re-save it with torch.save(obj, path) from PyTorch >= 1.6" % path)
        if head[:2] == b"PK":
            return "%s: looks like a PyTorch zip checkpoint, but the zip is damaged or truncated (%s)" % (path, err)
        return "%s: not a PyTorch zip checkpoint (%s)" % (path, err)

    def _read(self, name, limit, exact=None):
        """The bytes of zip entry ``name`` (its first ``exact`` bytes if given), refusing before
        inflating anything an entry that declares more than ``limit`` bytes, more compressed
        bytes than the archive holds, or a compression ratio only a decompression bomb has.
        Inflation is streamed and stops at the declared size, so memory stays within it."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise TorchZipError("%s: missing zip entry %s" % (self.path, name))
        want = info.file_size if exact is None else exact
        if info.file_size > limit:
            raise TorchZipError("%s: zip entry %s declares %d bytes, more than the limit of %d"
                                % (self.path, name, info.file_size, limit))
        if info.compress_size > self.file_size:
            raise TorchZipError("%s: zip entry %s declares %d compressed bytes but the file has %d (truncated?)"
                                % (self.path, name, info.compress_size, self.file_size))
        if info.file_size > MAX_RATIO_FREE and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise TorchZipError("%s: zip entry %s inflates %d compressed bytes to %d (ratio over %d: a "
                                "decompression bomb?); PyTorch stores its entries uncompressed"
                                % (self.path, name, info.compress_size, info.file_size, MAX_COMPRESSION_RATIO))
        if want > info.file_size:
            raise TorchZipError("%s: zip entry %s has %d bytes, expected at least %d"
                                % (self.path, name, info.file_size, want))
        try:
            with self.zip.open(info) as member:
                data = member.read(want)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as e:
            raise TorchZipError("%s: damaged or truncated zip entry %s (%s)" % (self.path, name, e))
        if len(data) != want:
            raise TorchZipError("%s: zip entry %s is truncated (%d of %d bytes)" % (self.path, name, len(data), want))
        return data

    def storage_ref(self, key, stype, numel):
        if not _KEY_RE.match(key):
            raise UnsafePickleError("%s: refusing storage key %r" % (self.path, key))
        ref = self._refs.get(key)
        if ref is None:
            ref = StorageRef(self, key, stype, numel)
            self._refs[key] = ref
        elif ref.stype.name != stype.name or ref.numel != numel:
            raise TorchZipError("%s: storage %s is referenced with two different types/sizes" % (self.path, key))
        return ref

    def storage_array(self, ref):
        arr = self._cache.get(ref.key)
        if arr is not None:
            return arr
        dt = STORAGE_DTYPES[ref.stype.name]
        need = ref.numel * dt.itemsize
        name = "%s/data/%s" % (self.top, ref.key)
        declared = self.zip.getinfo(name).file_size if name in self.names else 0
        if name in self.names and declared < need:
            raise TorchZipError("%s: storage %s has %d bytes, expected %d (%d x %s)"
                                % (self.path, ref.key, declared, need, ref.numel, ref.stype.name))
        raw = self._read(name, max(declared, need), exact=need)
        arr = np.frombuffer(raw, dtype=dt, count=ref.numel)
        if self.byteorder == "big" and dt.itemsize > 1:
            arr = arr.byteswap()
        # Keep only the most recent storage: tensors are converted one at a time, and views of
        # one storage are usually adjacent, so memory stays at about one tensor.
        self._cache = {ref.key: arr}
        return arr

    def release(self):
        """Drop cached storage bytes (call after tensors were converted)."""
        self._cache.clear()

    def close(self):
        self._cache.clear()
        if getattr(self, "zip", None) is not None:
            self.zip.close()
        self._file.close()


# ----------------------------------------------------------------------------- state dicts

def walk_torchscript(obj, prefix="", out=None, _depth=0):
    """Collect {dotted.name: LazyTensor} from a TorchScript module tree."""
    if out is None:
        out = collections.OrderedDict()
    if _depth > 200:
        raise TorchZipError("TorchScript module tree nests too deeply")
    for name, value in TorchScriptObject.attributes(obj).items():
        if not isinstance(name, str):
            continue
        if isinstance(value, LazyTensor):
            out[prefix + name] = value
        elif isinstance(value, TorchScriptObject):
            walk_torchscript(value, prefix + name + ".", out, _depth + 1)
    return out


def _tensor_items(d):
    return [(k, v) for k, v in d.items() if isinstance(k, str) and isinstance(v, LazyTensor)]


def extract_state_dict(obj, what="checkpoint"):
    """Find the state dict in an unpickled object.

    Accepts a TorchScript module tree, a state dict, or a dict wrapping one under
    'state_dict' or 'model' (open_clip / training checkpoints). A 'module.' prefix shared by
    every key (DistributedDataParallel) is removed.
    Returns (OrderedDict name -> LazyTensor, description).
    """
    desc = []
    if isinstance(obj, TorchScriptObject):
        sd = walk_torchscript(obj)
        desc.append("TorchScript module %s" % obj.qualname)
    else:
        seen = 0
        while isinstance(obj, dict) and seen < 4:
            seen += 1
            inner = None
            for key in ("state_dict", "model", "model_state_dict"):
                if isinstance(obj.get(key), dict):
                    inner = key
                    break
            if inner is None or len(_tensor_items(obj)) > 0:
                break
            desc.append("['%s']" % inner)
            obj = obj[inner]
        if isinstance(obj, TorchScriptObject):
            return extract_state_dict(obj, what)
        if not isinstance(obj, dict):
            raise TorchZipError("%s: the pickle holds a %s, not a state dict" % (what, type(obj).__name__))
        sd = collections.OrderedDict(_tensor_items(obj))
        desc.insert(0, "state dict")
    if not sd:
        raise TorchZipError("%s: no tensors found in the checkpoint" % what)
    keys = list(sd.keys())
    if all(k.startswith("module.") for k in keys):
        sd = collections.OrderedDict((k[len("module."):], v) for k, v in sd.items())
        desc.append("'module.' prefix stripped")
    return sd, " ".join(desc)


def load_state_dict(path):
    """(archive, OrderedDict name -> LazyTensor, kind, description)."""
    arch = TorchArchive(path)
    sd, desc = extract_state_dict(arch.obj, path)
    kind = "torchscript" if arch.is_torchscript else "torch_state_dict"
    return arch, sd, kind, desc


# ----------------------------------------------------------------------------- writing (tests)

def _pickle_int(n):
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + n.to_bytes(2, "little")
    if -2 ** 31 <= n < 2 ** 31:
        return b"J" + n.to_bytes(4, "little", signed=True)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _pickle_str(s):
    b = s.encode("utf-8")
    return b"X" + len(b).to_bytes(4, "little") + b


def _pickle_int_tuple(t):
    return b"(" + b"".join(_pickle_int(v) for v in t) + b"t"


_NP_TO_STORAGE = {np.dtype("float64"): "DoubleStorage", np.dtype("float32"): "FloatStorage",
                  np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
                  np.dtype("int32"): "IntStorage", np.dtype("int16"): "ShortStorage",
                  np.dtype("int8"): "CharStorage", np.dtype("uint8"): "ByteStorage",
                  np.dtype("bool"): "BoolStorage"}


def save_state_dict_zip(path, tensors, top="archive", wrap_key=None, bf16=()):
    """Write {name: numpy array} in torch.save's zip layout (protocol-2 pickle of an
    OrderedDict of tensors), optionally wrapped as {wrap_key: state_dict}. Names in ``bf16``
    are stored as BFloat16Storage (arrays given as float32, rounded to nearest even).
    Meant for tests and for producing inputs without torch."""
    p = bytearray(b"\x80\x02")
    if wrap_key is not None:
        p += b"}" + _pickle_str(wrap_key)
    p += b"ccollections\nOrderedDict\n)R("
    blobs = []
    for i, (name, arr) in enumerate(tensors.items()):
        arr = np.asarray(arr)
        if name in bf16:
            stype = "BFloat16Storage"
            data = f32_to_bf16_bits(arr.astype(np.float32))
        else:
            stype = _NP_TO_STORAGE[arr.dtype]
            data = np.ascontiguousarray(arr)
        data = data.astype(data.dtype.newbyteorder("<"), copy=False)
        blobs.append(data.tobytes())
        strides, acc = [], 1
        for n in reversed(arr.shape):
            strides.insert(0, acc)
            acc *= n
        p += _pickle_str(name)
        p += b"ctorch._utils\n_rebuild_tensor_v2\n("
        p += b"(" + _pickle_str("storage") + ("ctorch\n%s\n" % stype).encode() + _pickle_str(str(i)) \
            + _pickle_str("cpu") + _pickle_int(int(arr.size)) + b"tQ"
        p += _pickle_int(0) + _pickle_int_tuple(arr.shape) + _pickle_int_tuple(strides)
        p += b"\x89ccollections\nOrderedDict\n)Rt" + b"R"
    p += b"u"
    if wrap_key is not None:
        p += b"s"
    p += b"."
    with atomic_output(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        z.writestr(top + "/data.pkl", bytes(p))
        z.writestr(top + "/byteorder", "little")
        for i, blob in enumerate(blobs):
            z.writestr("%s/data/%d" % (top, i), blob)
        z.writestr(top + "/version", "3\n")
