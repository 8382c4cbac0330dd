// gdn_prefill against the float64 recurrent oracle, and against the library's own decode.
#include "gdn_case.hpp"

using namespace gdnt;

namespace {

struct PrefillParam {
  int hk, hv, k, v;
  gdn_dtype act, state;
  std::vector<int64_t> lens;
  bool raw, l2norm, grouped;
  int32_t precision = GDN_PRECISION_FP32;
  int id = -1;  // random shapes: their index, in the name
};
// Parameters are spelled out in the test name; keep ctest names short.
void PrintTo(const PrefillParam&, std::ostream* os) { *os << "(see name)"; }


class Prefill : public ::testing::TestWithParam<PrefillParam> {};

std::string name_of(const ::testing::TestParamInfo<PrefillParam>& info) {
  const PrefillParam& p = info.param;
  std::string s = "hk" + std::to_string(p.hk) + "_hv" + std::to_string(p.hv) + "_k" + std::to_string(p.k) + "_v" +
                  std::to_string(p.v) + "_" + gdn_dtype_name(p.act) + "_s" + gdn_dtype_name(p.state) + "_n" +
                  std::to_string(p.lens.size()) + (p.raw ? "_raw" : "_pre") + (p.l2norm ? "_l2" : "_nol2") +
                  (p.grouped ? "_grp" : "") + (p.precision == GDN_PRECISION_BF16 ? "_pbf16" : "") +
                  (p.id >= 0 ? "_r" + std::to_string(p.id) : "");
  return s;
}

template <class F>
size_t ask(F query) {
  size_t bytes = 0;
  EXPECT_EQ(query(&bytes), GDN_SUCCESS) << gdn_last_error_message();
  return bytes;
}

// The T tokens of c as one sequence through prefill, its state read from and written to `slot`.
gdn_status prefill_one(gdn_layer layer, GdnCase& c, int64_t T, int64_t slot) {
  Buf cu(GDN_DTYPE_I32, {2}), slot_idx(GDN_DTYPE_I32, {1});
  cu.set(1, double(T));
  slot_idx.set(0, double(slot));
  auto args = make_args<gdn_prefill_args>();
  c.fill_args(args);
  args.cu_seqlens = cu.view();
  args.slot_idx = slot_idx.view();
  Workspace ws;
  ws.resize(ask([&](size_t* b) { return gdn_prefill_workspace_size(layer, T, 1, b); }));
  return call(gdn_prefill, layer, &args, ws.ptr(), ws.size());
}

// gdn_prefill over the sequences of `lens` in token order (sequence n in state slot slot[n],
// GDN_PAD_SLOT allowed; an initial state where init[n]) and the float64 oracle beside it: want
// gets the oracle's output, pool its state pool (from the case's pool before the call).
gdn_status prefill_varlen(gdn_layer layer, GdnCase& c, const std::vector<int64_t>& lens, const std::vector<int64_t>& slot,
                          const std::vector<bool>& init, std::vector<double>& want, std::vector<double>& pool) {
  const int64_t N = int64_t(lens.size());
  Buf cu(GDN_DTYPE_I32, {N + 1}), slot_idx(GDN_DTYPE_I32, {N}), has_init(GDN_DTYPE_BOOL, {N});
  for (int64_t n = 0; n < N; ++n) {
    cu.set(n + 1, cu.get(n) + double(lens[size_t(n)]));
    slot_idx.set(n, double(slot[size_t(n)]));
    has_init.set(n, init[size_t(n)]);
  }
  const std::vector<double> pool0 = c.state.values();
  pool = pool0, want.assign(size_t(c.out.numel()), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t s = slot[size_t(n)];
    if (s >= 0) c.run_sequence(pool0, s, init[size_t(n)], int64_t(cu.get(n)), int64_t(cu.get(n + 1)), pool, s, want);
  }
  auto args = make_args<gdn_prefill_args>();
  c.fill_args(args);
  args.cu_seqlens = cu.view();
  args.slot_idx = slot_idx.view();
  args.has_initial_state = has_init.view();
  const int64_t T = int64_t(cu.get(N));
  Workspace ws;
  ws.resize(ask([&](size_t* b) { return gdn_prefill_workspace_size(layer, T, N, b); }));
  return call(gdn_prefill, layer, &args, ws.ptr(), ws.size());
}

TEST_P(Prefill, MatchesOracle) {
  const PrefillParam P = GetParam();
  Ctx ctx;
  gdn_layer_config cfg = small_config(P.hk, P.hv, P.k, P.v, P.act, P.state);
  cfg.use_qk_l2norm = P.l2norm;
  cfg.prefill_precision = P.precision;
  if (gpu_refuses(ctx.ctx, cfg)) GTEST_SKIP() << gdn_last_error_message();
  Layer layer(ctx.ctx, cfg);
  const int64_t N = int64_t(P.lens.size());
  int64_t T = 0;
  for (int64_t l : P.lens) T += l;
  const int64_t slots = N + 2;
  GdnCase c(cfg, {T}, slots, 99 + uint64_t(T), P.raw);
  c.grouped = P.grouped;
  std::vector<int64_t> slot(static_cast<size_t>(N));
  std::vector<bool> init(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) slot[size_t(n)] = slots - 1 - n, init[size_t(n)] = n % 3 != 1;
  if (N >= 3) slot[2] = GDN_PAD_SLOT;
  std::vector<double> want, pool;
  ASSERT_EQ(prefill_varlen(layer.layer, c, P.lens, slot, init, want, pool), GDN_SUCCESS) << gdn_last_error_message();
  // GDN_PRECISION_BF16: bf16 operands in every product (FLA's accuracy): a few 1e-3 absolute
  // on these inputs, against ~1e-5 for the fp32-accurate products.
  const bool low = P.precision == GDN_PRECISION_BF16;
  const double tol = low ? std::max(tol_for(P.act), 1e-2) : tol_for(P.act);
  EXPECT_TRUE(close(c.out.values(), want, tol, tol, "out"));
  const double st = P.state == GDN_DTYPE_BF16 ? 1.2e-2 : low ? 1e-2 : 2e-4;
  EXPECT_TRUE(close(c.state.values(), pool, st, st, "state"));
}

const PrefillParam kPrefillParams[] = {
    {2, 4, 16, 32, GDN_DTYPE_F32, GDN_DTYPE_F32, {0, 1, 63, 64, 65, 130}, true, true, false},
    {2, 4, 16, 32, GDN_DTYPE_BF16, GDN_DTYPE_F32, {7, 0, 200}, false, true, true},
    {1, 3, 7, 5, GDN_DTYPE_F16, GDN_DTYPE_BF16, {1, 2, 3, 129}, true, true, false},
    {3, 3, 9, 17, GDN_DTYPE_F32, GDN_DTYPE_F32, {100, 28}, true, false, false},
    {4, 8, 64, 64, GDN_DTYPE_BF16, GDN_DTYPE_BF16, {70, 64}, false, true, true},
    {2, 4, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, {300}, true, true, false},
    {2, 4, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, {5, 130, 64, 0, 17}, false, true, true},
    {2, 4, 128, 128, GDN_DTYPE_F16, GDN_DTYPE_F32, {100, 3}, true, true, false},
    {1, 2, 128, 256, GDN_DTYPE_BF16, GDN_DTYPE_BF16, {64, 1, 200}, true, false, false},  // sm_90 warpgroup kernel
    {2, 4, 64, 64, GDN_DTYPE_F32, GDN_DTYPE_F32, {200, 1, 64, 129}, true, true, false},
    {2, 4, 64, 64, GDN_DTYPE_F16, GDN_DTYPE_BF16, {90, 64}, true, false, false},
    {1, 2, 256, 64, GDN_DTYPE_F32, GDN_DTYPE_F32, {65, 3}, true, true, false},
    {1, 1, 1, 1, GDN_DTYPE_F32, GDN_DTYPE_F32, {5, 0, 70}, true, true, false},
    {0 + 1, 2, 64, 256, GDN_DTYPE_F32, GDN_DTYPE_F32, {}, true, true, false},
    // bf16 products (on the CUDA tensor-core path: raw bf16 q/k, scaled f32 / f16 ones, bf16 state)
    {2, 4, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, {5, 130, 64, 0, 17}, false, true, true, GDN_PRECISION_BF16},
    {2, 4, 64, 64, GDN_DTYPE_F32, GDN_DTYPE_F32, {200, 1, 64, 129}, true, true, false, GDN_PRECISION_BF16},
    {2, 4, 128, 128, GDN_DTYPE_F16, GDN_DTYPE_BF16, {100, 3}, true, true, false, GDN_PRECISION_BF16},
    {1, 2, 128, 256, GDN_DTYPE_BF16, GDN_DTYPE_BF16, {64, 1, 200}, false, true, true, GDN_PRECISION_BF16},
    {3, 3, 9, 17, GDN_DTYPE_F32, GDN_DTYPE_F32, {100, 28}, true, false, false, GDN_PRECISION_BF16},
};
INSTANTIATE_TEST_SUITE_P(Shapes, Prefill, ::testing::ValuesIn(kPrefillParams), name_of);

// Random shapes (a fixed seed): odd and tensor-core head dims, every dtype pair, 1-3 sequences of
// lengths around the chunk boundaries, every gate, layout and precision option.
std::vector<PrefillParam> random_prefill_params(int n) {
  std::mt19937 rng(112358);
  auto pick = [&](std::initializer_list<int> v) { return *(v.begin() + rng() % v.size()); };
  const gdn_dtype acts[] = {GDN_DTYPE_F32, GDN_DTYPE_F16, GDN_DTYPE_BF16}, states[] = {GDN_DTYPE_F32, GDN_DTYPE_BF16};
  std::vector<PrefillParam> out;
  for (int i = 0; i < n; ++i) {
    PrefillParam p{};
    p.hk = pick({1, 2});
    p.hv = p.hk * pick({1, 2, 3});
    p.k = pick({8, 33, 64, 128});
    p.v = pick({5, 32, 64, 96, 128});
    p.act = acts[rng() % 3];
    p.state = states[rng() % 2];
    for (int s = 0, ns = 1 + int(rng() % 3); s < ns; ++s) p.lens.push_back(pick({0, 1, 17, 63, 64, 65, 100, 150}));
    p.raw = rng() % 2, p.l2norm = rng() % 4 != 0, p.grouped = rng() % 2;
    p.precision = rng() % 3 == 0 ? GDN_PRECISION_BF16 : GDN_PRECISION_FP32;
    p.id = i;
    out.push_back(p);
  }
  return out;
}
INSTANTIATE_TEST_SUITE_P(Random, Prefill, ::testing::ValuesIn(random_prefill_params(10)), name_of);

// GDN_PRECISION_BF16 is a permission: the CPU backend and the GPU's fp32-core kernels (AMD) compute
// exactly as with FP32; the CUDA tensor-core path (this shape takes it) gives a different, less
// accurate result.
TEST(PrefillPrecision, Bf16ChangesOnlyTheTensorCorePath) {
  auto run = [](int32_t precision, std::vector<double>* out, std::vector<double>* state) {
    Ctx ctx;
    gdn_layer_config cfg = small_config(2, 4, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32);
    cfg.prefill_precision = precision;
    Layer layer(ctx.ctx, cfg);
    const int64_t T = 150;
    GdnCase c(cfg, {T}, 2, 31337, true);
    ASSERT_EQ(prefill_one(layer.layer, c, T, 1), GDN_SUCCESS) << gdn_last_error_message();
    *out = c.out.values();
    *state = c.state.values();
  };
  std::vector<double> o32, s32, o16, s16;
  run(GDN_PRECISION_FP32, &o32, &s32);
  run(GDN_PRECISION_BF16, &o16, &s16);
  // The CUDA tensor-core prefill at K = 128 needs sm_80+ and ~185 KB of shared memory: H100 and
  // later (an A100's 163 KB takes the fp32-core kernels).
  bool tensor_cores = false;
#if defined(GDN_TEST_CUDA)
  cudaDeviceProp prop;
  if (test_backend() == GDN_BACKEND_CUDA && cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    tensor_cores = prop.major >= 9 && prop.warpSize == 32;
#endif
  if (!tensor_cores) {
    EXPECT_TRUE(o32 == o16 && s32 == s16) << "without the tensor-core path every precision computes at fp32";
  } else {
    EXPECT_FALSE(s32 == s16) << "bf16 products did not change the state: the knob did not reach the kernel";
    EXPECT_TRUE(close(s16, s32, 1e-2, 1e-2, "state"));
  }
}

// The same sequence through prefill, and token by token through decode, from the same state.
TEST(PrefillVsDecode, TokenByTokenDecodeEqualsPrefill) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 32, 16, GDN_DTYPE_F32);
  Layer layer(ctx.ctx, cfg);
  const int64_t T = 150;
  GdnCase pre(cfg, {T}, 2, 4242);
  GdnCase dec(cfg, {1, T}, 2, 4242);  // same seed: same inputs and state
  ASSERT_EQ(pre.state.bytes, dec.state.bytes);
  ASSERT_EQ(prefill_one(layer.layer, pre, T, 1), GDN_SUCCESS) << gdn_last_error_message();
  Buf slot(GDN_DTYPE_I32, {1});
  slot.set(0, 1);

  Workspace wd;
  wd.resize(ask([&](size_t* b) { return gdn_decode_workspace_size(layer.layer, 1, 1, b); }));
  for (int64_t t = 0; t < T; ++t) {  // one token per call, views into token t
    auto da = make_args<gdn_decode_args>();
    dec.fill_args(da);
    for (gdn_tensor* x : {&da.q, &da.k, &da.v, &da.a, &da.b, &da.out}) {
      x->data = static_cast<char*>(x->data) + size_t(t * x->strides[1]) * gdn_dtype_size(gdn_dtype(x->dtype));
      x->shape[1] = 1;
    }
    da.slot_idx = slot.view();
    ASSERT_EQ(call(gdn_decode, layer.layer, &da, wd.ptr(), wd.size()), GDN_SUCCESS) << gdn_last_error_message();
  }
  EXPECT_TRUE(close(dec.out.values(), pre.out.values(), 1e-4, 1e-4, "out"));
  EXPECT_TRUE(close(dec.state.values(), pre.state.values(), 1e-4, 1e-4, "state"));
}

// Prefill of a prompt followed by decode steps equals prefill of the whole sequence.
TEST(PrefillVsDecode, DecodeAfterPrefillEqualsWholePrefill) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 32, 16, GDN_DTYPE_F32);
  Layer layer(ctx.ctx, cfg);
  const int64_t P = 97, D = 5, T = P + D;
  GdnCase whole(cfg, {T}, 1, 555);
  GdnCase split(cfg, {T}, 1, 555);
  Buf cu(GDN_DTYPE_I32, {2}), slot(GDN_DTYPE_I32, {1}), no_init(GDN_DTYPE_BOOL, {1});
  slot.set(0, 0);
  Workspace ws;
  ws.resize(ask([&](size_t* b) { return gdn_prefill_workspace_size(layer.layer, T, 1, b); }));
  cu.set(1, double(T));
  auto wa = make_args<gdn_prefill_args>();
  whole.fill_args(wa);
  wa.cu_seqlens = cu.view();
  wa.slot_idx = slot.view();
  wa.has_initial_state = no_init.view();
  ASSERT_EQ(call(gdn_prefill, layer.layer, &wa, ws.ptr(), ws.size()), GDN_SUCCESS);

  auto sa = make_args<gdn_prefill_args>();
  split.fill_args(sa);
  for (gdn_tensor* x : {&sa.q, &sa.k, &sa.v, &sa.a, &sa.b, &sa.out}) x->shape[0] = P;
  Buf cu_p(GDN_DTYPE_I32, {2});
  cu_p.set(1, double(P));
  sa.cu_seqlens = cu_p.view();
  sa.slot_idx = slot.view();
  sa.has_initial_state = no_init.view();
  ASSERT_EQ(call(gdn_prefill, layer.layer, &sa, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  // The D remaining tokens as one decode call of Tn = D: [T, H, X] viewed as [1, D, H, X].
  auto da = make_args<gdn_decode_args>();
  split.fill_args(da);
  for (gdn_tensor* x : {&da.q, &da.k, &da.v, &da.a, &da.b, &da.out}) {
    gdn_tensor y = *x;
    y.data = static_cast<char*>(x->data) + size_t(P * x->strides[0]) * gdn_dtype_size(gdn_dtype(x->dtype));
    y.ndim = x->ndim + 1;
    y.shape[0] = 1;
    y.strides[0] = D * x->strides[0];
    y.shape[1] = D;
    y.strides[1] = x->strides[0];
    for (int i = 1; i < x->ndim; ++i) {
      y.shape[i + 1] = x->shape[i];
      y.strides[i + 1] = x->strides[i];
    }
    *x = y;
  }
  da.slot_idx = slot.view();
  Workspace wd;
  wd.resize(ask([&](size_t* b) { return gdn_decode_workspace_size(layer.layer, 1, D, b); }));
  ASSERT_EQ(call(gdn_decode, layer.layer, &da, wd.ptr(), wd.size()), GDN_SUCCESS) << gdn_last_error_message();
  EXPECT_TRUE(close(split.out.values(), whole.out.values(), 1e-4, 1e-4, "out"));
  EXPECT_TRUE(close(split.state.values(), whole.state.values(), 1e-4, 1e-4, "state"));
}

// has_initial_state absent: every sequence continues from its slot.
TEST(PrefillFlags, AbsentHasInitialMeansContinue) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 2, 8, 8, GDN_DTYPE_F32);
  Layer layer(ctx.ctx, cfg);
  GdnCase c(cfg, {10}, 1, 8);
  Buf cu(GDN_DTYPE_I64, {2}), slot(GDN_DTYPE_I32, {1});
  cu.set(1, 10);
  std::vector<double> pool = c.state.values(), want(size_t(c.out.numel()));
  c.run_sequence(pool, 0, true, 0, 10, pool, 0, want);
  auto a = make_args<gdn_prefill_args>();
  c.fill_args(a);
  a.cu_seqlens = cu.view();
  a.slot_idx = slot.view();
  Workspace ws;
  ws.resize(ask([&](size_t* b) { return gdn_prefill_workspace_size(layer.layer, 10, 1, b); }));
  ASSERT_EQ(call(gdn_prefill, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  EXPECT_TRUE(close(c.out.values(), want, 2e-4, 2e-4, "out"));
  EXPECT_TRUE(close(c.state.values(), pool, 2e-4, 2e-4, "state"));
}

// Gates far from the random ones: chunks that decay by e^0.6, by e^189 (in-chunk decays
// exp(gc_i - gc_j) down to underflow) and by e^80, and a gate that rises (g > 0 every other
// token, so gc_i - gc_j > 0 for some j < i): every head against the oracle, both precisions.
// (It caught a chunk kernel that took those decays as products of per-row factors unguarded.)
TEST(PrefillDecay, WeakStrongEdgeAndRisingGates) {
  for (int32_t precision : {GDN_PRECISION_FP32, GDN_PRECISION_BF16}) {
    Ctx ctx;
    gdn_layer_config cfg = small_config(2, 4, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32);
    cfg.prefill_precision = precision;
    Layer layer(ctx.ctx, cfg);
    const int64_t T = 200;
    GdnCase c(cfg, {T}, 2, 777, false);
    const double per_token[4] = {-0.01, -3.0, -80.0 / 63, 0.0};  // range over a chunk: 0.6, 189, 80, mixed
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < c.HV; ++h) c.g.set(t * c.HV + h, h < 3 ? per_token[h] : (t % 2 ? 0.4 : -0.5));
    std::vector<double> pool = c.state.values(), want(size_t(c.out.numel()), 0.0);
    c.run_sequence(pool, 1, true, 0, T, pool, 1, want);
    ASSERT_EQ(prefill_one(layer.layer, c, T, 1), GDN_SUCCESS) << gdn_last_error_message();
    const double tol = precision == GDN_PRECISION_BF16 ? 2e-2 : tol_for(GDN_DTYPE_BF16);
    EXPECT_TRUE(close(c.out.values(), want, tol, tol, "out")) << "precision " << precision;
    EXPECT_TRUE(close(c.state.values(), pool, 1e-2, 1e-2, "state")) << "precision " << precision;
  }
}

// Weak decays (|g| <= 0.05 a token: a chunk keeps >= e^-3.2 of its state) over several chunks of
// Qwen3-Next's head shape, varlen with and without initial states: every term carried from one
// chunk into the next moves the output (the warpgroup kernel's cross-chunk Gram term among them;
// with the random gates of the other tests a missing one stays inside their tolerance). Worst
// error relative to the largest value, both precisions.
TEST(PrefillDecay, WeakDecayAcrossChunks) {
  for (int32_t precision : {GDN_PRECISION_FP32, GDN_PRECISION_BF16}) {
    Ctx ctx;
    gdn_layer_config cfg = small_config(2, 4, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32);
    cfg.prefill_precision = precision;
    Layer layer(ctx.ctx, cfg);
    const std::vector<int64_t> lens = {300, 1, 129, 64};
    const int64_t N = int64_t(lens.size()), slots = N + 2;
    int64_t T = 0;
    for (int64_t l : lens) T += l;
    GdnCase c(cfg, {T}, slots, 4242, false);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < c.HV; ++h) c.g.set(t * c.HV + h, -0.01 - 0.04 * double((7 * t + 13 * h) % 17) / 17.0);
    std::vector<int64_t> slot(static_cast<size_t>(N));
    std::vector<bool> init(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) slot[size_t(n)] = slots - 1 - n, init[size_t(n)] = n != 2;
    std::vector<double> want, pool;
    ASSERT_EQ(prefill_varlen(layer.layer, c, lens, slot, init, want, pool), GDN_SUCCESS) << gdn_last_error_message();
    auto rel_err = [](const std::vector<double>& got, const std::vector<double>& ref) {
      double err = 0.0, top = 0.0;
      for (size_t i = 0; i < ref.size(); ++i) {
        const double e = std::fabs(got[i] - ref[i]);
        err = std::isnan(e) || e > err ? (std::isnan(e) ? 1e300 : e) : err;
        top = std::max(top, std::fabs(ref[i]));
      }
      return err / top;
    };
    // out: bf16, ~3e-3 of the largest value by its rounding alone (the CPU backend's too).
    const double eo = rel_err(c.out.values(), want), es = rel_err(c.state.values(), pool);
    std::printf("precision %d: out %.3g, state %.3g of the largest value\n", precision, eo, es);
    EXPECT_LT(eo, 5e-3) << "out, precision " << precision;
    EXPECT_LT(es, precision == GDN_PRECISION_BF16 ? 5e-3 : 2e-5) << "state, precision " << precision;
  }
}

}  // namespace
