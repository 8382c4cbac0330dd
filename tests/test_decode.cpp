// gdn_decode against the float64 recurrent oracle.
#include "gdn_case.hpp"

using namespace gdnt;

namespace {

struct DecodeParam {
  int hk, hv, k, v;
  gdn_dtype act, state;
  int batch, tn;
  bool raw, l2norm, grouped;
  int id = -1;  // random shapes: their index, in the name
};
// Parameters are spelled out in the test name; keep ctest names short.
void PrintTo(const DecodeParam&, std::ostream* os) { *os << "(see name)"; }


std::string name_of(const ::testing::TestParamInfo<DecodeParam>& info) {
  const DecodeParam& p = info.param;
  return "hk" + std::to_string(p.hk) + "_hv" + std::to_string(p.hv) + "_k" + std::to_string(p.k) + "_v" +
         std::to_string(p.v) + "_" + gdn_dtype_name(p.act) + "_s" + gdn_dtype_name(p.state) + "_b" +
         std::to_string(p.batch) + "_t" + std::to_string(p.tn) + (p.raw ? "_raw" : "_pre") +
         (p.l2norm ? "_l2" : "_nol2") + (p.grouped ? "_grp" : "") + (p.id >= 0 ? "_r" + std::to_string(p.id) : "");
}

class Decode : public ::testing::TestWithParam<DecodeParam> {};

TEST_P(Decode, MatchesOracle) {
  const DecodeParam P = GetParam();
  Ctx ctx;
  gdn_layer_config cfg = small_config(P.hk, P.hv, P.k, P.v, P.act, P.state);
  cfg.use_qk_l2norm = P.l2norm;
  if (gpu_refuses(ctx.ctx, cfg)) GTEST_SKIP() << gdn_last_error_message();
  Layer layer(ctx.ctx, cfg);
  const int64_t B = P.batch, Tn = P.tn, slots = B + 3;
  GdnCase c(cfg, {B, Tn}, slots, 1234 + uint64_t(B * 7 + Tn), P.raw);
  c.grouped = P.grouped;
  // Slots: a permutation, with a PAD and an out-of-range index where the batch allows.
  Buf slot_idx(GDN_DTYPE_I32, {B});
  for (int64_t b = 0; b < B; ++b) slot_idx.set(b, double(slots - 1 - b));
  if (B >= 3) slot_idx.set(1, GDN_PAD_SLOT);
  if (B >= 4) slot_idx.set(3, double(slots + 7));

  const std::vector<double> pool0 = c.state.values();
  const std::vector<unsigned char> before = c.state.bytes;
  std::vector<double> pool = pool0, want(size_t(c.out.numel()), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t slot = int64_t(slot_idx.get(b));
    if (slot < 0 || slot >= slots) continue;
    c.run_sequence(pool0, slot, true, b * Tn, b * Tn + Tn, pool, slot, want);
  }

  auto args = make_args<gdn_decode_args>();
  c.fill_args(args);
  args.slot_idx = slot_idx.view();
  size_t bytes = 0;
  ASSERT_EQ(gdn_decode_workspace_size(layer.layer, B, Tn, &bytes), GDN_SUCCESS);
  Workspace ws;
  ws.resize(bytes);
  ASSERT_EQ(call(gdn_decode, layer.layer, &args, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  const double tol = tol_for(P.act);
  EXPECT_TRUE(close(c.out.values(), want, tol, tol, "out"));
  EXPECT_TRUE(close(c.state.values(), pool, state_tol(P.state), state_tol(P.state), "state"));
  // Slots nobody names stay bit-identical.
  for (int64_t s = 0; s < slots; ++s) {
    bool named = false;
    for (int64_t b = 0; b < B; ++b) named |= int64_t(slot_idx.get(b)) == s;
    if (named) continue;
    const size_t n = size_t(c.HV * c.K * c.V) * gdn_dtype_size(c.state_dt);
    EXPECT_EQ(0, std::memcmp(c.state.bytes.data() + size_t(s) * n, before.data() + size_t(s) * n, n))
        << "untouched slot " << s << " changed";
  }
}

const DecodeParam kDecodeParams[] = {
    {2, 4, 16, 32, GDN_DTYPE_BF16, GDN_DTYPE_F32, 5, 1, true, true, false},
    {2, 4, 16, 32, GDN_DTYPE_F32, GDN_DTYPE_F32, 4, 3, true, true, true},
    {1, 3, 7, 5, GDN_DTYPE_F16, GDN_DTYPE_F32, 3, 2, false, true, false},
    {3, 3, 9, 17, GDN_DTYPE_F32, GDN_DTYPE_BF16, 4, 1, true, false, false},
    {4, 8, 64, 64, GDN_DTYPE_BF16, GDN_DTYPE_BF16, 2, 4, false, true, true},
    {2, 4, 128, 64, GDN_DTYPE_F32, GDN_DTYPE_F32, 1, 1, true, true, false},
    {1, 1, 1, 1, GDN_DTYPE_F32, GDN_DTYPE_F32, 2, 1, true, true, false},
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 2, 1, true, true, false},
    {2, 4, 256, 256, GDN_DTYPE_BF16, GDN_DTYPE_F32, 1, 2, true, true, false},
    // Large batches: the one-token kernel (K = 64 / 128) and, for other K or several tokens, the
    // GPU's streaming (pipelined, persistent) kernel.
    {16, 32, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 12, 1, true, true, false},
    {8, 16, 128, 128, GDN_DTYPE_BF16, GDN_DTYPE_BF16, 24, 2, false, true, true},
    {4, 16, 48, 64, GDN_DTYPE_F16, GDN_DTYPE_F32, 40, 1, true, true, false},
    {8, 16, 120, 128, GDN_DTYPE_BF16, GDN_DTYPE_F32, 40, 1, false, true, true},  // staged inputs, g/beta given
    {4, 16, 96, 128, GDN_DTYPE_F32, GDN_DTYPE_F32, 5, 1, true, true, false},  // 32-column streaming
};
INSTANTIATE_TEST_SUITE_P(Shapes, Decode, ::testing::ValuesIn(kDecodeParams), name_of);

// Random shapes (a fixed seed: the same names and inputs every run): odd head dims, every dtype
// pair, gate and layout option, batches that reach the GPU's streaming kernels.
std::vector<DecodeParam> random_decode_params(int n) {
  std::mt19937 rng(20261123);
  auto pick = [&](std::initializer_list<int> v) { return *(v.begin() + rng() % v.size()); };
  const gdn_dtype acts[] = {GDN_DTYPE_F32, GDN_DTYPE_F16, GDN_DTYPE_BF16}, states[] = {GDN_DTYPE_F32, GDN_DTYPE_BF16};
  std::vector<DecodeParam> out;
  for (int i = 0; i < n; ++i) {
    DecodeParam p{};
    p.hk = pick({1, 2, 3, 4});
    p.hv = p.hk * pick({1, 2, 3});
    p.k = pick({1, 5, 16, 31, 64, 100, 128});
    p.v = pick({1, 7, 32, 33, 64, 96, 128});
    p.act = acts[rng() % 3];
    p.state = states[rng() % 2];
    p.batch = pick({1, 2, 3, 5, 9, 17, 33, 48});
    p.tn = pick({1, 1, 1, 2, 3});
    p.raw = rng() % 2, p.l2norm = rng() % 4 != 0, p.grouped = rng() % 2;
    p.id = i;
    out.push_back(p);
  }
  return out;
}
INSTANTIATE_TEST_SUITE_P(Random, Decode, ::testing::ValuesIn(random_decode_params(16)), name_of);

// Speculative decoding: [B, Tn] slots, initial state from slot[b][num_accepted-1], state after
// token t written to slot[b][t].
TEST(DecodeSpec, PerTokenSlots) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 16, 24, GDN_DTYPE_F32);
  Layer layer(ctx.ctx, cfg);
  const int64_t B = 3, Tn = 3, slots = B * Tn + 2;
  GdnCase c(cfg, {B, Tn}, slots, 77);
  Buf slot_idx(GDN_DTYPE_I32, {B, Tn}), acc(GDN_DTYPE_I32, {B});
  for (int64_t i = 0; i < B * Tn; ++i) slot_idx.set(i, double((i * 4 + 1) % slots));
  slot_idx.set(1 * Tn + 2, GDN_PAD_SLOT);  // sequence 1 does not keep its last state
  acc.set(0, 1);
  acc.set(1, 2);
  acc.set(2, 3);
  const std::vector<double> pool0 = c.state.values();
  std::vector<double> pool = pool0, want(size_t(c.out.numel()), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t read = int64_t(slot_idx.get(b * Tn + int64_t(acc.get(b)) - 1));
    for (int64_t h = 0; h < c.HV; ++h) {
      std::vector<double> S = c.head_state(pool0, read, h);
      for (int64_t t = 0; t < Tn; ++t) {
        c.run(S, b * Tn + t, b * Tn + t + 1, h, want);
        const int64_t w = int64_t(slot_idx.get(b * Tn + t));
        if (w >= 0) c.put_head_state(pool, w, h, S);
      }
    }
  }
  auto args = make_args<gdn_decode_args>();
  c.fill_args(args);
  args.slot_idx = slot_idx.view();
  args.num_accepted = acc.view();
  Workspace ws;
  size_t bytes = 0;
  ASSERT_EQ(gdn_decode_workspace_size(layer.layer, B, Tn, &bytes), GDN_SUCCESS);
  ws.resize(bytes);
  ASSERT_EQ(call(gdn_decode, layer.layer, &args, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
  EXPECT_TRUE(close(c.out.values(), want, 2e-4, 2e-4, "out"));
  EXPECT_TRUE(close(c.state.values(), pool, 5e-5, 5e-5, "state"));
}

// A num_accepted outside 1..Tn skips the row (zeros), like a PAD slot.
TEST(DecodeSpec, BadAcceptedCountSkipsRow) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 2, 8, 8, GDN_DTYPE_F32);
  Layer layer(ctx.ctx, cfg);
  GdnCase c(cfg, {2, 2}, 4, 5);
  Buf slot_idx(GDN_DTYPE_I32, {2, 2}), acc(GDN_DTYPE_I32, {2});
  for (int i = 0; i < 4; ++i) slot_idx.set(i, i);
  acc.set(0, 0);
  acc.set(1, 3);
  const auto pool0 = c.state.bytes;
  auto args = make_args<gdn_decode_args>();
  c.fill_args(args);
  args.slot_idx = slot_idx.view();
  args.num_accepted = acc.view();
  Workspace ws;
  size_t bytes = 0;
  ASSERT_EQ(gdn_decode_workspace_size(layer.layer, 2, 2, &bytes), GDN_SUCCESS);
  ws.resize(bytes);
  ASSERT_EQ(call(gdn_decode, layer.layer, &args, ws.ptr(), ws.size()), GDN_SUCCESS);
  for (double x : c.out.values()) EXPECT_EQ(x, 0.0);
  EXPECT_EQ(c.state.bytes, pool0);
}

}  // namespace
