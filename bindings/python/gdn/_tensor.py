"""Turns tensors of any library into gdn_tensor views, without importing that library:
__cuda_array_interface__ (CuPy, Numba, torch CUDA), __dlpack__ (torch, JAX, NumPy >= 1.22,
CuPy) and __array_interface__ (NumPy). Also a plain `View` for raw pointers."""
import ctypes
from ctypes import POINTER, Structure, c_int, c_int64, c_uint8, c_uint16, c_uint64, c_void_p

from . import _lib as L

CPU, CUDA = "cpu", "cuda"


class View:
    """A raw view: address, gdn dtype code, shape and strides in elements, device ("cpu"/"cuda").
    `owner` keeps whatever owns the memory alive."""

    def __init__(self, data, dtype, shape, strides=None, device=CPU, owner=None):
        # dtype: a gdn dtype code, or "u8" / "u16" for raw storage read as the op's dtype
        self.data, self.dtype, self.shape, self.device, self.owner = int(data), dtype, tuple(shape), device, owner
        if strides is None:
            strides, s = [], 1
            for n in reversed(self.shape):
                strides.insert(0, s)
                s *= n
        self.strides = tuple(strides)

    def with_dtype(self, dtype):
        """The same bytes read as another dtype of the same size (e.g. uint16 storage as bf16)."""
        if L.DTYPE_SIZES[dtype] != L.DTYPE_SIZES[self.dtype]:
            raise ValueError("with_dtype keeps the element size")
        return View(self.data, dtype, self.shape, self.strides, self.device, self.owner)


class _DLDevice(Structure):
    _fields_ = [("device_type", c_int), ("device_id", c_int)]


class _DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class _DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", _DLDevice), ("ndim", c_int), ("dtype", _DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

# DLPack (code, bits) -> gdn dtype; uint8 is taken as FP8 or bool when the op asks for those.
_DL_DTYPES = {(2, 32): L.F32, (2, 16): L.F16, (4, 16): L.BF16, (0, 32): L.I32, (0, 64): L.I64, (6, 8): L.BOOL,
              (1, 8): "u8", (10, 8): L.F8_E4M3FN, (11, 8): L.F8_E4M3FNUZ}
_DL_DEVICES = {1: CPU, 3: CPU, 2: CUDA, 10: "rocm"}
_TYPESTR = {"<f4": L.F32, "<f2": L.F16, "<i4": L.I32, "<i8": L.I64, "|b1": L.BOOL, "|u1": "u8", "<u2": "u16",
            "<i2": "u16"}


def _from_interface(iface, device, owner):
    typestr = iface["typestr"]
    dtype = _TYPESTR.get(typestr)
    if dtype is None:
        raise TypeError("unsupported element type %r" % typestr)
    ptr = iface["data"][0] if isinstance(iface["data"], tuple) else iface["data"]
    shape = tuple(iface["shape"])
    size = int(typestr[2:])
    strides = iface.get("strides")
    if strides is not None:
        if any(s % size for s in strides):
            raise ValueError("strides are not a multiple of the element size")
        strides = tuple(s // size for s in strides)
    return View(ptr or 0, dtype, shape, strides, device, owner)


def _from_dlpack(obj):
    capsule = obj.__dlpack__()
    managed = _capsule_pointer(capsule, b"dltensor")
    t = _DLTensor.from_address(managed)
    key = (t.dtype.code, t.dtype.bits)
    if t.dtype.lanes != 1 or key not in _DL_DTYPES:
        raise TypeError("unsupported DLPack dtype code=%d bits=%d lanes=%d" % (t.dtype.code, t.dtype.bits, t.dtype.lanes))
    shape = tuple(t.shape[i] for i in range(t.ndim))
    strides = tuple(t.strides[i] for i in range(t.ndim)) if t.strides else None
    device = _DL_DEVICES.get(t.device.device_type, "dlpack-device-%d" % t.device.device_type)
    # The capsule (not consumed) frees the producer's export when it is collected; keep it with
    # the source object for as long as the view lives.
    return View((t.data or 0) + t.byte_offset, _DL_DTYPES[key], shape, strides, device, (obj, capsule))


def view_of(obj):
    """A View of any supported tensor object (or a View itself)."""
    if isinstance(obj, View):
        return obj
    cai = getattr(obj, "__cuda_array_interface__", None) if hasattr(type(obj), "__cuda_array_interface__") else None
    if cai is not None:
        try:
            return _from_interface(cai, CUDA, obj)
        except TypeError:
            pass  # e.g. bf16, which the interface cannot describe: try DLPack
    if hasattr(obj, "__dlpack__"):
        try:
            return _from_dlpack(obj)
        except (TypeError, BufferError, RuntimeError):
            if not hasattr(obj, "__array_interface__"):
                raise
    if hasattr(obj, "__array_interface__"):
        return _from_interface(obj.__array_interface__, CPU, obj)
    raise TypeError("%s is not a tensor: it has no __cuda_array_interface__, __dlpack__ or __array_interface__"
                    % type(obj).__name__)


def to_c(view, want_dtype=None):
    """gdn_tensor struct of a View. Raw uint8 / uint16 storage takes `want_dtype` when the sizes match
    (uint8 as FP8 or bool, uint16 as bf16 or f16)."""
    t = L.Tensor()
    dtype = view.dtype
    if dtype in ("u8", "u16"):
        size = 1 if dtype == "u8" else 2
        if want_dtype is not None and L.DTYPE_SIZES.get(want_dtype) == size:
            dtype = want_dtype
        else:
            dtype = L.BOOL if dtype == "u8" else 0  # 0: invalid, the library names the problem
    if len(view.shape) > L.MAX_DIMS:
        raise ValueError("at most %d dimensions" % L.MAX_DIMS)
    t.data = view.data or None
    t.dtype = dtype
    t.ndim = len(view.shape)
    for i, (n, s) in enumerate(zip(view.shape, view.strides)):
        t.shape[i] = n
        t.strides[i] = s
    return t
