// One (token, head) row of RMSNormGated (+ FP8 group quantisation) held by 16 lanes, shared by the
// norm kernel's fast path (norm.cu) and the fused decode step (decode_step.cu), so both produce
// the same bytes.
#pragma once

#include <cfloat>

#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {

// One row of V = 128 * SPANS columns: lane (of 16) holds columns s * 128 + lane * 8 + [0, 8) of x,
// z and the weight. y = x / rms(x) * w * silu(z); with FP8, each group of gs columns (8..128,
// dividing 128: gs / 8 lanes) gets scale = amax / fmax, stored at scales[g * sc_stride] for the
// row's group g, and codes y / scale. Writes out (and the scales) when out is not null. The RMS
// sum and the group amax are shuffles within the 16 lanes: all 32 lanes of the subgroup must call
// this together. V is a compile-time power of two, so the mean is an exact product.
template <int32_t OUT, bool FP8, int SPANS>
__device__ __forceinline__ void norm_row16(const float (&xs)[SPANS][8], const float (&zs)[SPANS][8],
                                           const float (&w)[SPANS][8], float eps, float fmax, int gs, int lane,
                                           float* scales, int64_t sc_stride, char* out) {
  constexpr int kRowLanes = 16, kPer = 8;
  constexpr float kInvV = 1.0f / float(128 * SPANS);
  float ss = 0.0f;
#pragma unroll
  for (int s = 0; s < SPANS; ++s)
#pragma unroll
    for (int c = 0; c < kPer; ++c) ss += xs[s][c] * xs[s][c];
#pragma unroll
  for (int m = kRowLanes / 2; m > 0; m >>= 1) ss += shfl_xor32(ss, m);
  const float inv = rsqrtf(ss * kInvV + eps);
#pragma unroll
  for (int s = 0; s < SPANS; ++s) {
    float y[kPer];
#pragma unroll
    for (int c = 0; c < kPer; ++c) y[c] = xs[s][c] * inv * w[s][c] * fast_silu(zs[s][c]);
    if constexpr (FP8) {
      // The group of this lane's 8 columns spans gs / 8 consecutive lanes (gs divides 128).
      float amax = 0.0f;
#pragma unroll
      for (int c = 0; c < kPer; ++c) amax = fmaxf(amax, fabsf(y[c]));
#pragma unroll
      for (int m = 1; m < kRowLanes; m <<= 1) {
        const float o = shfl_xor32(amax, m);  // every lane takes part; the group's lanes use it
        if (m < gs / kPer) amax = fmaxf(amax, o);
      }
      const float scale = fmaxf(amax / fmax, FLT_MIN);
      const int col = s * 128 + lane * kPer, gshift = __ffs(gs) - 1;  // gs divides 128: a power of two
      if (out && (col & (gs - 1)) == 0) scales[(col >> gshift) * sc_stride] = scale;
#pragma unroll
      for (int c = 0; c < kPer; ++c) y[c] = y[c] * (1.0f / scale);
    }
    if (out)
#pragma unroll
      for (int q = 0; q < kPer; q += 4) {
        const float o[4] = {y[q], y[q + 1], y[q + 2], y[q + 3]};
        Vec4<OUT>::store(out, s * 128 + lane * kPer + q, o);
      }
  }
}

}  // namespace gdn::gpu
