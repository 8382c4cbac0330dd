// gdn_decode_step (conv update -> gated delta rule -> RMSNormGated [+ FP8]) against the three
// separate ops on the same inputs: outputs, scales and both pools must match bit for bit.
#include "fuzz.hpp"
#include "gdn_case.hpp"

using namespace gdnt;

namespace {

struct StepParam {
  int hk, hv, k, v;
  gdn_dtype act, state;
  int batch;
  bool grouped, fp8;
  bool bias = true;  // the conv bias given
};
void PrintTo(const StepParam&, std::ostream* os) { *os << "(see name)"; }
std::string step_name(const ::testing::TestParamInfo<StepParam>& info) {
  const StepParam& p = info.param;
  return "hk" + std::to_string(p.hk) + "_hv" + std::to_string(p.hv) + "_k" + std::to_string(p.k) + "_v" +
         std::to_string(p.v) + "_" + gdn_dtype_name(p.act) + "_s" + gdn_dtype_name(p.state) + "_b" +
         std::to_string(p.batch) + (p.grouped ? "_grp" : "_plain") + (p.fp8 ? "_fp8" : "_out") +
         (p.bias ? "" : "_nobias");
}

gdn_tensor strided(const Buf& b, size_t elem_offset, std::vector<int64_t> shape, std::vector<int64_t> strides) {
  gdn_tensor t{};
  t.data = const_cast<unsigned char*>(b.bytes.data()) + elem_offset * gdn_dtype_size(b.dt);
  t.dtype = b.dt;
  t.ndim = int32_t(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i], t.strides[i] = strides[i];
  return t;
}

// All inputs of one step; x is [B, conv_dim] (plain) or vLLM's qkvz rows (grouped), z / a / b
// separate tensors (plain) or views into qkvz / ba (grouped).
struct StepCase {
  gdn_layer_config cfg;
  int64_t HK, HV, K, V, r, B, C, W, slots;
  Buf x, ba, z, a, b, A_log, dt_bias, conv_w, conv_b, conv_state, state, slot_idx, norm_w;
  StepCase(const gdn_layer_config& c, int64_t batch, uint64_t seed)
      : cfg(c), HK(c.num_k_heads), HV(c.num_v_heads), K(c.head_k_dim), V(c.head_v_dim), r(HV / HK), B(batch),
        C(2 * HK * K + HV * V), W(c.conv_width), slots(batch + 2) {
    std::mt19937_64 rng(seed);
    const gdn_dtype act = gdn_dtype(c.act_dtype);
    const bool grouped = c.input_layout == GDN_LAYOUT_GROUPED;
    x = Buf(act, {B, grouped ? 2 * HK * K + 2 * HV * V : C});
    x.fill_uniform(rng, -1, 1);
    if (grouped) {
      ba = Buf(act, {B, 2 * HV});
      ba.fill_uniform(rng, -3, 3);
    } else {
      z = Buf(act, {B, HV, V}), a = Buf(act, {B, HV}), b = Buf(act, {B, HV});
      z.fill_uniform(rng, -2, 2), a.fill_uniform(rng, -3, 3), b.fill_uniform(rng, -3, 3);
    }
    A_log = Buf(GDN_DTYPE_F32, {HV}), dt_bias = Buf(GDN_DTYPE_F32, {HV});
    A_log.fill_uniform(rng, -2, 1), dt_bias.fill_uniform(rng, -1, 1);
    conv_w = Buf(act, {C, W}), conv_b = Buf(act, {C});
    conv_w.fill_uniform(rng, -0.6, 0.6), conv_b.fill_uniform(rng, -0.2, 0.2);
    conv_state = Buf(act, {slots, C, W - 1});
    conv_state.fill_uniform(rng, -1, 1);
    state = Buf(gdn_dtype(c.state_dtype), {slots, HV, K, V});
    state.fill_uniform(rng, -0.5, 0.5);
    slot_idx = Buf(GDN_DTYPE_I32, {B});
    for (int64_t i = 0; i < B; ++i) slot_idx.set(i, double(slots - 1 - i));
    if (B >= 3) slot_idx.set(1, GDN_PAD_SLOT);
    norm_w = Buf(GDN_DTYPE_F32, {V});
    norm_w.fill_uniform(rng, 0.5, 1.5);
  }
  bool grouped() const { return cfg.input_layout == GDN_LAYOUT_GROUPED; }
  int64_t width() const { return x.shape[1]; }
  // z / a / b views: separate tensors or rank-grouped views into qkvz / ba.
  gdn_tensor z_view() const {
    if (!grouped()) return z.view();
    return strided(x, size_t(2 * K + r * V), {B, HK, r, V}, {width(), 2 * K + 2 * r * V, V, 1});
  }
  gdn_tensor a_view() const { return grouped() ? strided(ba, 0, {B, HK, r}, {2 * HV, 2 * r, 1}) : a.view(); }
  gdn_tensor b_view() const { return grouped() ? strided(ba, size_t(r), {B, HK, r}, {2 * HV, 2 * r, 1}) : b.view(); }
};

class DecodeStep : public ::testing::TestWithParam<StepParam> {};

TEST_P(DecodeStep, EqualsTheThreeOpsBitForBit) {
  const StepParam P = GetParam();
  Ctx ctx;
  gdn_layer_config cfg = small_config(P.hk, P.hv, P.k, P.v, P.act, P.state);
  cfg.input_layout = P.grouped ? GDN_LAYOUT_GROUPED : GDN_LAYOUT_PLAIN;
  Layer layer(ctx.ctx, cfg);
  StepCase c(cfg, P.batch, 99 + uint64_t(P.batch));
  const int64_t B = c.B, HV = c.HV, V = c.V, C = c.C;
  const gdn_dtype out_dt = gdn_dtype(P.fp8 ? cfg.fp8_dtype : cfg.out_dtype);
  const int64_t groups = HV * V / cfg.fp8_group_size;

  // Reference: the three ops.
  Buf conv_state1 = c.conv_state, state1 = c.state, mixed(gdn_dtype(cfg.act_dtype), {B, C}),
      core(gdn_dtype(cfg.act_dtype), {B, 1, HV, V}), out1(out_dt, {B, HV, V}), scales1(GDN_DTYPE_F32, {B, groups});
  mixed.poison(), core.poison(), out1.poison(), scales1.poison();
  {
    auto a = make_args<gdn_conv_update_args>();
    a.x = c.x.view(), a.weight = c.conv_w.view(), a.conv_state = conv_state1.view();
    if (P.bias) a.bias = c.conv_b.view();
    a.slot_idx = c.slot_idx.view(), a.out = mixed.view();
    size_t n = 0;
    ASSERT_EQ(gdn_conv_update_workspace_size(layer.layer, B, 1, &n), GDN_SUCCESS);
    Workspace ws;
    ws.resize(n);
    ASSERT_EQ(call(gdn_conv_update, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  }
  {
    auto a = make_args<gdn_decode_args>();
    a.q = strided(mixed, 0, {B, 1, c.HK, c.K}, {C, C, c.K, 1});
    a.k = strided(mixed, size_t(c.HK * c.K), {B, 1, c.HK, c.K}, {C, C, c.K, 1});
    a.v = strided(mixed, size_t(2 * c.HK * c.K), {B, 1, HV, V}, {C, C, V, 1});
    gdn_tensor av = c.a_view(), bv = c.b_view();
    // decode wants [B, Tn, ...]: insert the token dim.
    for (gdn_tensor* t : {&av, &bv}) {
      for (int i = t->ndim; i > 1; --i) t->shape[i] = t->shape[i - 1], t->strides[i] = t->strides[i - 1];
      t->shape[1] = 1, t->strides[1] = t->strides[0];
      ++t->ndim;
    }
    a.a = av, a.b = bv, a.A_log = c.A_log.view(), a.dt_bias = c.dt_bias.view();
    a.state = state1.view(), a.slot_idx = c.slot_idx.view(), a.out = core.view();
    size_t n = 0;
    ASSERT_EQ(gdn_decode_workspace_size(layer.layer, B, 1, &n), GDN_SUCCESS);
    Workspace ws;
    ws.resize(n);
    ASSERT_EQ(call(gdn_decode, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  }
  {
    auto a = make_args<gdn_norm_gated_args>();
    a.x = strided(core, 0, {B, HV, V}, {HV * V, V, 1}), a.z = c.z_view(), a.weight = c.norm_w.view();
    a.out = out1.view();
    if (P.fp8) a.scales = scales1.view();
    size_t n = 0;
    ASSERT_EQ(gdn_norm_gated_workspace_size(layer.layer, B, &n), GDN_SUCCESS);
    Workspace ws;
    ws.resize(n);
    ASSERT_EQ(call(P.fp8 ? gdn_norm_gated_fp8_quant : gdn_norm_gated, layer.layer, &a, ws.ptr(), ws.size()),
              GDN_SUCCESS)
        << gdn_last_error_message();
  }

  // The step.
  Buf conv_state2 = c.conv_state, state2 = c.state, out2(out_dt, {B, HV, V}), scales2(GDN_DTYPE_F32, {B, groups});
  out2.poison(), scales2.poison();
  auto a = make_args<gdn_decode_step_args>();
  a.x = c.x.view(), a.conv_weight = c.conv_w.view(), a.conv_state = conv_state2.view();
  if (P.bias) a.conv_bias = c.conv_b.view();
  a.z = c.z_view(), a.a = c.a_view(), a.b = c.b_view(), a.A_log = c.A_log.view(), a.dt_bias = c.dt_bias.view();
  a.state = state2.view(), a.slot_idx = c.slot_idx.view(), a.norm_weight = c.norm_w.view(), a.out = out2.view();
  if (P.fp8) a.scales = scales2.view();
  size_t n = 0;
  ASSERT_EQ(gdn_decode_step_workspace_size(layer.layer, B, &n), GDN_SUCCESS);
  Workspace ws;
  ws.resize(n);
  ASSERT_EQ(call(gdn_decode_step, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();

  EXPECT_EQ(out1.bytes, out2.bytes) << "out";
  if (P.fp8) {
    EXPECT_EQ(scales1.bytes, scales2.bytes) << "scales";
  }
  EXPECT_EQ(conv_state1.bytes, conv_state2.bytes) << "conv_state";
  EXPECT_EQ(state1.bytes, state2.bytes) << "state";
  EXPECT_NE(state2.bytes, c.state.bytes) << "the step changed no state";
}

// On the GPU (sm_90) the fused kernel takes V = 128, K = 64 or 128, HV / HK <= 8 with K / (HV / HK) a
// power of two, and SMs / 2 < HV x B <= SMs (66 < HV x B <= 132 on 132 SMs, the simulation's
// default; none on its 3-SM run); everything else runs the three kernels (and must then equal them
// trivially).
const StepParam kStepParams[] = {
    {2, 4, 16, 32, GDN_DTYPE_BF16, GDN_DTYPE_F32, 5, false, true},
    {2, 4, 16, 32, GDN_DTYPE_F32, GDN_DTYPE_BF16, 3, true, false},
    {4, 8, 64, 64, GDN_DTYPE_BF16, GDN_DTYPE_F32, 4, true, true},
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 4, true, true},   // fused (HV x B = 128)
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 2, true, true},   // three kernels (HV x B <= 66)
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 8, true, true},   // three kernels (HV x B > 132)
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 12, true, true},  // three kernels
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 1, true, true},   // three kernels
    {4, 8, 64, 128, GDN_DTYPE_F16, GDN_DTYPE_F32, 10, false, false},    // fused, K = 64
    {2, 8, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_BF16, 12, true, true},  // fused, clusters of 4, bf16 state
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 40, false, false},  // three kernels
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 6, true, true},
    {4, 4, 64, 128, GDN_DTYPE_BF16, GDN_DTYPE_BF16, 20, true, true},   // fused, clusters of 1
    {4, 8, 128, 128, GDN_DTYPE_F16, GDN_DTYPE_BF16, 9, false, false},  // fused, bf16 state
    {2, 6, 64, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 5, false, true},    // K / G not a power of two
    {2, 4, 96, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 5, true, true},     // K = 96
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 3, true, true, false},  // fused, no conv bias
    {2, 4, 16, 32, GDN_DTYPE_BF16, GDN_DTYPE_F32, 3, false, false, false},    // no conv bias
};
INSTANTIATE_TEST_SUITE_P(Shapes, DecodeStep, ::testing::ValuesIn(kStepParams), step_name);

// Bad inputs: a clear status and nothing the caller owns touched.
TEST(DecodeStepBad, RejectsAndTouchesNothing) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 16, 32);
  Layer layer(ctx.ctx, cfg);
  StepCase c(cfg, 3, 7);
  Buf out(gdn_dtype(cfg.fp8_dtype), {3, 4, 32}), scales(GDN_DTYPE_F32, {3, 1}), out_bf(GDN_DTYPE_BF16, {3, 4, 32});
  size_t n = 0;
  ASSERT_EQ(gdn_decode_step_workspace_size(layer.layer, 3, &n), GDN_SUCCESS);
  Workspace ws;
  ws.resize(n);
  auto good = [&] {
    auto a = make_args<gdn_decode_step_args>();
    a.x = c.x.view(), a.conv_weight = c.conv_w.view(), a.conv_state = c.conv_state.view();
    a.z = c.z_view(), a.a = c.a_view(), a.b = c.b_view(), a.A_log = c.A_log.view(), a.dt_bias = c.dt_bias.view();
    a.state = c.state.view(), a.slot_idx = c.slot_idx.view(), a.norm_weight = c.norm_w.view();
    a.out = out.view(), a.scales = scales.view();
    return a;
  };
  const std::vector<unsigned char> st0 = c.state.bytes, cs0 = c.conv_state.bytes;
  struct Bad {
    const char* what;
    gdn_status want;
    std::function<void(gdn_decode_step_args&)> mutate;
    size_t ws_bytes;
  };
  const std::vector<Bad> bad = {
      {"no gate", GDN_ERROR_NULL_POINTER, [](gdn_decode_step_args& a) { a.a = gdn_tensor{}, a.b = gdn_tensor{}, a.A_log = gdn_tensor{}, a.dt_bias = gdn_tensor{}; }, n},
      {"fp8 out without scales", GDN_ERROR_BAD_DTYPE, [](gdn_decode_step_args& a) { a.scales = gdn_tensor{}; }, n},
      {"bf16 out with scales", GDN_ERROR_BAD_DTYPE, [&](gdn_decode_step_args& a) { a.out = out_bf.view(); }, n},
      {"x rank", GDN_ERROR_BAD_SHAPE, [](gdn_decode_step_args& a) { a.x.ndim = 3, a.x.shape[2] = 1, a.x.strides[2] = 1; }, n},
      {"slot_idx length", GDN_ERROR_BAD_SHAPE, [](gdn_decode_step_args& a) { a.slot_idx.shape[0] = 2; }, n},
      {"out aliases state", GDN_ERROR_ALIASING, [&](gdn_decode_step_args& a) { a.out.data = c.state.data(); }, n},
      {"workspace too small", GDN_ERROR_WORKSPACE_TOO_SMALL, [](gdn_decode_step_args&) {}, n - 1},
  };
  for (const Bad& b : bad) {
    auto a = good();
    b.mutate(a);
    out.poison(), scales.poison();
    const std::vector<unsigned char> o0 = out.bytes, s0 = scales.bytes;
    EXPECT_EQ(call(gdn_decode_step, layer.layer, &a, ws.ptr(), b.ws_bytes), b.want) << b.what;
    EXPECT_STRNE(gdn_last_error_message(), "") << b.what;
    EXPECT_EQ(out.bytes, o0) << b.what;
    EXPECT_EQ(scales.bytes, s0) << b.what;
    EXPECT_EQ(c.state.bytes, st0) << b.what;
    EXPECT_EQ(c.conv_state.bytes, cs0) << b.what;
  }
  auto a = good();
  EXPECT_EQ(call(gdn_decode_step, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
}

// Random bad calls (fuzz.hpp), plain and grouped (qkvz) inputs, FP8 output.
TEST(Fuzz, DecodeStep) {
  for (bool grouped : {false, true}) {
    Ctx ctx;
    gdn_layer_config cfg = small_config(2, 4, 16, 32);
    if (grouped) cfg.input_layout = GDN_LAYOUT_GROUPED;
    Layer layer(ctx.ctx, cfg);
    StepCase c(cfg, 3, 7);
    Buf out(gdn_dtype(cfg.fp8_dtype), {3, 4, 32}), scales(GDN_DTYPE_F32, {3, 1});
    Fuzz<gdn_decode_step_args> f;
    f.fn = gdn_decode_step;
    f.layer = layer.layer;
    auto& a = f.base;
    a = make_args<gdn_decode_step_args>();
    a.x = c.x.view(), a.conv_weight = c.conv_w.view(), a.conv_bias = c.conv_b.view(), a.conv_state = c.conv_state.view();
    a.z = c.z_view(), a.a = c.a_view(), a.b = c.b_view(), a.A_log = c.A_log.view(), a.dt_bias = c.dt_bias.view();
    a.state = c.state.view(), a.slot_idx = c.slot_idx.view(), a.norm_weight = c.norm_w.view();
    a.out = out.view(), a.scales = scales.view();
    f.bufs = {&c.x, &c.conv_w, &c.conv_b, &c.conv_state, &c.A_log, &c.dt_bias, &c.state, &c.slot_idx, &c.norm_w, &out, &scales};
    for (Buf* b : {&c.ba, &c.z, &c.a, &c.b})
      if (b->numel() > 0 && !b->shape.empty()) f.bufs.push_back(b);
    using A = gdn_decode_step_args;
    f.outs = {&A::out, &A::scales, &A::conv_state, &A::state};
    f.index_bufs = {&c.slot_idx};
    size_t n = 0;
    ASSERT_EQ(gdn_decode_step_workspace_size(layer.layer, 3, &n), GDN_SUCCESS);
    f.ws.resize(n);
    f.run(fuzz_trials(), fuzz_seed(grouped ? 18 : 17), grouped ? "decode_step grouped" : "decode_step");
  }
}

}  // namespace
