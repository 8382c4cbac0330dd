"""libgdn for Python: Gated DeltaNet kernels (decode, prefill, conv, RMSNormGated + FP8) through
ctypes, standard library only. Tensors come from any library (NumPy, PyTorch, CuPy, JAX) through
__dlpack__ / __cuda_array_interface__ / __array_interface__; nothing is imported.

    import gdn
    ctx = gdn.Context("cpu")
    layer = gdn.Layer(ctx, num_k_heads=16, num_v_heads=32, head_k_dim=128, head_v_dim=128, act_dtype="bf16")
    layer.decode(q=q, k=k, v=v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, state=state, slot_idx=slots, out=out)

Drop-in replacements for FLA / vLLM's gated delta rule live in gdn.fla.
"""
import ctypes
import threading
from ctypes import byref, c_int, c_int32, c_int64, c_size_t, c_void_p

from . import _lib as L
from ._tensor import View, to_c, view_of

__all__ = ["Context", "Layer", "Error", "View", "version", "PAD_SLOT"]
PAD_SLOT = L.PAD_SLOT

_DTYPES = {"f32": L.F32, "float32": L.F32, "f16": L.F16, "float16": L.F16, "bf16": L.BF16, "bfloat16": L.BF16,
           "f8_e4m3fn": L.F8_E4M3FN, "float8_e4m3fn": L.F8_E4M3FN, "f8_e4m3fnuz": L.F8_E4M3FNUZ,
           "float8_e4m3fnuz": L.F8_E4M3FNUZ}
_BACKENDS = {"auto": L.BACKEND_AUTO, "cpu": L.BACKEND_CPU, "cuda": L.BACKEND_CUDA, "hip": L.BACKEND_HIP}


class Error(RuntimeError):
    """A libgdn call failed. `status` is the gdn_status code, `status_name` e.g. "BAD_SHAPE"."""

    def __init__(self, status, message):
        self.status = status
        self.status_name = L.STATUS_NAMES.get(status, "UNKNOWN")
        self.message = message
        super().__init__("%s: %s" % (L.lib().gdn_status_string(status).decode(), message))


def _check(status):
    if status != 0:
        raise Error(status, L.lib().gdn_last_error_message().decode())


def version():
    """(major, minor, patch) of the loaded library."""
    a, b, c = c_int(), c_int(), c_int()
    L.lib().gdn_version(byref(a), byref(b), byref(c))
    return (a.value, b.value, c.value)


def _dtype(value):
    if isinstance(value, int):
        return value
    try:
        return _DTYPES[str(value).replace("torch.", "")]
    except KeyError:
        raise ValueError("unknown dtype %r (one of %s)" % (value, ", ".join(sorted(_DTYPES))))


def _stream(stream):
    """cudaStream_t from None, an int, or an object with .cuda_stream / .ptr (torch, CuPy)."""
    if stream is None:
        return None
    for attr in ("cuda_stream", "ptr", "handle"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr)) or None
    return int(stream) or None


class _Handle:
    """An owned libgdn handle, released by close() (also on `with` exit and collection)."""
    _destroy = None
    _h = None

    def close(self):
        if self._h:
            getattr(L.lib(), self._destroy)(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Context(_Handle):
    """A backend and device: "cpu", "cuda", "hip" or "auto". Close it (or use `with`) when done.
    Run calls on one context must not overlap in time."""

    def __init__(self, backend="auto", device=0, num_threads=0):
        cfg = L.ContextConfig()
        L.lib().gdn_context_config_init(byref(cfg))
        if backend not in _BACKENDS:
            raise ValueError("backend must be one of %s" % ", ".join(_BACKENDS))
        cfg.backend, cfg.device, cfg.num_threads = _BACKENDS[backend], device, num_threads
        handle = c_void_p()
        _check(L.lib().gdn_context_create(byref(cfg), byref(handle)))
        self._h = handle
        got = c_int()
        _check(L.lib().gdn_context_backend(handle, byref(got)))
        self.backend = {v: k for k, v in _BACKENDS.items()}[got.value]
        self.lock = threading.Lock()

    _destroy = "gdn_context_destroy"

    @property
    def handle(self):
        if not self._h:
            raise ValueError("context is closed")
        return self._h


class Layer(_Handle):
    """A GDN layer description. Keyword arguments are gdn_layer_config fields; dtypes by name
    ("bf16", "f32", ...), input_layout "plain" / "grouped", conv_activation "silu" / "none",
    prefill_precision "fp32" / "bf16"."""

    def __init__(self, ctx, **config):
        cfg = L.LayerConfig()
        L.lib().gdn_layer_config_init(byref(cfg))
        for key, value in config.items():
            if key.endswith("_dtype"):
                value = _dtype(value)
            elif key == "input_layout":
                value = {"plain": L.LAYOUT_PLAIN, "grouped": L.LAYOUT_GROUPED}.get(value, value)
            elif key == "conv_activation":
                value = {"none": L.ACTIVATION_NONE, "silu": L.ACTIVATION_SILU}.get(value, value)
            elif key == "prefill_precision" and isinstance(value, str):
                names = {"fp32": L.PRECISION_FP32, "bf16": L.PRECISION_BF16}
                if value not in names:
                    raise ValueError("prefill_precision %r: expected 'fp32' or 'bf16'" % value)
                value = names[value]
            elif key == "use_qk_l2norm":
                value = int(bool(value))
            if not hasattr(cfg, key) or key == "struct_size":
                raise TypeError("unknown layer config field %r" % key)
            setattr(cfg, key, value)
        self.ctx = ctx
        self.config = cfg
        handle = c_void_p()
        _check(L.lib().gdn_layer_create(ctx.handle, byref(cfg), byref(handle)))
        self._h = handle
        self._ws = None  # host workspace (CPU backend), grown on demand

    _destroy = "gdn_layer_destroy"

    @property
    def conv_dim(self):
        n = c_int64()
        _check(L.lib().gdn_layer_conv_dim(self._h, byref(n)))
        return n.value

    # ---- plumbing
    def _workspace(self, needed, workspace):
        if needed == 0:
            return None, 0
        if workspace is not None:
            v = view_of(workspace)
            nbytes = L.DTYPE_SIZES.get(v.dtype, 1 if v.dtype == "u8" else 2)
            for n in v.shape:
                nbytes *= n
            return v.data, nbytes
        if self.ctx.backend != "cpu":
            raise Error(8, "this call needs a %d-byte device workspace: pass workspace=" % needed)
        if self._ws is None or len(self._ws) < needed:
            self._ws = ctypes.create_string_buffer(needed)
        return ctypes.addressof(self._ws), len(self._ws)

    def _run(self, fn, args_type, fields, tensors, size_query, workspace, stream, want_extra=None):
        # Raw uint8/uint16 storage (NumPy has no bf16/fp8) is read as the dtype the layer expects.
        want = dict({f: self.config.act_dtype for f in fields}, state=self.config.state_dtype,
                    has_initial_state=L.BOOL)
        want.update(want_extra or {})
        args = args_type()
        args.struct_size = ctypes.sizeof(args_type)
        keep = []
        for name in fields:
            obj = tensors.get(name)
            if obj is None:
                continue
            v = view_of(obj)
            if v.device not in ("cpu", "cuda", "rocm"):
                raise Error(1, "%s lives on %s, which libgdn cannot read" % (name, v.device))
            if (v.device == "cpu") != (self.ctx.backend == "cpu"):
                raise Error(1, "%s is %s memory but the context is %s" % (name, v.device, self.ctx.backend))
            keep.append(v)
            setattr(args, name, to_c(v, want.get(name)))
        unknown = set(tensors) - set(fields)
        if unknown:
            raise TypeError("unknown tensor argument(s): %s" % ", ".join(sorted(unknown)))
        needed = c_size_t()
        _check(size_query(byref(needed)))
        ws, ws_bytes = self._workspace(needed.value, workspace)
        with self.ctx.lock:
            _check(fn(self._h, byref(args), ws, ws_bytes, _stream(stream)))
        del keep

    # ---- ops
    def conv_update(self, workspace=None, stream=None, **t):
        x = view_of(t["x"]) if t.get("x") is not None else None
        batch = x.shape[0] if x else 0
        tn = x.shape[1] if x and len(x.shape) == 3 else 1
        lib = L.lib()
        self._run(lib.gdn_conv_update, L.ConvUpdateArgs, L.CONV_UPDATE_FIELDS, t,
                  lambda n: lib.gdn_conv_update_workspace_size(self._h, batch, tn, n), workspace, stream)

    def conv_prefill(self, workspace=None, stream=None, **t):
        x = view_of(t["x"]) if t.get("x") is not None else None
        cu = view_of(t["cu_seqlens"]) if t.get("cu_seqlens") is not None else None
        tokens, seqs = (x.shape[0] if x else 0), (cu.shape[0] - 1 if cu and cu.shape else 0)
        lib = L.lib()
        self._run(lib.gdn_conv_prefill, L.ConvPrefillArgs, L.CONV_PREFILL_FIELDS, t,
                  lambda n: lib.gdn_conv_prefill_workspace_size(self._h, tokens, max(seqs, 0), n), workspace, stream,
                  want_extra={"has_initial_state": L.BOOL})

    def decode(self, workspace=None, stream=None, **t):
        """q, k [B, Tn, HK, K]; v [B, Tn, HV, V]; a, b, A_log, dt_bias or g, beta; state pool;
        slot_idx [B] or [B, Tn] (+ num_accepted); out [B, Tn, HV, V]."""
        q = view_of(t["q"]) if t.get("q") is not None else None
        batch, tn = (q.shape[0], q.shape[1]) if q and len(q.shape) == 4 else (0, 0)
        lib = L.lib()
        self._run(lib.gdn_decode, L.DecodeArgs, L.DECODE_FIELDS, t,
                  lambda n: lib.gdn_decode_workspace_size(self._h, batch, tn, n), workspace, stream)

    def prefill_workspace_size(self, num_tokens, num_seqs):
        """Bytes of workspace gdn_prefill needs for num_tokens tokens in num_seqs sequences
        (device memory on a GPU context)."""
        n = c_size_t()
        _check(L.lib().gdn_prefill_workspace_size(self._h, num_tokens, num_seqs, byref(n)))
        return n.value

    def prefill(self, workspace=None, stream=None, **t):
        """q, k [T, HK, K]; v [T, HV, V]; gate; state pool; cu_seqlens [N+1]; slot_idx [N];
        has_initial_state [N] (optional); out [T, HV, V]."""
        q = view_of(t["q"]) if t.get("q") is not None else None
        cu = view_of(t["cu_seqlens"]) if t.get("cu_seqlens") is not None else None
        tokens, seqs = (q.shape[0] if q else 0), (cu.shape[0] - 1 if cu and cu.shape else 0)
        lib = L.lib()
        self._run(lib.gdn_prefill, L.PrefillArgs, L.PREFILL_FIELDS, t,
                  lambda n: lib.gdn_prefill_workspace_size(self._h, tokens, max(seqs, 0), n), workspace, stream,
                  want_extra={"has_initial_state": L.BOOL})

    def decode_step(self, workspace=None, stream=None, **t):
        """One token per sequence through the whole layer: x [B, C] (packed conv input), conv_weight,
        conv_bias (optional), conv_state pool, z, a, b, A_log, dt_bias, state pool, slot_idx [B],
        norm_weight [V], out [B, HV, V]; with scales [B, HV*V/group] the output is FP8."""
        x = view_of(t["x"]) if t.get("x") is not None else None
        fp8 = t.get("scales") is not None
        lib = L.lib()
        self._run(lib.gdn_decode_step, L.DecodeStepArgs, L.DECODE_STEP_FIELDS, t,
                  lambda n: lib.gdn_decode_step_workspace_size(self._h, x.shape[0] if x else 0, n), workspace, stream,
                  want_extra={"out": self.config.fp8_dtype if fp8 else self.config.out_dtype})

    def norm_gated(self, workspace=None, stream=None, **t):
        x = view_of(t["x"]) if t.get("x") is not None else None
        lib = L.lib()
        self._run(lib.gdn_norm_gated, L.NormArgs, L.NORM_FIELDS, t,
                  lambda n: lib.gdn_norm_gated_workspace_size(self._h, x.shape[0] if x else 0, n), workspace, stream,
                  want_extra={"out": self.config.out_dtype})

    def norm_gated_fp8_quant(self, workspace=None, stream=None, **t):
        """out: FP8 storage ([T, HV, V] uint8 or a float8 tensor); scales [T, HV*V/group] f32."""
        x = view_of(t["x"]) if t.get("x") is not None else None
        lib = L.lib()
        self._run(lib.gdn_norm_gated_fp8_quant, L.NormArgs, L.NORM_FIELDS, t,
                  lambda n: lib.gdn_norm_gated_workspace_size(self._h, x.shape[0] if x else 0, n), workspace, stream,
                  want_extra={"out": self.config.fp8_dtype})
