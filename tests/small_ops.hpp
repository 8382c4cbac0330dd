// The small conv and norm problems that the bad-input tests (test_bad_inputs.cpp) and the random
// bad calls (test_fuzz.cpp) start from: valid buffers, filled from a seed, and the args of a valid
// call on them.
#pragma once

#include <random>

#include "test_util.hpp"

namespace gdnt {

// conv_update of 4 rows and conv_prefill of sequences [0, 1) and [1, 4) (slots 0 and 1), on the
// layer small_config(1, 2, 8, 8, GDN_DTYPE_BF16): 2 * 8 + 16 channels, width 4.
struct SmallConv {
  static constexpr int64_t C = 2 * 8 + 16;
  Buf x{GDN_DTYPE_BF16, {4, C}}, out{GDN_DTYPE_BF16, {4, C}}, w{GDN_DTYPE_BF16, {C, 4}}, bias{GDN_DTYPE_BF16, {C}};
  Buf st{GDN_DTYPE_BF16, {5, C, 3}}, slot{GDN_DTYPE_I32, {4}}, cu{GDN_DTYPE_I64, {3}}, pslot{GDN_DTYPE_I32, {2}};

  explicit SmallConv(uint64_t seed) {
    std::mt19937_64 rng(seed);
    x.fill_uniform(rng, -1, 1), w.fill_uniform(rng, -1, 1), st.fill_uniform(rng, -1, 1), bias.fill_uniform(rng, -1, 1);
    out.poison();
    for (int i = 0; i < 4; ++i) slot.set(i, i);
    cu.set(1, 1), cu.set(2, 4), pslot.set(1, 1);
  }
  gdn_conv_update_args update_args(bool with_bias) const {
    auto a = make_args<gdn_conv_update_args>();
    a.x = x.view(), a.out = out.view(), a.weight = w.view(), a.conv_state = st.view(), a.slot_idx = slot.view();
    if (with_bias) a.bias = bias.view();
    return a;
  }
  gdn_conv_prefill_args prefill_args(bool with_bias) const {
    auto a = make_args<gdn_conv_prefill_args>();
    a.x = x.view(), a.out = out.view(), a.weight = w.view(), a.conv_state = st.view();
    a.cu_seqlens = cu.view(), a.slot_idx = pslot.view();
    if (with_bias) a.bias = bias.view();
    return a;
  }
};

// norm_gated (bf16 out) and norm_gated_fp8_quant (e4m3 out, a scale a head) of 3 tokens x 2 heads
// x 128 columns, on the layer small_config(1, 2, 8, 128, GDN_DTYPE_BF16), with an fp32 weight.
struct SmallNorm {
  Buf x{GDN_DTYPE_BF16, {3, 2, 128}}, z{GDN_DTYPE_BF16, {3, 2, 128}}, w{GDN_DTYPE_F32, {128}};
  Buf out{GDN_DTYPE_BF16, {3, 2, 128}}, q{GDN_DTYPE_F8_E4M3FN, {3, 2, 128}}, sc{GDN_DTYPE_F32, {3, 2}};

  explicit SmallNorm(uint64_t seed) {
    std::mt19937_64 rng(seed);
    x.fill_uniform(rng, -1, 1), z.fill_uniform(rng, -1, 1), w.fill_uniform(rng, -1, 1);
    out.poison(), q.poison(), sc.poison();
  }
  gdn_norm_gated_args args(bool fp8) const {
    auto a = make_args<gdn_norm_gated_args>();
    a.x = x.view(), a.z = z.view(), a.weight = w.view();
    a.out = fp8 ? q.view() : out.view();
    if (fp8) a.scales = sc.view();
    return a;
  }
};

}  // namespace gdnt
