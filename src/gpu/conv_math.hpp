// One channel of the causal depthwise conv1d, shared by the conv kernels (conv.cu) and the fused
// decode step (decode_step.cu), so both compute the same floats.
#pragma once

#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {

constexpr int kMaxW = 8;

__device__ __forceinline__ float conv_act(const ConvProblem& p, float acc) { return p.silu ? silu(acc) : acc; }

// One token through a window of the last W-1 inputs. Every loop runs to kMaxW with a predicate,
// so w[] and win[] stay in registers (a run-time index would put them in local memory).
__device__ __forceinline__ float conv_step(const float (&w)[kMaxW], float (&win)[kMaxW], int W, float bias, float x) {
  float acc = bias;
#pragma unroll
  for (int j = 0; j < kMaxW - 1; ++j)
    if (j < W - 1) acc += w[j] * win[j];
#pragma unroll
  for (int j = 0; j < kMaxW; ++j)
    if (j == W - 1) acc += w[j] * x;
#pragma unroll
  for (int j = 0; j < kMaxW - 2; ++j)
    if (j + 1 < W - 1) win[j] = win[j + 1];
#pragma unroll
  for (int j = 0; j < kMaxW - 1; ++j)
    if (j == W - 2) win[j] = x;
  return acc;
}

template <int32_t DT>
__device__ __forceinline__ void load_weights(const ConvProblem& p, int64_t c, int W, float (&w)[kMaxW]) {
#pragma unroll
  for (int j = 0; j < kMaxW; ++j) w[j] = j < W ? Elem<DT>::load(p.weight.at(c, 0), j * p.weight.s_col) : 0.0f;
}

}  // namespace gdn::gpu
