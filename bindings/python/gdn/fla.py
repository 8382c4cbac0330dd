"""Drop-in replacements for FLA's (and vLLM's vendored FLA) gated delta rule entry points:

    from gdn.fla import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

Same argument names, shapes and return values: q, k [B, T, H, K]; v [B, T, HV, V]; g (log
decay) and beta [B, T, HV]; initial_state [N, HV, K, V] (N = B, or the number of sequences
with cu_seqlens, where B must be 1); returns (o [B, T, HV, V], final_state or None).
Outputs are allocated with the inputs' own library (torch's new_empty / numpy.empty), which this
module never imports. States are float32.
"""
import sys

from . import Context, Layer, _lib as L
from ._tensor import view_of

_contexts = {}
_layers = {}


def _context(device):
    key = "cpu" if device == "cpu" else "cuda"
    if key not in _contexts:
        _contexts[key] = Context("cpu" if key == "cpu" else "cuda")
    return _contexts[key]


def _empty_like(ref, shape, dtype_name):
    """A new uninitialised tensor of the same library and device as `ref`."""
    if hasattr(ref, "new_empty"):  # torch
        torch = sys.modules["torch"]
        return ref.new_empty(shape, dtype=getattr(torch, dtype_name))
    np = sys.modules.get("numpy")
    if np is not None and hasattr(ref, "__array_interface__"):
        return np.empty(shape, dtype=dtype_name)
    raise TypeError("cannot allocate outputs like %s; use gdn.Layer.prefill directly" % type(ref).__name__)


def _int_tensor(ref, values, dtype_name="int32"):
    out = _empty_like(ref, (len(values),), dtype_name)
    if hasattr(out, "copy_"):
        torch = sys.modules["torch"]
        out.copy_(torch.tensor(values, dtype=getattr(torch, dtype_name)))
    else:
        out[:] = values
    return out


def _layer(device, HK, HV, K, V, act, scale, l2norm):
    key = (device, HK, HV, K, V, act, scale, l2norm)
    if key not in _layers:
        _layers[key] = Layer(_context(device), num_k_heads=HK, num_v_heads=HV, head_k_dim=K, head_v_dim=V,
                             act_dtype=act, state_dtype="f32", out_dtype=act, use_qk_l2norm=l2norm,
                             scale=float(scale or 0.0), fp8_group_size=V if (HV * V) % 128 else 128)
    return _layers[key]


def _flat(view_obj, B, T):
    """[B, T, ...] -> [B*T, ...] as a View (any strides where B == 1)."""
    v = view_of(view_obj)
    if len(v.shape) < 3:
        raise ValueError("expected [B, T, ...] tensors")
    if B > 1 and v.strides[0] != T * v.strides[1]:
        raise ValueError("[B, T, ...] inputs must have B and T mergeable (make them contiguous)")
    return type(v)(v.data, v.dtype, (B * T,) + v.shape[2:], (v.strides[1],) + v.strides[2:], v.device, v.owner)


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           cu_seqlens=None, use_qk_l2norm_in_kernel=False, **unused):
    qv, vv = view_of(q), view_of(v)
    B, T, HK, K = qv.shape
    HV, V = vv.shape[2], vv.shape[3]
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError("with cu_seqlens, B must be 1")
        cu = view_of(cu_seqlens)
        N = cu.shape[0] - 1
        cu_t = cu_seqlens
    else:
        N = B
        cu_t = _int_tensor(q, [i * T for i in range(B + 1)])
    act = {L.F32: "float32", L.F16: "float16", L.BF16: "bfloat16"}.get(qv.dtype)
    if act is None:
        raise TypeError("q must be float32, float16 or bfloat16")
    layer = _layer(qv.device, HK, HV, K, V, {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[act], scale,
                   use_qk_l2norm_in_kernel)
    o = _empty_like(q, (B, T, HV, V), act)
    state = _empty_like(q, (N, HV, K, V), "float32")
    if initial_state is not None:
        if hasattr(state, "copy_"):
            state.copy_(initial_state)
        else:
            state[...] = initial_state
    slots = _int_tensor(q, list(range(N)))
    has_init = _int_tensor(q, [1 if initial_state is not None else 0] * N)
    ws_bytes = layer.prefill_workspace_size(B * T, N)
    ws = _empty_like(q, (ws_bytes,), "uint8") if ws_bytes and qv.device != "cpu" else None
    layer.prefill(q=_flat(q, B, T), k=_flat(k, B, T), v=_flat(v, B, T), g=_flat(g, B, T), beta=_flat(beta, B, T),
                  state=state, cu_seqlens=cu_t, slot_idx=slots, has_initial_state=has_init, out=_flat(o, B, T),
                  workspace=ws, stream=_current_stream(q))
    return o, (state if output_final_state else None)


def fused_recurrent_gated_delta_rule(q, k, v, g, beta=None, scale=None, initial_state=None, output_final_state=False,
                                     cu_seqlens=None, use_qk_l2norm_in_kernel=False, **unused):
    """The recurrent form: the same function as the chunked one (libgdn's oracle tests hold both
    to the same float64 recurrence), so it shares the implementation."""
    if beta is None:
        raise ValueError("beta is required")
    return chunk_gated_delta_rule(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                  output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                  use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel)


def _current_stream(ref):
    if getattr(ref, "is_cuda", False):
        torch = sys.modules["torch"]
        return torch.cuda.current_stream(ref.device).cuda_stream
    return None
