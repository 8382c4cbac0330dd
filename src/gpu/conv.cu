// Causal depthwise conv1d on the GPU. Decode update: one thread per (sequence, channel) runs the
// Tn new tokens through its window and writes the window back. Prefill: outputs are computed in
// parallel over (token chunk, channel), each thread rebuilding its window from x or from the
// slot's initial state; a second launch then writes every sequence's final window, so no block
// overwrites a state another block still reads.
#include "launch.hpp"
#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {
namespace {

constexpr int kThreads = 256, kMaxW = 8, kTokensPerThread = 16;

__device__ float act(const ConvProblem& p, float acc) { return p.silu ? silu(acc) : acc; }

template <int32_t ACT>
__global__ void __launch_bounds__(kThreads) conv_update_kernel(ConvProblem p) {
  const int64_t C = p.d.conv_dim(), W = p.d.W;
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x, b = blockIdx.x;
  if (c >= C) return;
  const int64_t slot = p.slot_idx.idx(b);
  if (slot < 0 || slot >= p.state.num_slots) {
    for (int64_t t = 0; t < p.tokens_per_seq; ++t) Elem<ACT>::store(p.out.at(b, t, 0), c, 0.0f);
    return;
  }
  float w[kMaxW], win[kMaxW];
  for (int64_t j = 0; j < W; ++j) w[j] = load_float(p.weight.at(c, j), p.weight.dt);
  for (int64_t j = 0; j < W - 1; ++j) win[j] = load_float(p.state.at(slot, c, j), p.state.dt);
  const float bias = p.bias.present() ? p.bias.f(c) : 0.0f;
  const int64_t col = p.d.conv_column(c);
  for (int64_t t = 0; t < p.tokens_per_seq; ++t) {
    const float x = Elem<ACT>::load(p.x.at(b, t, 0), col);
    float acc = bias + w[W - 1] * x;
    for (int64_t j = 0; j < W - 1; ++j) acc += w[j] * win[j];
    for (int64_t j = 0; j + 1 < W - 1; ++j) win[j] = win[j + 1];
    if (W > 1) win[W - 2] = x;
    Elem<ACT>::store(p.out.at(b, t, 0), c, act(p, acc));
  }
  for (int64_t j = 0; j < W - 1; ++j) store_float(p.state.at(slot, c, j), p.state.dt, win[j]);
}

// Sequence of token t: the n with cu[n] <= t < cu[n+1] (binary search; cu clamped to [0, T]).
__device__ int64_t sequence_of(const ConvProblem& p, int64_t t) {
  int64_t lo = 0, hi = p.num_seqs;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (p.cu_seqlens.idx(mid) <= t) lo = mid; else hi = mid;
  }
  return lo;
}

// Input of channel c at token u of sequence [start, ...): x, or the initial window before start.
template <int32_t ACT>
__device__ float input_at(const ConvProblem& p, int64_t c, int64_t col, int64_t u, int64_t start, int64_t slot,
                          bool initial) {
  if (u >= start) return Elem<ACT>::load(p.x.at(0, u, 0), col);
  if (!initial) return 0.0f;
  return load_float(p.state.at(slot, c, u - start + p.d.W - 1), p.state.dt);
}

template <int32_t ACT>
__global__ void __launch_bounds__(kThreads) conv_prefill_kernel(ConvProblem p, int64_t T) {
  const int64_t C = p.d.conv_dim(), W = p.d.W;
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (c >= C) return;
  const int64_t t0 = int64_t(blockIdx.x) * kTokensPerThread;
  const int64_t t1 = t0 + kTokensPerThread < T ? t0 + kTokensPerThread : T;
  float w[kMaxW];
  for (int64_t j = 0; j < W; ++j) w[j] = load_float(p.weight.at(c, j), p.weight.dt);
  const float bias = p.bias.present() ? p.bias.f(c) : 0.0f;
  const int64_t col = p.d.conv_column(c);
  int64_t t = t0;
  while (t < t1) {
    const int64_t n = sequence_of(p, t);
    const int64_t start = p.cu_seqlens.idx(n), end = p.cu_seqlens.idx(n + 1) < t1 ? p.cu_seqlens.idx(n + 1) : t1;
    const int64_t slot = p.slot_idx.idx(n);
    if (end <= t) break;  // malformed cu_seqlens: nothing sane to do
    if (slot < 0 || slot >= p.state.num_slots) {
      for (; t < end; ++t) Elem<ACT>::store(p.out.at(0, t, 0), c, 0.0f);
      continue;
    }
    const bool initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
    float win[kMaxW];
    for (int64_t j = 0; j < W - 1; ++j) win[j] = input_at<ACT>(p, c, col, t - (W - 1) + j, start, slot, initial);
    for (; t < end; ++t) {
      const float x = Elem<ACT>::load(p.x.at(0, t, 0), col);
      float acc = bias + w[W - 1] * x;
      for (int64_t j = 0; j < W - 1; ++j) acc += w[j] * win[j];
      for (int64_t j = 0; j + 1 < W - 1; ++j) win[j] = win[j + 1];
      if (W > 1) win[W - 2] = x;
      Elem<ACT>::store(p.out.at(0, t, 0), c, act(p, acc));
    }
  }
}

// Final window of every sequence: its last W-1 inputs (reaching into the old window when the
// sequence is shorter than W-1).
template <int32_t ACT>
__global__ void __launch_bounds__(kThreads) conv_final_state_kernel(ConvProblem p) {
  const int64_t C = p.d.conv_dim(), W = p.d.W;
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x, n = blockIdx.x;
  if (c >= C) return;
  const int64_t slot = p.slot_idx.idx(n);
  if (slot < 0 || slot >= p.state.num_slots) return;
  const int64_t start = p.cu_seqlens.idx(n), end = p.cu_seqlens.idx(n + 1) > start ? p.cu_seqlens.idx(n + 1) : start;
  const bool initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
  const int64_t col = p.d.conv_column(c);
  float win[kMaxW];
  for (int64_t j = 0; j < W - 1; ++j) win[j] = input_at<ACT>(p, c, col, end - (W - 1) + j, start, slot, initial);
  for (int64_t j = 0; j < W - 1; ++j) store_float(p.state.at(slot, c, j), p.state.dt, win[j]);
}

}  // namespace

void conv_update(const Device&, const ConvProblem& p, void* stream) {
  const int64_t C = p.d.conv_dim();
  if (p.num_seqs == 0) return;
  dispatch_act(p.x.dt, [&](auto a) {
    conv_update_kernel<decltype(a)::value>
        <<<dim3(unsigned(p.num_seqs), ceil_div(C, kThreads)), kThreads, 0, gpuStream_t(stream)>>>(p);
    check_launch("conv_update_kernel");
  });
}

void conv_prefill(const Device&, const ConvProblem& p, void* stream) {
  const int64_t C = p.d.conv_dim();
  if (p.num_seqs == 0) return;
  const int64_t T = p.tokens_per_seq;  // prefill: the total row count
  dispatch_act(p.x.dt, [&](auto a) {
    constexpr int32_t A = decltype(a)::value;
    if (T > 0) {
      conv_prefill_kernel<A><<<dim3(ceil_div(T, kTokensPerThread), ceil_div(C, kThreads)), kThreads, 0,
                               gpuStream_t(stream)>>>(p, T);
      check_launch("conv_prefill_kernel");
    }
    conv_final_state_kernel<A>
        <<<dim3(unsigned(p.num_seqs), ceil_div(C, kThreads)), kThreads, 0, gpuStream_t(stream)>>>(p);
    check_launch("conv_final_state_kernel");
  });
}

}  // namespace gdn::gpu
