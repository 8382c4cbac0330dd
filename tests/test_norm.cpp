// norm_gated and norm_gated_fp8_quant against a float64 oracle; exact FP8 rounding cases.
#include <cfloat>

#include "fp8_ref.hpp"
#include "test_util.hpp"

using namespace gdnt;

namespace {

struct NormCase {
  int64_t T, HK, HV, V;
  Buf x, z, weight, weight2, out, scales;
  bool grouped_z, strided_w;
  // act_w: the weight in x's dtype (as Qwen3-Next checkpoints store it), else fp32.
  NormCase(const gdn_layer_config& c, int64_t tokens, gdn_dtype out_dt, uint64_t seed, bool grouped, bool strided,
           bool act_w = false)
      : T(tokens), HK(c.num_k_heads), HV(c.num_v_heads), V(c.head_v_dim), grouped_z(grouped), strided_w(strided) {
    std::mt19937_64 rng(seed);
    const gdn_dtype act = gdn_dtype(c.act_dtype);
    x = Buf(act, {T, HV, V});
    x.fill_uniform(rng, -3, 3);
    // z lives inside a wider qkvz-like row: [T, HK, r, 2V] with z in the second half of each V pair.
    z = Buf(act, {T, HV, 2 * V});
    z.fill_uniform(rng, -4, 4);
    weight = Buf(act_w ? act : GDN_DTYPE_F32, {V});
    weight.fill_uniform(rng, 0.5, 1.5);
    if (strided_w) {  // the weight as every other element (stride 2), the elements between poisoned
      weight2 = Buf(weight.dt, {V, 2});
      weight2.poison();
      for (int64_t j = 0; j < V; ++j) weight2.set(2 * j, weight.get(j));
    }
    out = Buf(out_dt, {T, HV, V});
    out.poison();
    scales = Buf(GDN_DTYPE_F32, {HV * V / c.fp8_group_size, T});  // column-major [T, G] storage
    scales.poison();
  }
  double zval(int64_t t, int64_t h, int64_t j) const { return z.get((t * HV + h) * 2 * V + V + j); }
  gdn_tensor z_view() const {
    gdn_tensor v = z.view();
    v.data = static_cast<char*>(v.data) + size_t(V) * gdn_dtype_size(z.dt);
    if (!grouped_z) {
      v.shape[2] = V;  // [T, HV, V] with strides (HV*2V, 2V, 1)
      return v;
    }
    const int64_t r = HV / HK;
    v.ndim = 4;
    v.shape[0] = T, v.strides[0] = HV * 2 * V;
    v.shape[1] = HK, v.strides[1] = r * 2 * V;
    v.shape[2] = r, v.strides[2] = 2 * V;
    v.shape[3] = V, v.strides[3] = 1;
    return v;
  }
  gdn_tensor scales_view(int64_t groups) const {  // [T, G] with strides (1, T)
    gdn_tensor v = scales.view();
    v.shape[0] = T, v.strides[0] = 1;
    v.shape[1] = groups, v.strides[1] = T;
    return v;
  }
  std::vector<double> oracle(double eps) const {
    std::vector<double> y(size_t(T * HV * V));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < HV; ++h) {
        double ss = 0;
        for (int64_t j = 0; j < V; ++j) ss += x.get((t * HV + h) * V + j) * x.get((t * HV + h) * V + j);
        const double inv = 1.0 / std::sqrt(ss / double(V) + eps);
        for (int64_t j = 0; j < V; ++j)
          y[size_t((t * HV + h) * V + j)] = x.get((t * HV + h) * V + j) * inv * weight.get(j) * silu(zval(t, h, j));
      }
    return y;
  }
  gdn_norm_gated_args args() const {
    auto a = make_args<gdn_norm_gated_args>();
    a.x = x.view();
    a.z = z_view();
    a.weight = weight.view();
    if (strided_w) {  // the GPU's row kernel takes contiguous weights only: the general kernel runs
      a.weight = weight2.view();
      a.weight.ndim = 1, a.weight.shape[0] = V, a.weight.strides[0] = 2;
    }
    a.out = out.view();
    return a;
  }
};

struct NormParam {
  int hk, hv, v;
  gdn_dtype act, out;
  bool grouped, strided_w = false, act_w = false;
};
// Parameters are spelled out in the test name; keep ctest names short.
void PrintTo(const NormParam&, std::ostream* os) { *os << "(see name)"; }

class Norm : public ::testing::TestWithParam<NormParam> {};

// Token counts: on 3 simulated SMs (scripts/test's second run) the GPU fast path takes both of its
// shapes -- one row a 16-lane worker, two rows a worker -- for V = 128 and 256 among these
// (HV = 4: 148 / 240 / 404 / 1040 rows; HV = 2: 74 / 120 / 202 / 520); on 132, one row a worker.
constexpr int64_t kNormTokens[] = {37, 60, 101, 260};

TEST_P(Norm, GatedMatchesOracle) {
  const NormParam P = GetParam();
  Ctx ctx;
  gdn_layer_config cfg = small_config(P.hk, P.hv, 16, P.v, P.act);
  cfg.out_dtype = P.out;
  Layer layer(ctx.ctx, cfg);
  for (int64_t T : kNormTokens) {
    NormCase c(cfg, T, P.out, 11 + uint64_t(T), P.grouped, P.strided_w, P.act_w);
    auto a = c.args();
    size_t bytes = 0;
    ASSERT_EQ(gdn_norm_gated_workspace_size(layer.layer, c.T, &bytes), GDN_SUCCESS);
    Workspace ws;
    ws.resize(bytes);
    ASSERT_EQ(call(gdn_norm_gated, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
    const double tol = tol_for(P.out);
    EXPECT_TRUE(close(c.out.values(), c.oracle(cfg.norm_eps), tol, tol, "out")) << "T " << T;
  }
}

TEST_P(Norm, Fp8QuantMatchesOracle) {
  const NormParam P = GetParam();
  Ctx ctx;
  for (int64_t T : kNormTokens) {
    for (gdn_dtype f8 : {GDN_DTYPE_F8_E4M3FN, GDN_DTYPE_F8_E4M3FNUZ}) {
      gdn_layer_config cfg = small_config(P.hk, P.hv, 16, P.v, P.act);
      cfg.fp8_dtype = f8;
      Layer layer(ctx.ctx, cfg);
      const bool fnuz = f8 == GDN_DTYPE_F8_E4M3FNUZ;
      NormCase c(cfg, T, f8, 12 + uint64_t(T), P.grouped, P.strided_w, P.act_w);
      const int64_t G = c.HV * c.V / cfg.fp8_group_size, gs = cfg.fp8_group_size;
      auto a = c.args();
      a.scales = c.scales_view(G);
      size_t bytes = 0;
      ASSERT_EQ(gdn_norm_gated_workspace_size(layer.layer, c.T, &bytes), GDN_SUCCESS);
      Workspace ws;
      ws.resize(bytes);
      ASSERT_EQ(call(gdn_norm_gated_fp8_quant, layer.layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS)
          << gdn_last_error_message();
      const std::vector<double> y = c.oracle(cfg.norm_eps);
      const double fmax = fnuz ? 240.0 : 448.0;
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t g = 0; g < G; ++g) {
          double amax = 0;
          for (int64_t i = g * gs; i < (g + 1) * gs; ++i) amax = std::max(amax, std::fabs(y[size_t(t * c.HV * c.V + i)]));
          const double want_scale = std::max(amax / fmax, double(FLT_MIN)), got_scale = c.scales.get(g * c.T + t);
          ASSERT_NEAR(got_scale, want_scale, 1e-5 * want_scale) << "T " << T << " t " << t << " group " << g;
          for (int64_t i = g * gs; i < (g + 1) * gs; ++i) {
            const double q = c.out.get(t * c.HV * c.V + i), exact = y[size_t(t * c.HV * c.V + i)] / want_scale;
            // within half an e4m3 step (relative 2^-4) plus the subnormal step, and never past max
            ASSERT_LE(std::fabs(q), fmax);
            ASSERT_NEAR(q, exact, 0.0626 * std::fabs(exact) + std::ldexp(1.0, fnuz ? -11 : -10) + 1e-4)
                << "t " << t << " i " << i;
          }
        }
    }
  }
}

// A row's bytes do not depend on how many rows the call has: the first tokens of a large call
// (on the GPU: two rows a worker on 3 simulated SMs) equal the same tokens normalised alone,
// outputs and FP8 scales (a kernel choice by size must not change a row's summation order).
TEST_P(Norm, RowsDoNotDependOnTheCall) {
  const NormParam P = GetParam();
  Ctx ctx;
  gdn_layer_config cfg = small_config(P.hk, P.hv, 16, P.v, P.act);
  cfg.out_dtype = P.out;
  Layer layer(ctx.ctx, cfg);
  // ~1200 rows: two rows a worker on 3 simulated SMs.
  const int64_t T = 1200 / P.hv + 1, Ts = 3, G = P.hv * P.v / cfg.fp8_group_size;
  for (bool fp8 : {false, true}) {
    NormCase c(cfg, T, fp8 ? gdn_dtype(cfg.fp8_dtype) : P.out, 91, P.grouped, P.strided_w, P.act_w);
    auto a = c.args();
    if (fp8) a.scales = c.scales_view(G);
    size_t bytes = 0;
    ASSERT_EQ(gdn_norm_gated_workspace_size(layer.layer, T, &bytes), GDN_SUCCESS);
    Workspace ws;
    ws.resize(bytes);
    auto run = [&](const gdn_norm_gated_args& args) {
      return fp8 ? call(gdn_norm_gated_fp8_quant, layer.layer, &args, ws.ptr(), ws.size())
                 : call(gdn_norm_gated, layer.layer, &args, ws.ptr(), ws.size());
    };
    ASSERT_EQ(run(a), GDN_SUCCESS) << gdn_last_error_message();
    const std::vector<double> out_all = c.out.values(), scales_all = c.scales.values();
    c.out.poison();
    c.scales.poison();
    for (gdn_tensor* v : {&a.x, &a.z, &a.out, &a.scales}) v->shape[0] = Ts;
    ASSERT_EQ(run(a), GDN_SUCCESS) << gdn_last_error_message();
    const std::vector<double> out_few = c.out.values(), scales_few = c.scales.values();
    for (int64_t i = 0; i < Ts * P.hv * P.v; ++i)
      ASSERT_EQ(out_few[size_t(i)], out_all[size_t(i)]) << (fp8 ? "fp8 " : "") << "element " << i;
    if (!fp8) continue;
    for (int64_t g = 0; g < G; ++g)
      for (int64_t t = 0; t < Ts; ++t)
        ASSERT_EQ(scales_few[size_t(g * T + t)], scales_all[size_t(g * T + t)]) << "group " << g << " t " << t;
  }
}

const NormParam kNormParams[] = {
    {2, 4, 128, GDN_DTYPE_BF16, GDN_DTYPE_BF16, false},
    {2, 4, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, true},
    {1, 3, 64, GDN_DTYPE_F16, GDN_DTYPE_F16, true},
    {2, 2, 256, GDN_DTYPE_F32, GDN_DTYPE_BF16, false},
    {3, 6, 20, GDN_DTYPE_F32, GDN_DTYPE_F32, true},
    {2, 8, 64, GDN_DTYPE_BF16, GDN_DTYPE_BF16, false},  // FP8 groups of 128 span two heads
    {2, 4, 128, GDN_DTYPE_BF16, GDN_DTYPE_BF16, true, true},  // a strided weight
    {1, 3, 128, GDN_DTYPE_BF16, GDN_DTYPE_F16, true},  // odd row counts: a 16-lane worker past the end beside one in range
    // The weight in x's dtype: the row kernel at V = 128 and 256, the general kernel at V = 64 and
    // for a strided weight.
    {2, 4, 128, GDN_DTYPE_BF16, GDN_DTYPE_BF16, false, false, true},
    {2, 2, 256, GDN_DTYPE_BF16, GDN_DTYPE_F32, true, false, true},
    {1, 3, 64, GDN_DTYPE_F16, GDN_DTYPE_F16, true, false, true},
    {2, 4, 128, GDN_DTYPE_F16, GDN_DTYPE_BF16, true, true, true},
};
INSTANTIATE_TEST_SUITE_P(Shapes, Norm, ::testing::ValuesIn(kNormParams),
                         [](const ::testing::TestParamInfo<NormParam>& i) {
                           const NormParam& p = i.param;
                           return "hk" + std::to_string(p.hk) + "_hv" + std::to_string(p.hv) + "_v" +
                                  std::to_string(p.v) + "_" + gdn_dtype_name(p.act) + "_out" +
                                  gdn_dtype_name(p.out) + (p.grouped ? "_grouped" : "_plain") +
                                  (p.strided_w ? "_wstride2" : "") + (p.act_w ? "_wact" : "");
                         });

// gdn_norm_gated_fp8_quant on contiguous buffers, with a workspace from the library's query.
gdn_status run_fp8(gdn_layer layer, const Buf& x, const Buf& z, const Buf& weight, const Buf& out, const Buf& scales) {
  auto a = make_args<gdn_norm_gated_args>();
  a.x = x.view();
  a.z = z.view();
  a.weight = weight.view();
  a.out = out.view();
  a.scales = scales.view();
  size_t bytes = 0;
  const gdn_status st = gdn_norm_gated_workspace_size(layer, x.shape[0], &bytes);
  if (st != GDN_SUCCESS) return st;
  Workspace ws;
  ws.resize(bytes);
  return call(gdn_norm_gated_fp8_quant, layer, &a, ws.ptr(), ws.size());
}

// Exact FP8 cases through the API: x = 1 (rms 1 with eps 0), z = 32 (silu(z) == 32 in fp32),
// weight w with max 448 (240): then scale = 32 exactly and the value quantised is exactly w.
TEST(NormFp8, RoundsHalfEvenAndHitsMaxExactly) {
  Ctx ctx;
  for (bool fnuz : {false, true}) {
    gdn_layer_config cfg = small_config(1, 1, 16, 128, GDN_DTYPE_F32);
    cfg.norm_eps = 0.0f;
    cfg.fp8_dtype = fnuz ? GDN_DTYPE_F8_E4M3FNUZ : GDN_DTYPE_F8_E4M3FN;
    Layer layer(ctx.ctx, cfg);
    const double fmax = fnuz ? 240.0 : 448.0, sub = std::ldexp(1.0, fnuz ? -10 : -9);
    const std::vector<double> w = {fmax,      1.0625,   1.1875,   -1.0625, 0.5,       1.5 * sub, 2.5 * sub,
                                   0.4 * sub, 0.6 * sub, -fmax,   3.0,     fmax - 1.0, 0.0,      -0.0};
    Buf x(GDN_DTYPE_F32, {1, 1, 128}), z(GDN_DTYPE_F32, {1, 1, 128}), weight(GDN_DTYPE_F32, {128});
    Buf out(cfg.fp8_dtype == GDN_DTYPE_F8_E4M3FN ? GDN_DTYPE_F8_E4M3FN : GDN_DTYPE_F8_E4M3FNUZ, {1, 1, 128});
    Buf scales(GDN_DTYPE_F32, {1, 1});
    for (int64_t j = 0; j < 128; ++j) {
      x.set(j, 1.0);
      z.set(j, 32.0);
      weight.set(j, j < int64_t(w.size()) ? w[size_t(j)] : 0.25);
    }
    out.poison();
    ASSERT_EQ(run_fp8(layer.layer, x, z, weight, out, scales), GDN_SUCCESS) << gdn_last_error_message();
    EXPECT_EQ(scales.get(0), 32.0);
    for (int64_t j = 0; j < 128; ++j) {
      const double wj = weight.get(j);
      EXPECT_EQ(out.get(j), e4m3_round_ref(wj, fnuz)) << "w = " << wj << (fnuz ? " fnuz" : " fn");
    }
    EXPECT_EQ(out.get(1), 1.0);   // tie -> even
    EXPECT_EQ(out.get(2), 1.25);  // tie -> even
    EXPECT_EQ(out.get(0), fmax);
  }
}

// An all-zero group: scale is FLT_MIN and every code is zero (no NaN from 0/0).
TEST(NormFp8, ZeroGroupGivesTinyScaleAndZeros) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 2, 16, 128, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  Buf x(GDN_DTYPE_BF16, {2, 2, 128}), z(GDN_DTYPE_BF16, {2, 2, 128}), weight(GDN_DTYPE_F32, {128});
  Buf out(GDN_DTYPE_F8_E4M3FN, {2, 2, 128}), scales(GDN_DTYPE_F32, {2, 2});
  for (int64_t j = 0; j < 128; ++j) weight.set(j, 1.0);
  std::mt19937_64 rng(3);
  z.fill_uniform(rng, -1, 1);
  out.poison();
  ASSERT_EQ(run_fp8(layer.layer, x, z, weight, out, scales), GDN_SUCCESS) << gdn_last_error_message();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(scales.get(i), double(FLT_MIN));
  for (double q : out.values()) EXPECT_EQ(q, 0.0);
}

// The weight may come in the activation dtype too: a bf16 (and f16) weight gives the same bytes as
// an f32 weight holding the same values (each row's weights are loaded with one dtype dispatch).
TEST(NormFp8, ActivationDtypeWeightEqualsF32Weight) {
  Ctx ctx;
  for (gdn_dtype act : {GDN_DTYPE_BF16, GDN_DTYPE_F16}) {
    gdn_layer_config cfg = small_config(1, 4, 16, 128, act);
    Layer layer(ctx.ctx, cfg);
    const int64_t T = 3;
    Buf x(act, {T, 4, 128}), z(act, {T, 4, 128}), w32(GDN_DTYPE_F32, {128}), wact(act, {128});
    std::mt19937_64 rng(11);
    x.fill_uniform(rng, -2, 2);
    z.fill_uniform(rng, -2, 2);
    wact.fill_uniform(rng, 0.5, 1.5);
    for (int64_t j = 0; j < 128; ++j) w32.set(j, wact.get(j));
    std::vector<double> got[2], sc[2];
    for (int k = 0; k < 2; ++k) {
      Buf out(GDN_DTYPE_F8_E4M3FN, {T, 4, 128}), scales(GDN_DTYPE_F32, {T, 4});
      out.poison();
      ASSERT_EQ(run_fp8(layer.layer, x, z, k ? wact : w32, out, scales), GDN_SUCCESS) << gdn_last_error_message();
      got[k] = out.values(), sc[k] = scales.values();
    }
    EXPECT_TRUE(got[0] == got[1] && sc[0] == sc[1]) << gdn_dtype_name(act) << " weight differs from f32";
  }
}

}  // namespace
