"""ctypes declarations of libgdn's C ABI (include/gdn.h). Standard library only."""
import ctypes
import ctypes.util
import os
import sys
from ctypes import (POINTER, Structure, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t, c_uint32,
                    c_void_p)

MAX_DIMS = 6
PAD_SLOT = -1

# gdn_status
STATUS_NAMES = {
    0: "SUCCESS", 1: "INVALID_ARGUMENT", 2: "NULL_POINTER", 3: "BAD_DTYPE", 4: "BAD_SHAPE", 5: "BAD_STRIDE",
    6: "MISALIGNED", 7: "ALIASING", 8: "WORKSPACE_TOO_SMALL", 9: "SIZE_OVERFLOW", 10: "UNSUPPORTED",
    11: "BACKEND_UNAVAILABLE", 12: "BAD_VERSION", 13: "DEVICE", 14: "OUT_OF_MEMORY", 15: "INTERNAL",
}
# gdn_dtype
F32, F16, BF16, F8_E4M3FN, F8_E4M3FNUZ, I32, I64, BOOL = 1, 2, 3, 4, 5, 6, 7, 8
DTYPE_NAMES = {F32: "f32", F16: "f16", BF16: "bf16", F8_E4M3FN: "f8_e4m3fn", F8_E4M3FNUZ: "f8_e4m3fnuz",
               I32: "i32", I64: "i64", BOOL: "bool"}
DTYPE_SIZES = {F32: 4, F16: 2, BF16: 2, F8_E4M3FN: 1, F8_E4M3FNUZ: 1, I32: 4, I64: 8, BOOL: 1}
# gdn_backend
BACKEND_AUTO, BACKEND_CPU, BACKEND_CUDA, BACKEND_HIP = 0, 1, 2, 3
LAYOUT_PLAIN, LAYOUT_GROUPED = 0, 1
ACTIVATION_NONE, ACTIVATION_SILU = 0, 1
PRECISION_FP32, PRECISION_BF16 = 0, 1


class Tensor(Structure):
    _fields_ = [("data", c_void_p), ("dtype", c_int32), ("ndim", c_int32), ("shape", c_int64 * MAX_DIMS),
                ("strides", c_int64 * MAX_DIMS)]


class ContextConfig(Structure):
    _fields_ = [("struct_size", c_uint32), ("backend", c_int32), ("device", c_int32), ("num_threads", c_int32)]


class LayerConfig(Structure):
    _fields_ = [("struct_size", c_uint32), ("num_k_heads", c_int32), ("num_v_heads", c_int32),
                ("head_k_dim", c_int32), ("head_v_dim", c_int32), ("conv_width", c_int32),
                ("conv_activation", c_int32), ("act_dtype", c_int32), ("state_dtype", c_int32),
                ("out_dtype", c_int32), ("fp8_dtype", c_int32), ("fp8_group_size", c_int32),
                ("input_layout", c_int32), ("use_qk_l2norm", c_int32), ("scale", c_float), ("norm_eps", c_float),
                ("prefill_precision", c_int32)]


def _args(name, fields):
    return type(name, (Structure,), {"_fields_": [("struct_size", c_uint32)] + [(f, Tensor) for f in fields]})


CONV_UPDATE_FIELDS = ["x", "weight", "bias", "conv_state", "slot_idx", "out"]
CONV_PREFILL_FIELDS = ["x", "weight", "bias", "conv_state", "cu_seqlens", "slot_idx", "has_initial_state", "out"]
DECODE_FIELDS = ["q", "k", "v", "a", "b", "A_log", "dt_bias", "g", "beta", "state", "slot_idx", "num_accepted", "out"]
PREFILL_FIELDS = ["q", "k", "v", "a", "b", "A_log", "dt_bias", "g", "beta", "state", "cu_seqlens", "slot_idx",
                  "has_initial_state", "out"]
NORM_FIELDS = ["x", "z", "weight", "out", "scales"]
DECODE_STEP_FIELDS = ["x", "conv_weight", "conv_bias", "conv_state", "z", "a", "b", "A_log", "dt_bias", "state",
                      "slot_idx", "norm_weight", "out", "scales"]

ConvUpdateArgs = _args("ConvUpdateArgs", CONV_UPDATE_FIELDS)
ConvPrefillArgs = _args("ConvPrefillArgs", CONV_PREFILL_FIELDS)
DecodeArgs = _args("DecodeArgs", DECODE_FIELDS)
PrefillArgs = _args("PrefillArgs", PREFILL_FIELDS)
NormArgs = _args("NormArgs", NORM_FIELDS)
DecodeStepArgs = _args("DecodeStepArgs", DECODE_STEP_FIELDS)


def _candidates():
    env = os.environ.get("GDN_LIBRARY")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libgdn.so.0", "libgdn.so", "libgdn.dylib", "gdn.dll"):
        yield os.path.join(here, name)
    found = ctypes.util.find_library("gdn")
    if found:
        yield found
    for name in ("libgdn.so.0", "libgdn.so"):
        yield name


def load():
    """Loads libgdn: $GDN_LIBRARY, next to this package, or the system's library path."""
    errors = []
    for path in _candidates():
        try:
            return _declare(ctypes.CDLL(path))
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise OSError("libgdn not found; set GDN_LIBRARY to its path. Tried:\n  " + "\n  ".join(errors))


def _declare(lib):
    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    st = c_int
    fn("gdn_status_string", c_char_p, c_int)
    fn("gdn_last_error_message", c_char_p)
    fn("gdn_version", None, POINTER(c_int), POINTER(c_int), POINTER(c_int))
    fn("gdn_version_string", c_char_p)
    fn("gdn_dtype_size", c_size_t, c_int)
    fn("gdn_dtype_name", c_char_p, c_int)
    fn("gdn_context_config_init", None, POINTER(ContextConfig))
    fn("gdn_context_create", st, POINTER(ContextConfig), POINTER(c_void_p))
    fn("gdn_context_destroy", st, c_void_p)
    fn("gdn_context_backend", st, c_void_p, POINTER(c_int))
    fn("gdn_context_num_threads", st, c_void_p, POINTER(c_int32))
    fn("gdn_backend_compiled", c_int, c_int)
    fn("gdn_layer_config_init", None, POINTER(LayerConfig))
    fn("gdn_layer_create", st, c_void_p, POINTER(LayerConfig), POINTER(c_void_p))
    fn("gdn_layer_destroy", st, c_void_p)
    fn("gdn_layer_conv_dim", st, c_void_p, POINTER(c_int64))
    for op, args in (("conv_update", ConvUpdateArgs), ("conv_prefill", ConvPrefillArgs), ("decode", DecodeArgs),
                     ("prefill", PrefillArgs)):
        fn("gdn_%s_workspace_size" % op, st, c_void_p, c_int64, c_int64, POINTER(c_size_t))
        fn("gdn_%s" % op, st, c_void_p, POINTER(args), c_void_p, c_size_t, c_void_p)
    fn("gdn_norm_gated_workspace_size", st, c_void_p, c_int64, POINTER(c_size_t))
    fn("gdn_norm_gated", st, c_void_p, POINTER(NormArgs), c_void_p, c_size_t, c_void_p)
    fn("gdn_norm_gated_fp8_quant", st, c_void_p, POINTER(NormArgs), c_void_p, c_size_t, c_void_p)
    fn("gdn_decode_step_workspace_size", st, c_void_p, c_int64, POINTER(c_size_t))
    fn("gdn_decode_step", st, c_void_p, POINTER(DecodeStepArgs), c_void_p, c_size_t, c_void_p)
    return lib


_LIB = None


def lib():
    global _LIB
    if _LIB is None:
        _LIB = load()
    return _LIB


if sys.byteorder != "little":  # the dtype codes below assume little-endian buffers
    raise ImportError("libgdn's Python binding supports little-endian hosts only")
