// One (token, head) row of RMSNormGated (+ FP8 group quantisation) held by 16 / VL lanes, shared by
// the norm kernel's fast path (norm.cu) and the fused decode step (decode_step.cu), so both produce
// the same bytes.
#pragma once

#include <cfloat>

#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {

// One row of V = 128 * SPANS columns, each 128-column span cut into 16 blocks of 8 columns; lane
// (of 16 / VL) holds blocks lane + v * (16 / VL), v < VL, of every span in xs[s][v], zs and w.
// y = x / rms(x) * w * silu(z); with FP8, each group of gs columns (8..128, dividing 128: gs / 8
// blocks) gets scale = amax / fmax, stored at scales[g * sc_stride] for the row's group g, and
// codes y / scale. Writes out (and the scales) when out is not null. The RMS sum adds each
// block's own sum over the tree of blocks b ^ 8, b ^ 4, b ^ 2, b ^ 1 -- the levels within a lane
// first, then shuffles within the row's lanes -- so the bits are the same for every VL; all 32
// lanes of the subgroup must call this together. V is a compile-time power of two, so the mean is
// an exact product.
template <int32_t OUT, bool FP8, int SPANS, int VL>
__device__ __forceinline__ void norm_row(const float (&xs)[SPANS][VL][8], const float (&zs)[SPANS][VL][8],
                                         const float (&w)[SPANS][VL][8], float eps, float fmax, int gs, int lane,
                                         float* scales, int64_t sc_stride, char* out) {
  static_assert(VL == 1 || VL == 2 || VL == 4, "1, 2 or 4 blocks of a span a lane");
  constexpr int kRowLanes = 16 / VL, kPer = 8;
  constexpr float kInvV = 1.0f / float(128 * SPANS);
  float part[VL];
#pragma unroll
  for (int v = 0; v < VL; ++v) {
    part[v] = 0.0f;
#pragma unroll
    for (int s = 0; s < SPANS; ++s)
#pragma unroll
      for (int c = 0; c < kPer; ++c) part[v] += xs[s][v][c] * xs[s][v][c];
  }
#pragma unroll
  for (int dv = VL / 2; dv > 0; dv >>= 1)  // block b + block b ^ (dv * kRowLanes): levels 8 (and 4)
#pragma unroll
    for (int v = 0; v < dv; ++v) part[v] += part[v + dv];
  float ss = part[0];
#pragma unroll
  for (int m = kRowLanes / 2; m > 0; m >>= 1) ss += shfl_xor32(ss, m);
  const float inv = rsqrtf(ss * kInvV + eps);
#pragma unroll
  for (int s = 0; s < SPANS; ++s) {
    float y[VL][kPer], amax[VL];
#pragma unroll
    for (int v = 0; v < VL; ++v) {
      amax[v] = 0.0f;
#pragma unroll
      for (int c = 0; c < kPer; ++c) {
        y[v][c] = xs[s][v][c] * inv * w[s][v][c] * fast_silu(zs[s][v][c]);
        amax[v] = fmaxf(amax[v], fabsf(y[v][c]));
      }
    }
    if constexpr (FP8) {
      // The group's amax (max is exact in any order): first between the lane's blocks of one group
      // (blocks b and b ^ m for m >= kRowLanes), then shuffles over the row's lanes (every lane
      // takes part; the group's lanes use them). A group of 128 is one value for all VL blocks.
#pragma unroll
      for (int m = kRowLanes; m < 16; m <<= 1)
        if (m < gs / kPer) {
          float t[VL];
#pragma unroll
          for (int v = 0; v < VL; ++v) t[v] = fmaxf(amax[v], amax[v ^ (m / kRowLanes)]);
#pragma unroll
          for (int v = 0; v < VL; ++v) amax[v] = t[v];
        }
      const int nv = gs == 128 ? 1 : VL;
#pragma unroll
      for (int m = 1; m < kRowLanes; m <<= 1)
#pragma unroll
        for (int v = 0; v < VL; ++v)
          if (v < nv) {
            const float o = shfl_xor32(amax[v], m);
            if (m < gs / kPer) amax[v] = fmaxf(amax[v], o);
          }
      float scale[VL];
#pragma unroll
      for (int v = 0; v < VL; ++v) {
        if (v < nv)
          scale[v] = fmaxf(amax[v] / fmax, FLT_MIN);
        else
          scale[v] = scale[0];
      }
      const int gshift = __ffs(gs) - 1;  // gs divides 128: a power of two
#pragma unroll
      for (int v = 0; v < VL; ++v) {
        const int col = s * 128 + (lane + v * kRowLanes) * kPer;
        if (out && (col & (gs - 1)) == 0) scales[(col >> gshift) * sc_stride] = scale[v];
        const float r = 1.0f / scale[v];
#pragma unroll
        for (int c = 0; c < kPer; ++c) y[v][c] = y[v][c] * r;
      }
    }
    if (out)
#pragma unroll
      for (int v = 0; v < VL; ++v)
#pragma unroll
        for (int q = 0; q < kPer; q += 4) {
          const float o[4] = {y[v][q], y[v][q + 1], y[v][q + 2], y[v][q + 3]};
          Vec4<OUT>::store(out, s * 128 + (lane + v * kRowLanes) * kPer + q, o);
        }
  }
}

}  // namespace gdn::gpu
