// The op entry points of the C ABI: read the versioned args, validate every tensor against the
// layer, build the backend's problem description, check the workspace, run.
#include "checks.hpp"
#include "handles.hpp"

using namespace gdn;

namespace {

void check_count(const char* name, int64_t v) {
  if (v < 0) fail(GDN_ERROR_INVALID_ARGUMENT, "%s = %lld must be >= 0", name, (long long)v);
  if (v > (int64_t(1) << 40)) fail(GDN_ERROR_SIZE_OVERFLOW, "%s = %lld is too large", name, (long long)v);
}

void check_workspace(Operands& ops, void* ws, size_t bytes, size_t need) {
  if (bytes < need)
    fail(GDN_ERROR_WORKSPACE_TOO_SMALL, "workspace_bytes = %zu, this call needs %zu (ask *_workspace_size)", bytes,
         need);
  if (need > 0 && ws == nullptr) fail(GDN_ERROR_NULL_POINTER, "workspace is NULL but %zu bytes are needed", need);
  ops.record_bytes(ws, need, "workspace");
}

// The *_workspace_size entry points: validate the counts (nb may be null for ops with one), then
// ask the layer's backend.
template <class F>
gdn_status workspace_query(gdn_layer layer, const char* na, int64_t a, const char* nb, int64_t b, size_t* bytes,
                           F&& need) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    check_count(na, a);
    if (nb) check_count(nb, b);
    if (!bytes) fail(GDN_ERROR_NULL_POINTER, "bytes is NULL");
    *bytes = need(*L.ctx->impl, L.dims);
  });
}

// Sequence boundaries: on the CPU backend (host memory) the contents are checked too; GPU
// kernels clamp them instead, since the host never reads device memory.
VecView cu_seqlens_view(Operands& ops, const gdn_layer_s& L, const gdn_tensor& t, int64_t T, int64_t* N) {
  check_common(t, "cu_seqlens", {GDN_DTYPE_I32, GDN_DTYPE_I64});
  if (t.ndim != 1 || t.shape[0] < 1) fail(GDN_ERROR_BAD_SHAPE, "cu_seqlens: expected [N+1] with N >= 0");
  *N = t.shape[0] - 1;
  VecView v = vec_view(ops, t, "cu_seqlens", t.shape[0], {GDN_DTYPE_I32, GDN_DTYPE_I64});
  if (L.ctx->backend == GDN_BACKEND_CPU) {
    if (v.idx(0) != 0) fail(GDN_ERROR_INVALID_ARGUMENT, "cu_seqlens[0] = %lld, expected 0", (long long)v.idx(0));
    for (int64_t i = 0; i < *N; ++i)
      if (v.idx(i + 1) < v.idx(i))
        fail(GDN_ERROR_INVALID_ARGUMENT, "cu_seqlens decreases at %lld (%lld < %lld)", (long long)(i + 1),
             (long long)v.idx(i + 1), (long long)v.idx(i));
    if (v.idx(*N) != T)
      fail(GDN_ERROR_INVALID_ARGUMENT, "cu_seqlens[N] = %lld, expected the token count %lld", (long long)v.idx(*N),
           (long long)T);
  }
  return v;
}

// ---- conv
void conv_common(Operands& ops, const gdn_layer_s& L, const gdn_tensor& weight, const gdn_tensor& bias,
                 const gdn_tensor& state, ConvProblem* p) {
  const LayerDims& d = L.dims;
  const int64_t C = d.conv_dim();
  const int32_t act = L.cfg.act_dtype;
  p->d = d;
  p->silu = L.cfg.conv_activation == GDN_ACTIVATION_SILU;
  ops.add(weight, "weight", {act, GDN_DTYPE_F32}, {C, d.W}, false);
  p->weight = MatView{static_cast<char*>(weight.data), weight.dtype, C, d.W, weight.strides[0], weight.strides[1]};
  p->bias = vec_view(ops, bias, "bias", C, {act, GDN_DTYPE_F32}, true);
  ops.add(state, "conv_state", {act, GDN_DTYPE_F32}, {-1, C, d.W - 1}, true);
  p->state = ConvStateView{static_cast<char*>(state.data), state.dtype, state.shape[0], state.strides[0],
                           state.strides[1], state.strides[2]};
}

// x / out rows: leading dims given, last dim x_cols / conv_dim, unit column stride.
RowView conv_rows(Operands& ops, const gdn_tensor& t, const char* name, int32_t act, int lead, int64_t cols,
                  bool at_least, bool output) {
  check_common(t, name, {act});
  if (t.ndim != lead + 1)
    fail(GDN_ERROR_BAD_SHAPE, "%s: rank %d, expected %d", name, t.ndim, lead + 1);
  const int64_t got = t.shape[lead];
  if (at_least ? got < cols : got != cols)
    fail(GDN_ERROR_BAD_SHAPE, "%s: last dim %lld, expected %s%lld", name, (long long)got, at_least ? ">= " : "",
         (long long)cols);
  if (got > 1 && t.strides[lead] != 1)
    fail(GDN_ERROR_BAD_STRIDE, "%s: innermost dimension must have stride 1", name);
  ops.record(t, name, output);
  return RowView{static_cast<char*>(t.data), t.dtype, t.strides[0], lead == 2 ? t.strides[1] : 0};
}

int64_t conv_input_width(const LayerDims& d) { return d.layout == GDN_LAYOUT_PLAIN ? d.conv_dim() : d.qkvz_dim(); }

// ---- gated delta rule
void gate_views(Operands& ops, const gdn_layer_s& L, const gdn_tensor& a, const gdn_tensor& b, const gdn_tensor& A_log,
                const gdn_tensor& dt_bias, const gdn_tensor& g, const gdn_tensor& beta,
                std::initializer_list<int64_t> lead, GdnProblem* p) {
  const LayerDims& d = L.dims;
  const bool raw = !tensor_absent(a) || !tensor_absent(b) || !tensor_absent(A_log) || !tensor_absent(dt_bias);
  const bool pre = !tensor_absent(g) || !tensor_absent(beta);
  if (raw && pre)
    fail(GDN_ERROR_INVALID_ARGUMENT, "give the gate either raw (a, b, A_log, dt_bias) or precomputed (g, beta), not both");
  if (!raw && !pre) fail(GDN_ERROR_NULL_POINTER, "gate missing: give a, b, A_log, dt_bias or g, beta");
  p->raw_gate = raw;
  if (raw) {
    p->a = head_view(ops, a, "a", lead, d.HV, d.HK, 0, {L.cfg.act_dtype}, false);
    p->b = head_view(ops, b, "b", lead, d.HV, d.HK, 0, {L.cfg.act_dtype}, false);
    p->A_log = vec_view(ops, A_log, "A_log", d.HV, {GDN_FLOAT_TYPES});
    p->dt_bias = vec_view(ops, dt_bias, "dt_bias", d.HV, {GDN_FLOAT_TYPES});
  } else {
    p->g = head_view(ops, g, "g", lead, d.HV, d.HK, 0, {GDN_FLOAT_TYPES}, false);
    p->beta = head_view(ops, beta, "beta", lead, d.HV, d.HK, 0, {GDN_FLOAT_TYPES}, false);
  }
}

StateView state_view(Operands& ops, const gdn_layer_s& L, const gdn_tensor& t) {
  const LayerDims& d = L.dims;
  ops.add(t, "state", {L.cfg.state_dtype}, {-1, d.HV, d.K, d.V}, true);
  if (d.V > 1 && t.strides[3] != 1) fail(GDN_ERROR_BAD_STRIDE, "state: innermost dimension must have stride 1");
  return StateView{static_cast<char*>(t.data), t.dtype, t.shape[0], t.strides[0], t.strides[1], t.strides[2]};
}

// q, k, v, the gate and the state of a decode or prefill call (gdn_decode_args or
// gdn_prefill_args), over the leading dimensions `lead` ({B, Tn} or {T}).
template <class Args>
void token_inputs(Operands& ops, const gdn_layer_s& L, const Args& a, std::initializer_list<int64_t> lead,
                  GdnProblem* p) {
  const LayerDims& d = L.dims;
  const int32_t act = L.cfg.act_dtype;
  p->q = head_view(ops, a.q, "q", lead, d.HK, 0, d.K, {act}, false);
  p->k = head_view(ops, a.k, "k", lead, d.HK, 0, d.K, {act}, false);
  p->v = head_view(ops, a.v, "v", lead, d.HV, d.HK, d.V, {act}, false);
  gate_views(ops, L, a.a, a.b, a.A_log, a.dt_bias, a.g, a.beta, lead, p);
  p->state = state_view(ops, L, a.state);
}

void gdn_common(const gdn_layer_s& L, GdnProblem* p) {
  p->d = L.dims;
  p->l2norm = L.cfg.use_qk_l2norm != 0;
  p->bf16_products = L.cfg.prefill_precision == GDN_PRECISION_BF16;
  p->scale = L.scale;
}

// ---- norm
// Everything but x: z, weight, out (out_dtype, or fp8_dtype with scales) and the scales.
void norm_tensors(Operands& ops, const gdn_layer_s& L, int64_t T, const gdn_tensor& z, const gdn_tensor& weight,
                  const char* weight_name, const gdn_tensor& out, const gdn_tensor& scales, bool fp8,
                  NormProblem* p) {
  const LayerDims& d = L.dims;
  const int32_t act = L.cfg.act_dtype;
  p->d = d;
  p->eps = L.cfg.norm_eps;
  p->T = T;
  p->z = head_view(ops, z, "z", {T}, d.HV, d.HK, d.V, {act}, false);
  p->weight = vec_view(ops, weight, weight_name, d.V, {act, GDN_DTYPE_F32});
  p->out = head_view(ops, out, "out", {T}, d.HV, 0, d.V, {fp8 ? L.cfg.fp8_dtype : L.cfg.out_dtype}, true);
  if (fp8) {
    p->group = L.cfg.fp8_group_size;
    ops.add(scales, "scales", {GDN_DTYPE_F32}, {T, d.HV * d.V / p->group}, true);
    p->scales = MatView{static_cast<char*>(scales.data), scales.dtype, T, d.HV * d.V / p->group, scales.strides[0],
                        scales.strides[1]};
  }
}

void norm_problem(Operands& ops, const gdn_layer_s& L, const gdn_norm_gated_args& a, bool fp8, NormProblem* p) {
  const LayerDims& d = L.dims;
  const int32_t act = L.cfg.act_dtype;
  check_common(a.x, "x", {act});
  if (a.x.ndim != 3) fail(GDN_ERROR_BAD_SHAPE, "x: rank %d, expected [T, HV, V]", a.x.ndim);
  const int64_t T = a.x.shape[0];
  p->x = head_view(ops, a.x, "x", {T}, d.HV, 0, d.V, {act}, false);
  norm_tensors(ops, L, T, a.z, a.weight, "weight", a.out, a.scales, fp8, p);
  if (!fp8 && !tensor_absent(a.scales)) fail(GDN_ERROR_INVALID_ARGUMENT, "scales is only for gdn_norm_gated_fp8_quant");
}

gdn_status run_norm(gdn_layer layer, const gdn_norm_gated_args* args, void* ws, size_t ws_bytes, void* stream,
                    bool fp8) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    const auto a = read_versioned(args, "gdn_norm_gated_args");
    Operands ops;
    NormProblem p;
    norm_problem(ops, L, a, fp8, &p);
    check_workspace(ops, ws, ws_bytes, L.ctx->impl->norm_workspace(L.dims, p.T));
    ops.check_aliasing();
    L.ctx->impl->norm_gated(p, fp8, ws, ws_bytes, stream);
  });
}

// ---- decode step: the workspace holds the conv output [B, conv_dim] and the core output
// [B, HV, V] (act dtype), then the three ops' own workspaces.
struct StepWorkspace {
  size_t mixed, core, conv, decode, norm, total;
};
size_t align256(size_t n) { return (n + 255) / 256 * 256; }
StepWorkspace step_workspace(const Backend& be, const LayerDims& d, int32_t act, int64_t B) {
  StepWorkspace w{};
  const size_t es = size_t(dtype_bytes(act));
  w.mixed = align256(size_t(B) * size_t(d.conv_dim()) * es);
  w.core = align256(size_t(B) * size_t(d.HV * d.V) * es);
  w.conv = align256(be.conv_workspace(d, B, B));
  w.decode = align256(be.decode_workspace(d, B, 1));
  w.norm = align256(be.norm_workspace(d, B));
  w.total = w.mixed + w.core + w.conv + w.decode + w.norm;
  return w;
}

}  // namespace

extern "C" {

GDN_API gdn_status gdn_decode_step_workspace_size(gdn_layer layer, int64_t batch, size_t* bytes) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    check_count("batch", batch);
    if (!bytes) fail(GDN_ERROR_NULL_POINTER, "bytes is NULL");
    *bytes = step_workspace(*L.ctx->impl, L.dims, L.cfg.act_dtype, batch).total;
  });
}

GDN_API gdn_status gdn_decode_step(gdn_layer layer, const gdn_decode_step_args* args, void* ws, size_t ws_bytes,
                                   void* stream) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    const auto a = read_versioned(args, "gdn_decode_step_args");
    const LayerDims& d = L.dims;
    const int32_t act = L.cfg.act_dtype;
    const bool fp8 = !tensor_absent(a.scales);
    Operands ops;
    check_common(a.x, "x", {act});
    if (a.x.ndim != 2) fail(GDN_ERROR_BAD_SHAPE, "x: rank %d, expected [B, C]", a.x.ndim);
    const int64_t B = a.x.shape[0];
    const StepWorkspace w = step_workspace(*L.ctx->impl, d, act, B);
    char* base = static_cast<char*>(ws);
    char *mixed = base, *core = base + w.mixed, *conv_ws = core + w.core, *dec_ws = conv_ws + w.conv,
         *norm_ws = dec_ws + w.decode;
    const int64_t C = d.conv_dim(), es = dtype_bytes(act);

    ConvProblem pc{};
    conv_common(ops, L, a.conv_weight, a.conv_bias, a.conv_state, &pc);
    pc.x = conv_rows(ops, a.x, "x", act, 1, conv_input_width(d), d.layout == GDN_LAYOUT_PLAIN, false);
    pc.out = RowView{mixed, act, C, 0};
    pc.slot_idx = vec_view(ops, a.slot_idx, "slot_idx", B, {GDN_DTYPE_I32});
    pc.num_seqs = B;
    pc.tokens_per_seq = 1;

    GdnProblem pd{};
    gdn_common(L, &pd);
    pd.q = HeadView{mixed, act, 1, C, C, d.K, 0};
    pd.k = HeadView{mixed + es * d.HK * d.K, act, 1, C, C, d.K, 0};
    pd.v = HeadView{mixed + es * 2 * d.HK * d.K, act, 1, C, C, d.V, 0};
    gate_views(ops, L, a.a, a.b, a.A_log, a.dt_bias, gdn_tensor{}, gdn_tensor{}, {B}, &pd);
    if (!pd.raw_gate) fail(GDN_ERROR_NULL_POINTER, "gate missing: give a, b, A_log, dt_bias");
    pd.state = state_view(ops, L, a.state);
    pd.slot_idx = MatView{static_cast<char*>(a.slot_idx.data), a.slot_idx.dtype, B, 1, a.slot_idx.strides[0], 0};
    pd.out = HeadView{core, act, 1, d.HV * d.V, d.HV * d.V, d.V, 0};
    pd.num_seqs = B;
    pd.tokens_per_seq = 1;
    pd.num_tokens = B;

    NormProblem pn{};
    pn.x = HeadView{core, act, 1, d.HV * d.V, 0, d.V, 0};
    norm_tensors(ops, L, B, a.z, a.norm_weight, "norm_weight", a.out, a.scales, fp8, &pn);
    check_workspace(ops, ws, ws_bytes, w.total);
    ops.check_aliasing();
    Backend& be = *L.ctx->impl;
    if (be.fused_decode_step(pc, pd, pn, fp8, stream)) return;
    pc.release_early = pd.state_ready = true;  // the decode's state loads overlap the conv
    be.conv_update(pc, conv_ws, w.conv, stream);
    be.decode(pd, dec_ws, w.decode, stream);
    be.norm_gated(pn, fp8, norm_ws, w.norm, stream);
  });
}

GDN_API gdn_status gdn_conv_update_workspace_size(gdn_layer layer, int64_t batch, int64_t tokens_per_seq,
                                                  size_t* bytes) {
  return workspace_query(layer, "batch", batch, "tokens_per_seq", tokens_per_seq, bytes,
                         [&](Backend& be, const LayerDims& d) {
                           if (tokens_per_seq > 0 && batch > (int64_t(1) << 40) / tokens_per_seq)
                             fail(GDN_ERROR_SIZE_OVERFLOW, "batch * tokens_per_seq is too large");
                           return be.conv_workspace(d, batch * tokens_per_seq, batch);
                         });
}

GDN_API gdn_status gdn_conv_update(gdn_layer layer, const gdn_conv_update_args* args, void* ws, size_t ws_bytes,
                                   void* stream) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    const auto a = read_versioned(args, "gdn_conv_update_args");
    Operands ops;
    ConvProblem p{};
    conv_common(ops, L, a.weight, a.bias, a.conv_state, &p);
    check_common(a.x, "x", {L.cfg.act_dtype});
    if (a.x.ndim != 2 && a.x.ndim != 3) fail(GDN_ERROR_BAD_SHAPE, "x: rank %d, expected [B, C] or [B, Tn, C]", a.x.ndim);
    const int lead = a.x.ndim - 1;
    const int64_t B = a.x.shape[0], Tn = lead == 2 ? a.x.shape[1] : 1;
    const bool plain = L.dims.layout == GDN_LAYOUT_PLAIN;
    p.x = conv_rows(ops, a.x, "x", L.cfg.act_dtype, lead, conv_input_width(L.dims), plain, false);
    p.out = conv_rows(ops, a.out, "out", L.cfg.act_dtype, lead, L.dims.conv_dim(), false, true);
    if (a.out.shape[0] != B || (lead == 2 && a.out.shape[1] != Tn))
      fail(GDN_ERROR_BAD_SHAPE, "out: leading dims must match x's ([B] or [B, Tn])");
    p.slot_idx = vec_view(ops, a.slot_idx, "slot_idx", B, {GDN_DTYPE_I32});
    p.num_seqs = B;
    p.tokens_per_seq = Tn;
    check_workspace(ops, ws, ws_bytes, L.ctx->impl->conv_workspace(L.dims, B * Tn, B));
    ops.check_aliasing();
    L.ctx->impl->conv_update(p, ws, ws_bytes, stream);
  });
}

GDN_API gdn_status gdn_conv_prefill_workspace_size(gdn_layer layer, int64_t num_tokens, int64_t num_seqs,
                                                   size_t* bytes) {
  return workspace_query(layer, "num_tokens", num_tokens, "num_seqs", num_seqs, bytes,
                         [&](Backend& be, const LayerDims& d) { return be.conv_workspace(d, num_tokens, num_seqs); });
}

GDN_API gdn_status gdn_conv_prefill(gdn_layer layer, const gdn_conv_prefill_args* args, void* ws, size_t ws_bytes,
                                    void* stream) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    const auto a = read_versioned(args, "gdn_conv_prefill_args");
    Operands ops;
    ConvProblem p{};
    conv_common(ops, L, a.weight, a.bias, a.conv_state, &p);
    check_common(a.x, "x", {L.cfg.act_dtype});
    if (a.x.ndim != 2) fail(GDN_ERROR_BAD_SHAPE, "x: rank %d, expected [T, C]", a.x.ndim);
    const int64_t T = a.x.shape[0];
    p.x = conv_rows(ops, a.x, "x", L.cfg.act_dtype, 1, conv_input_width(L.dims), L.dims.layout == GDN_LAYOUT_PLAIN,
                    false);
    p.x.s_tok = p.x.s_seq;
    p.x.s_seq = 0;
    p.out = conv_rows(ops, a.out, "out", L.cfg.act_dtype, 1, L.dims.conv_dim(), false, true);
    if (a.out.shape[0] != T) fail(GDN_ERROR_BAD_SHAPE, "out: %lld rows, x has %lld", (long long)a.out.shape[0], (long long)T);
    p.out.s_tok = p.out.s_seq;
    p.out.s_seq = 0;
    int64_t N = 0;
    p.cu_seqlens = cu_seqlens_view(ops, L, a.cu_seqlens, T, &N);
    p.slot_idx = vec_view(ops, a.slot_idx, "slot_idx", N, {GDN_DTYPE_I32});
    p.has_initial = vec_view(ops, a.has_initial_state, "has_initial_state", N, {GDN_DTYPE_BOOL, GDN_DTYPE_I32}, true);
    p.num_seqs = N;
    p.tokens_per_seq = T;
    check_workspace(ops, ws, ws_bytes, L.ctx->impl->conv_workspace(L.dims, T, N));
    ops.check_aliasing();
    L.ctx->impl->conv_prefill(p, ws, ws_bytes, stream);
  });
}

GDN_API gdn_status gdn_decode_workspace_size(gdn_layer layer, int64_t batch, int64_t tokens_per_seq, size_t* bytes) {
  return workspace_query(layer, "batch", batch, "tokens_per_seq", tokens_per_seq, bytes,
                         [&](Backend& be, const LayerDims& d) { return be.decode_workspace(d, batch, tokens_per_seq); });
}

GDN_API gdn_status gdn_decode(gdn_layer layer, const gdn_decode_args* args, void* ws, size_t ws_bytes, void* stream) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    const auto a = read_versioned(args, "gdn_decode_args");
    const LayerDims& d = L.dims;
    const int32_t act = L.cfg.act_dtype;
    Operands ops;
    GdnProblem p{};
    gdn_common(L, &p);
    check_common(a.q, "q", {act});
    if (a.q.ndim != 4) fail(GDN_ERROR_BAD_SHAPE, "q: rank %d, expected [B, Tn, HK, K]", a.q.ndim);
    const int64_t B = a.q.shape[0], Tn = a.q.shape[1];
    token_inputs(ops, L, a, {B, Tn}, &p);
    check_common(a.slot_idx, "slot_idx", {GDN_DTYPE_I32});
    if (a.slot_idx.ndim == 2) {
      ops.add(a.slot_idx, "slot_idx", {GDN_DTYPE_I32}, {B, Tn}, false);
      p.slot_idx = MatView{static_cast<char*>(a.slot_idx.data), a.slot_idx.dtype, B, Tn, a.slot_idx.strides[0],
                           a.slot_idx.strides[1]};
      p.per_token_slots = true;
      p.num_accepted = vec_view(ops, a.num_accepted, "num_accepted", B, {GDN_DTYPE_I32}, true);
    } else {
      ops.add(a.slot_idx, "slot_idx", {GDN_DTYPE_I32}, {B}, false);
      p.slot_idx = MatView{static_cast<char*>(a.slot_idx.data), a.slot_idx.dtype, B, 1, a.slot_idx.strides[0], 0};
      if (!tensor_absent(a.num_accepted))
        fail(GDN_ERROR_INVALID_ARGUMENT, "num_accepted needs a per-token slot_idx of shape [B, Tn]");
    }
    p.out = head_view(ops, a.out, "out", {B, Tn}, d.HV, 0, d.V, {act}, true);
    p.num_seqs = B;
    p.tokens_per_seq = Tn;
    p.num_tokens = B * Tn;
    check_workspace(ops, ws, ws_bytes, L.ctx->impl->decode_workspace(d, B, Tn));
    ops.check_aliasing();
    L.ctx->impl->decode(p, ws, ws_bytes, stream);
  });
}

GDN_API gdn_status gdn_prefill_workspace_size(gdn_layer layer, int64_t num_tokens, int64_t num_seqs, size_t* bytes) {
  return workspace_query(layer, "num_tokens", num_tokens, "num_seqs", num_seqs, bytes,
                         [&](Backend& be, const LayerDims& d) { return be.prefill_workspace(d, num_tokens, num_seqs); });
}

GDN_API gdn_status gdn_prefill(gdn_layer layer, const gdn_prefill_args* args, void* ws, size_t ws_bytes,
                               void* stream) {
  return guarded([&] {
    const gdn_layer_s& L = layer_ref(layer);
    const auto a = read_versioned(args, "gdn_prefill_args");
    const LayerDims& d = L.dims;
    const int32_t act = L.cfg.act_dtype;
    Operands ops;
    GdnProblem p{};
    gdn_common(L, &p);
    check_common(a.q, "q", {act});
    if (a.q.ndim != 3) fail(GDN_ERROR_BAD_SHAPE, "q: rank %d, expected [T, HK, K]", a.q.ndim);
    const int64_t T = a.q.shape[0];
    token_inputs(ops, L, a, {T}, &p);
    int64_t N = 0;
    p.cu_seqlens = cu_seqlens_view(ops, L, a.cu_seqlens, T, &N);
    ops.add(a.slot_idx, "slot_idx", {GDN_DTYPE_I32}, {N}, false);
    p.slot_idx = MatView{static_cast<char*>(a.slot_idx.data), a.slot_idx.dtype, N, 1, a.slot_idx.strides[0], 0};
    p.has_initial = vec_view(ops, a.has_initial_state, "has_initial_state", N, {GDN_DTYPE_BOOL, GDN_DTYPE_I32}, true);
    p.out = head_view(ops, a.out, "out", {T}, d.HV, 0, d.V, {act}, true);
    p.num_seqs = N;
    p.tokens_per_seq = 0;
    p.num_tokens = T;
    check_workspace(ops, ws, ws_bytes, L.ctx->impl->prefill_workspace(d, T, N));
    ops.check_aliasing();
    L.ctx->impl->prefill(p, ws, ws_bytes, stream);
  });
}

GDN_API gdn_status gdn_norm_gated_workspace_size(gdn_layer layer, int64_t num_tokens, size_t* bytes) {
  return workspace_query(layer, "num_tokens", num_tokens, nullptr, 0, bytes,
                         [&](Backend& be, const LayerDims& d) { return be.norm_workspace(d, num_tokens); });
}

GDN_API gdn_status gdn_norm_gated(gdn_layer layer, const gdn_norm_gated_args* args, void* ws, size_t ws_bytes,
                                  void* stream) {
  return run_norm(layer, args, ws, ws_bytes, stream, false);
}

GDN_API gdn_status gdn_norm_gated_fp8_quant(gdn_layer layer, const gdn_norm_gated_args* args, void* ws,
                                            size_t ws_bytes, void* stream) {
  return run_norm(layer, args, ws, ws_bytes, stream, true);
}

}  // extern "C"
