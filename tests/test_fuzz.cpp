// Random bad calls of the decode, prefill, conv and norm ops (tests/fuzz.hpp says what holds).
#include <climits>
#include <cmath>

#include "fuzz.hpp"
#include "gdn_case.hpp"
#include "small_ops.hpp"

using namespace gdnt;

namespace {

TEST(Fuzz, Decode) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 16, 16, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  GdnCase c(cfg, {3, 2}, 4, 1);
  Buf slot(GDN_DTYPE_I32, {3, 2}), g(GDN_DTYPE_F32, {3, 2, 4}), acc(GDN_DTYPE_I32, {3});
  for (int i = 0; i < 6; ++i) slot.set(i, i % 4);
  for (int i = 0; i < 3; ++i) acc.set(i, 1 + i % 2);
  Fuzz<gdn_decode_args> f;
  f.fn = gdn_decode;
  f.layer = layer.layer;
  f.base = make_args<gdn_decode_args>();
  c.fill_args(f.base);
  f.base.slot_idx = slot.view();
  f.base.num_accepted = acc.view();
  f.bufs = {&c.q, &c.k, &c.v, &c.a, &c.b, &c.A_log, &c.dt_bias, &c.state, &c.out, &slot, &g, &acc};
  f.outs = {&gdn_decode_args::out, &gdn_decode_args::state};
  f.index_bufs = {&slot, &acc};
  size_t bytes = 0;
  ASSERT_EQ(gdn_decode_workspace_size(layer.layer, 3, 2, &bytes), GDN_SUCCESS);
  f.ws.resize(bytes);
  f.run(fuzz_trials(), fuzz_seed(11), "decode");
}

TEST(Fuzz, Prefill) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 16, 16, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  GdnCase c(cfg, {10}, 3, 2);
  Buf cu(GDN_DTYPE_I32, {3}), slot(GDN_DTYPE_I32, {2}), init(GDN_DTYPE_BOOL, {2});
  cu.set(1, 4), cu.set(2, 10), slot.set(0, 0), slot.set(1, 2), init.set(0, 1);
  Fuzz<gdn_prefill_args> f;
  f.fn = gdn_prefill;
  f.layer = layer.layer;
  f.base = make_args<gdn_prefill_args>();
  c.fill_args(f.base);
  f.base.cu_seqlens = cu.view();
  f.base.slot_idx = slot.view();
  f.base.has_initial_state = init.view();
  f.bufs = {&c.q, &c.k, &c.v, &c.a, &c.b, &c.A_log, &c.dt_bias, &c.state, &c.out, &cu, &slot, &init};
  f.outs = {&gdn_prefill_args::out, &gdn_prefill_args::state};
  f.index_bufs = {&cu, &slot, &init};
  size_t bytes = 0;
  ASSERT_EQ(gdn_prefill_workspace_size(layer.layer, 10, 2, &bytes), GDN_SUCCESS);
  f.ws.resize(bytes);
  f.run(fuzz_trials(), fuzz_seed(12), "prefill");
}

TEST(Fuzz, Conv) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 2, 8, 8, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  SmallConv b(4);
  {
    Fuzz<gdn_conv_update_args> f;
    f.fn = gdn_conv_update;
    f.layer = layer.layer;
    f.base = b.update_args(true);
    f.bufs = {&b.x, &b.out, &b.w, &b.bias, &b.st, &b.slot};
    f.outs = {&gdn_conv_update_args::out, &gdn_conv_update_args::conv_state};
    f.index_bufs = {&b.slot};
    f.run(fuzz_trials(), fuzz_seed(13), "conv_update");
  }
  {
    Fuzz<gdn_conv_prefill_args> f;
    f.fn = gdn_conv_prefill;
    f.layer = layer.layer;
    f.base = b.prefill_args(true);
    f.bufs = {&b.x, &b.out, &b.w, &b.bias, &b.st, &b.cu, &b.pslot};
    f.outs = {&gdn_conv_prefill_args::out, &gdn_conv_prefill_args::conv_state};
    f.index_bufs = {&b.cu, &b.pslot};
    f.run(fuzz_trials(), fuzz_seed(14), "conv_prefill");
  }
}

TEST(Fuzz, Norm) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 2, 8, 128, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  SmallNorm b(5);
  size_t bytes = 0;
  ASSERT_EQ(gdn_norm_gated_workspace_size(layer.layer, 3, &bytes), GDN_SUCCESS);
  for (bool fp8 : {false, true}) {
    Fuzz<gdn_norm_gated_args> f;
    f.fn = fp8 ? gdn_norm_gated_fp8_quant : gdn_norm_gated;
    f.layer = layer.layer;
    f.base = b.args(fp8);
    f.bufs = {&b.x, &b.z, &b.w, &b.out, &b.q, &b.sc};
    f.outs = {&gdn_norm_gated_args::out, &gdn_norm_gated_args::scales};
    f.ws.resize(bytes);
    f.run(fuzz_trials(), fuzz_seed(fp8 ? 16 : 15), fp8 ? "norm_fp8" : "norm");
  }
}

// Random layer configs (each field valid, at an edge or invalid), then every workspace query with
// random sizes: a status and a message for each refusal, no crash, and a layer for every success.
TEST(Fuzz, LayerConfigAndWorkspaces) {
  Ctx ctx;
  std::mt19937_64 rng(fuzz_seed(19));
  auto pick = [&](std::initializer_list<int64_t> v) { return *(v.begin() + rng() % v.size()); };
  const int n = fuzz_trials() * 5;
  int made = 0;
  for (int trial = 0; trial < n; ++trial) {
    gdn_layer_config c = small_config(2, 4, 16, 16);
    for (int changes = 1 + int(rng() % 4); changes > 0; --changes) {
      switch (rng() % 14) {
        case 0: c.num_k_heads = int32_t(pick({0, -1, 1, 3, 16, 1 << 16, (1 << 16) + 1, INT32_MAX})); break;
        case 1: c.num_v_heads = int32_t(pick({0, -2, 1, 6, 32, 1 << 16, INT32_MIN})); break;
        case 2: c.head_k_dim = int32_t(pick({0, -1, 1, 7, 64, 128, 256, 1024, 1025})); break;
        case 3: c.head_v_dim = int32_t(pick({0, -1, 1, 7, 64, 128, 256, 1024, 1025})); break;
        case 4: c.conv_width = int32_t(pick({0, 1, 2, 4, 8, 9, -4})); break;
        case 5: c.conv_activation = int32_t(pick({0, 1, 2, -1})); break;
        case 6: c.act_dtype = int32_t(rng() % 14); break;
        case 7: c.state_dtype = int32_t(rng() % 14); break;
        case 8: c.out_dtype = int32_t(rng() % 14); break;
        case 9: c.fp8_dtype = int32_t(rng() % 14); break;
        case 10: c.fp8_group_size = int32_t(pick({0, -128, 1, 3, 16, 64, 128, 1 << 20})); break;
        case 11: c.input_layout = int32_t(pick({0, 1, 2, -1})); break;
        case 12: {
          const float v[] = {0.0f, -1.0f, 0.5f, INFINITY, NAN, 1e-30f};
          (rng() % 2 ? c.scale : c.norm_eps) = v[rng() % 6];
          break;
        }
        default: c.prefill_precision = int32_t(pick({0, 1, 2, -1})); break;
      }
    }
    gdn_layer layer = nullptr;
    const gdn_status st = gdn_layer_create(ctx.ctx, &c, &layer);
    if (st != GDN_SUCCESS) {
      EXPECT_EQ(layer, nullptr) << "trial " << trial;
      EXPECT_STRNE(gdn_last_error_message(), "") << "trial " << trial;
      continue;
    }
    ASSERT_NE(layer, nullptr);
    ++made;
    for (int q = 0; q < 8; ++q) {
      const int64_t sizes[] = {0, 1, 3, 64, 1 << 20, int64_t(1) << 40, -1, INT64_MAX};
      const int64_t x = sizes[rng() % 8], y = sizes[rng() % 8];
      size_t bytes = 12345;
      gdn_status w;
      switch (q) {
        case 0: w = gdn_decode_workspace_size(layer, x, y, &bytes); break;
        case 1: w = gdn_prefill_workspace_size(layer, x, y, &bytes); break;
        case 2: w = gdn_conv_update_workspace_size(layer, x, y, &bytes); break;
        case 3: w = gdn_conv_prefill_workspace_size(layer, x, y, &bytes); break;
        case 4: w = gdn_norm_gated_workspace_size(layer, x, &bytes); break;
        case 5: w = gdn_decode_step_workspace_size(layer, x, &bytes); break;
        default: {
          int64_t cd = 0;
          w = gdn_layer_conv_dim(layer, &cd);
          EXPECT_TRUE(w != GDN_SUCCESS || cd > 0);
        }
      }
      if (w != GDN_SUCCESS) {
        EXPECT_STRNE(gdn_last_error_message(), "") << "trial " << trial << " query " << q;
        EXPECT_EQ(bytes, size_t(12345)) << "trial " << trial << " query " << q << ": written on failure";
      }
    }
    EXPECT_EQ(gdn_layer_destroy(layer), GDN_SUCCESS);
  }
  EXPECT_GT(made, n / 20) << "too few valid configs";
}

}  // namespace
