// conv_update and conv_prefill against a float64 causal conv oracle, for the plain (q|k|v) and
// the grouped Qwen3-Next (qkvz interleaved per key head) input layouts.
#include "test_util.hpp"

using namespace gdnt;

namespace {

struct ConvCase {
  int64_t HK, HV, K, V, W, C, T, slots;
  bool grouped, silu, has_bias;
  gdn_dtype act, state_dt;
  Buf mixed;   // [T, C] plain q|k|v: what the oracle reads
  Buf x;       // [T, width]: what the library reads (plain with a trailing z, or grouped qkvz)
  Buf weight, bias, state, out;

  ConvCase(const gdn_layer_config& c, int64_t tokens, int64_t num_slots, bool bias_on, gdn_dtype state_dtype,
           uint64_t seed)
      : HK(c.num_k_heads), HV(c.num_v_heads), K(c.head_k_dim), V(c.head_v_dim), W(c.conv_width),
        C(2 * HK * K + HV * V), T(tokens), slots(num_slots), grouped(c.input_layout == GDN_LAYOUT_GROUPED),
        silu(c.conv_activation == GDN_ACTIVATION_SILU), has_bias(bias_on), act(gdn_dtype(c.act_dtype)),
        state_dt(state_dtype) {
    std::mt19937_64 rng(seed);
    mixed = Buf(act, {T, C});
    mixed.fill_uniform(rng, -2, 2);
    const int64_t width = 2 * HK * K + 2 * HV * V;  // qkvz
    x = Buf(act, {T, width});
    x.fill_uniform(rng, -2, 2);  // z columns: noise the conv must ignore
    const int64_t r = HV / HK, G = 2 * K + 2 * r * V;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t ch = 0; ch < C; ++ch) {
        int64_t col = ch;
        if (grouped) {  // vLLM's Qwen3-Next in_proj_qkvz: per key head [q, k, v (r heads), z (r heads)]
          if (ch < HK * K)
            col = (ch / K) * G + ch % K;
          else if (ch < 2 * HK * K)
            col = ((ch - HK * K) / K) * G + K + (ch - HK * K) % K;
          else {
            const int64_t hv = (ch - 2 * HK * K) / V, j = (ch - 2 * HK * K) % V;
            col = (hv / r) * G + 2 * K + (hv % r) * V + j;
          }
        }
        x.set(t * width + col, mixed.get(t * C + ch));
      }
    weight = Buf(state_dt, {C, W});  // act dtype or F32, like the state: both kernel paths get tested
    weight.fill_uniform(rng, -1, 1);
    bias = Buf(act, {C});
    bias.fill_uniform(rng, -0.5, 0.5);
    state = Buf(state_dt, {slots, C, W - 1});
    state.fill_uniform(rng, -2, 2);
    out = Buf(act, {T, C});
    out.poison();
  }

  // Oracle over tokens [t0, t1) for every channel, window from `pool` slot (or zeros).
  void run(std::vector<double>& pool, int64_t slot, bool initial, int64_t t0, int64_t t1,
           std::vector<double>& want) const {
    for (int64_t ch = 0; ch < C; ++ch) {
      std::vector<double> win(size_t(W - 1), 0.0);
      if (initial)
        for (int64_t j = 0; j < W - 1; ++j) win[size_t(j)] = pool[size_t((slot * C + ch) * (W - 1) + j)];
      for (int64_t t = t0; t < t1; ++t) {
        const double xv = mixed.get(t * C + ch);
        double acc = (has_bias ? bias.get(ch) : 0.0) + weight.get(ch * W + W - 1) * xv;
        for (int64_t j = 0; j < W - 1; ++j) acc += weight.get(ch * W + j) * win[size_t(j)];
        if (W > 1) {
          win.erase(win.begin());
          win.push_back(xv);
        }
        want[size_t(t * C + ch)] = silu ? gdnt::silu(acc) : acc;
      }
      for (int64_t j = 0; j < W - 1; ++j) pool[size_t((slot * C + ch) * (W - 1) + j)] = win[size_t(j)];
    }
  }
  gdn_tensor x_view() const {
    gdn_tensor t = x.view();
    if (!grouped) t.shape[1] = C + 3;  // plain: any width >= conv_dim, extra columns ignored
    return t;
  }
};

struct ConvParam {
  int hk, hv, k, v, w;
  gdn_dtype act, state;
  bool grouped, silu, bias;
};
// Parameters are spelled out in the test name; keep ctest names short.
void PrintTo(const ConvParam&, std::ostream* os) { *os << "(see name)"; }


class Conv : public ::testing::TestWithParam<ConvParam> {
 protected:
  gdn_layer_config config() const {
    const ConvParam& P = GetParam();
    gdn_layer_config c = small_config(P.hk, P.hv, P.k, P.v, P.act);
    c.conv_width = P.w;
    c.input_layout = P.grouped ? GDN_LAYOUT_GROUPED : GDN_LAYOUT_PLAIN;
    c.conv_activation = P.silu ? GDN_ACTIVATION_SILU : GDN_ACTIVATION_NONE;
    return c;
  }
};

TEST_P(Conv, UpdateMatchesOracle) {
  const ConvParam P = GetParam();
  Ctx ctx;
  const gdn_layer_config cfg = config();
  Layer layer(ctx.ctx, cfg);
  // The vector kernel (W = 4, 2-byte dtypes) takes 2 channels a thread at B = 5, 4 at B = 100 and
  // 8 at B = 300, for C = 8192 on 132 SMs (the H100, the simulation's default) and C = 96 on 3.
  for (auto [B, Tn] : {std::pair<int64_t, int64_t>{5, 1}, {5, 3}, {100, 1}, {300, 1}}) {
    const int64_t slots = B + 2;
    ConvCase c(cfg, B * Tn, slots, P.bias, P.state, 31 + uint64_t(Tn + B));
    Buf slot_idx(GDN_DTYPE_I32, {B});
    for (int64_t b = 0; b < B; ++b) slot_idx.set(b, double(slots - 1 - b));
    slot_idx.set(1, GDN_PAD_SLOT);
    slot_idx.set(3, 1000);
    std::vector<double> pool = c.state.values(), want(size_t(c.out.numel()), 0.0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = int64_t(slot_idx.get(b));
      if (s >= 0 && s < slots) c.run(pool, s, true, b * Tn, b * Tn + Tn, want);
    }
    auto a = make_args<gdn_conv_update_args>();
    gdn_tensor xv = c.x_view(), ov = c.out.view();
    if (Tn > 1) {  // [B*Tn, X] -> [B, Tn, X]
      for (gdn_tensor* t : {&xv, &ov}) {
        t->ndim = 3;
        t->shape[2] = t->shape[1];
        t->strides[2] = 1;
        t->shape[1] = Tn;
        t->strides[1] = t->strides[0];
        t->shape[0] = B;
        t->strides[0] = Tn * t->strides[1];
      }
    }
    a.x = xv;
    a.out = ov;
    a.weight = c.weight.view();
    if (P.bias) a.bias = c.bias.view();
    a.conv_state = c.state.view();
    a.slot_idx = slot_idx.view();
    size_t bytes = 1;
    ASSERT_EQ(gdn_conv_update_workspace_size(layer.layer, B, Tn, &bytes), GDN_SUCCESS);
    Workspace ws;
    ws.resize(bytes);
    ASSERT_EQ(call(gdn_conv_update, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
    const double tol = tol_for(P.act);
    EXPECT_TRUE(close(c.out.values(), want, tol, tol, "out"));
    EXPECT_TRUE(close(c.state.values(), pool, 0, 0, "conv_state"));  // inputs move exactly
  }
}

// Weights, bias and conv state given with non-contiguous strides (weights stored transposed,
// every other bias element, state windows in rows of W): the element-wise paths of the kernels.
TEST_P(Conv, UpdateStridedOperands) {
  const ConvParam P = GetParam();
  Ctx ctx;
  const gdn_layer_config cfg = config();
  Layer layer(ctx.ctx, cfg);
  const int64_t B = 4, slots = 6;
  ConvCase c(cfg, B, slots, P.bias, P.state, 77);
  const int64_t C = c.C, W = c.W;
  Buf slot_idx(GDN_DTYPE_I32, {B});
  for (int64_t b = 0; b < B; ++b) slot_idx.set(b, double(slots - 2 - b));
  slot_idx.set(2, GDN_PAD_SLOT);
  std::vector<double> pool = c.state.values(), want(size_t(c.out.numel()), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = int64_t(slot_idx.get(b));
    if (s >= 0) c.run(pool, s, true, b, b + 1, want);
  }
  Buf wt(c.weight.dt, {W, C}), bias2(c.bias.dt, {2 * C}), st(c.state.dt, {slots, C, W});
  bias2.poison();
  st.poison();
  for (int64_t ch = 0; ch < C; ++ch) {
    for (int64_t j = 0; j < W; ++j) wt.set(j * C + ch, c.weight.get(ch * W + j));
    bias2.set(2 * ch, c.bias.get(ch));
  }
  for (int64_t s = 0; s < slots; ++s)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t j = 0; j < W - 1; ++j) st.set((s * C + ch) * W + j, c.state.get((s * C + ch) * (W - 1) + j));
  auto a = make_args<gdn_conv_update_args>();
  a.x = c.x_view();
  a.out = c.out.view();
  a.weight = wt.view();
  a.weight.shape[0] = C, a.weight.shape[1] = W, a.weight.strides[0] = 1, a.weight.strides[1] = C;
  if (P.bias) {
    a.bias = bias2.view();
    a.bias.shape[0] = C, a.bias.strides[0] = 2;
  }
  a.conv_state = st.view();
  a.conv_state.shape[2] = W - 1;
  a.slot_idx = slot_idx.view();
  size_t bytes = 1;
  ASSERT_EQ(gdn_conv_update_workspace_size(layer.layer, B, 1, &bytes), GDN_SUCCESS);
  Workspace ws;
  ws.resize(bytes);
  ASSERT_EQ(call(gdn_conv_update, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  const double tol = tol_for(P.act);
  EXPECT_TRUE(close(c.out.values(), want, tol, tol, "out"));
  std::vector<double> got(pool.size());
  for (int64_t s = 0; s < slots; ++s)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t j = 0; j < W - 1; ++j)
        got[size_t((s * C + ch) * (W - 1) + j)] = st.get((s * C + ch) * W + j);
  EXPECT_TRUE(close(got, pool, 0, 0, "conv_state"));
}

TEST_P(Conv, PrefillMatchesOracleAndContinuesIntoUpdate) {
  const ConvParam P = GetParam();
  Ctx ctx;
  const gdn_layer_config cfg = config();
  Layer layer(ctx.ctx, cfg);
  const std::vector<int64_t> lens = {0, 1, 2, 5, 70, 3};
  const int64_t N = int64_t(lens.size()), slots = N + 1;
  int64_t T = 0;
  for (int64_t l : lens) T += l;
  ConvCase c(cfg, T, slots, P.bias, P.state, 7);
  Buf cu(GDN_DTYPE_I32, {N + 1}), slot_idx(GDN_DTYPE_I32, {N}), init(GDN_DTYPE_I32, {N});
  for (int64_t n = 0; n < N; ++n) {
    cu.set(n + 1, cu.get(n) + double(lens[size_t(n)]));
    slot_idx.set(n, double(slots - 1 - n));
    init.set(n, n % 2);
  }
  slot_idx.set(3, GDN_PAD_SLOT);
  std::vector<double> pool = c.state.values(), want(size_t(c.out.numel()), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t s = int64_t(slot_idx.get(n));
    if (s >= 0) c.run(pool, s, init.get(n) != 0, int64_t(cu.get(n)), int64_t(cu.get(n + 1)), want);
  }
  auto a = make_args<gdn_conv_prefill_args>();
  a.x = c.x_view();
  a.out = c.out.view();
  a.weight = c.weight.view();
  if (P.bias) a.bias = c.bias.view();
  a.conv_state = c.state.view();
  a.cu_seqlens = cu.view();
  a.slot_idx = slot_idx.view();
  a.has_initial_state = init.view();
  size_t bytes = 1;
  ASSERT_EQ(gdn_conv_prefill_workspace_size(layer.layer, T, N, &bytes), GDN_SUCCESS);
  Workspace ws;
  ws.resize(bytes);
  ASSERT_EQ(call(gdn_conv_prefill, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  const double tol = tol_for(P.act);
  EXPECT_TRUE(close(c.out.values(), want, tol, tol, "out"));
  EXPECT_TRUE(close(c.state.values(), pool, 0, 0, "conv_state"));

  // One more token for every sequence through conv_update continues the prefilled windows.
  ConvCase next(cfg, N, slots, P.bias, P.state, 8);
  next.weight = c.weight;
  next.bias = c.bias;
  next.state = c.state;
  std::vector<double> pool2 = next.state.values(), want2(size_t(next.out.numel()), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t s = int64_t(slot_idx.get(n));
    if (s >= 0) next.run(pool2, s, true, n, n + 1, want2);
  }
  auto u = make_args<gdn_conv_update_args>();
  u.x = next.x_view();
  u.out = next.out.view();
  u.weight = next.weight.view();
  if (P.bias) u.bias = next.bias.view();
  u.conv_state = next.state.view();
  u.slot_idx = slot_idx.view();
  ASSERT_EQ(call(gdn_conv_update, layer.layer, &u, nullptr, 0), GDN_SUCCESS) << gdn_last_error_message();
  EXPECT_TRUE(close(next.out.values(), want2, tol, tol, "update out"));
  EXPECT_TRUE(close(next.state.values(), pool2, 0, 0, "update conv_state"));
}

const ConvParam kConvParams[] = {
    {2, 4, 16, 8, 4, GDN_DTYPE_BF16, GDN_DTYPE_BF16, false, true, true},
    {2, 4, 16, 8, 4, GDN_DTYPE_BF16, GDN_DTYPE_BF16, true, true, true},
    {1, 3, 5, 7, 4, GDN_DTYPE_F32, GDN_DTYPE_F32, true, false, false},
    {3, 6, 8, 4, 2, GDN_DTYPE_F16, GDN_DTYPE_F32, true, true, true},
    {2, 2, 4, 4, 1, GDN_DTYPE_F32, GDN_DTYPE_F32, false, true, false},
    {4, 8, 32, 32, 8, GDN_DTYPE_BF16, GDN_DTYPE_F32, false, true, true},
    {16, 32, 128, 128, 4, GDN_DTYPE_BF16, GDN_DTYPE_BF16, true, true, true},
};
INSTANTIATE_TEST_SUITE_P(Shapes, Conv, ::testing::ValuesIn(kConvParams),
                         [](const ::testing::TestParamInfo<ConvParam>& i) {
                           const ConvParam& p = i.param;
                           return "hk" + std::to_string(p.hk) + "_hv" + std::to_string(p.hv) + "_k" +
                                  std::to_string(p.k) + "_v" + std::to_string(p.v) + "_w" + std::to_string(p.w) + "_" +
                                  gdn_dtype_name(p.act) + "_s" + gdn_dtype_name(p.state) +
                                  (p.grouped ? "_grouped" : "_plain") + (p.silu ? "_silu" : "_linear") +
                                  (p.bias ? "_bias" : "");
                         });

}  // namespace
