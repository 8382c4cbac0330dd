// One channel of the causal depthwise conv1d, shared by the conv kernels (conv.cu) and the fused
// decode step (decode_step.cu), so both compute the same floats.
#pragma once

#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {

constexpr int kMaxW = 8;

// SiLU by the hardware exponential and reciprocal (fast_silu, as the norm's gate): the exact
// division of silu() made the conv kernel's per-channel code ~40 instructions longer, and its
// latency is the conv's time at small batches. Every GPU conv path uses this one (the fused step's
// conv equals the conv op's bit for bit); against the CPU backend's exact silu the difference is
// a few fp32 ulps, far below the bf16 / fp16 output's rounding.
__device__ __forceinline__ float conv_act(const ConvProblem& p, float acc) { return p.silu ? fast_silu(acc) : acc; }

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

// Channel c's weights as stored (load_raw: nothing waits for them until to_weights converts).
template <int32_t DT>
__device__ __forceinline__ void load_weights_raw(const ConvProblem& p, int64_t c, int W,
                                                 typename Elem<DT>::T (&raw)[kMaxW]) {
#pragma unroll
  for (int j = 0; j < kMaxW; ++j) raw[j] = j < W ? load_raw<DT>(p.weight.at(c, 0), j * p.weight.s_col) : 0;
}
template <int32_t DT>
__device__ __forceinline__ void to_weights(const typename Elem<DT>::T (&raw)[kMaxW], float (&w)[kMaxW]) {
#pragma unroll
  for (int j = 0; j < kMaxW; ++j) w[j] = raw_to_float<DT>(raw[j]);
}
// The W - 1 inputs of a conv state window (zero past them): every load issued before any is
// converted (a conversion next to its conditional load would wait for each in turn).
template <int32_t DT>
__device__ __forceinline__ void load_window(const char* row, int64_t stride, int W, float (&win)[kMaxW]) {
  typename Elem<DT>::T raw[kMaxW];
#pragma unroll
  for (int j = 0; j < kMaxW; ++j) raw[j] = j < W - 1 ? load_raw<DT>(row, j * stride) : 0;
#pragma unroll
  for (int j = 0; j < kMaxW; ++j) win[j] = raw_to_float<DT>(raw[j]);
}
template <int32_t DT>
__device__ __forceinline__ void load_weights(const ConvProblem& p, int64_t c, int W, float (&w)[kMaxW]) {
  typename Elem<DT>::T raw[kMaxW];
  load_weights_raw<DT>(p, c, W, raw);
  to_weights<DT>(raw, w);
}

}  // namespace gdn::gpu
