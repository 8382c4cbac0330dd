// Causal depthwise conv1d on the GPU. Decode update: one thread per (sequence, channel) runs the
// Tn new tokens through its window and writes the window back. Prefill: outputs are computed in
// parallel over (token chunk, channel), each thread rebuilding its window from x or from the
// slot's initial state; a second launch then writes every sequence's final window, so no block
// overwrites a state another block still reads.
#include "conv_math.hpp"
#include "launch.hpp"

namespace gdn::gpu {
namespace {

constexpr int kThreads = 256, kTokensPerThread = 16;

template <int32_t ACT, int32_t WT, int32_t ST>
__global__ void __launch_bounds__(kThreads) conv_update_kernel(ConvProblem p) {
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  if (p.release_early) pdl_release();
  const int64_t C = p.d.conv_dim();
  const int W = int(p.d.W);
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x, b = blockIdx.x;
  if (c >= C) return;
  // What does not depend on the slot first, raw (converted after the window's loads are issued,
  // so that nothing waits for it before): weights, bias, the first token's input.
  const int64_t col = p.d.conv_column(c);
  typename Elem<WT>::T w_raw[kMaxW];
  load_weights_raw<WT>(p, c, W, w_raw);
  const uint32_t bias_bits = p.bias.present() ? p.bias.bits(c) : 0u;
  const typename Elem<ACT>::T x0_raw = load_raw<ACT>(p.x.at(b, 0, 0), col);
  const int64_t slot = p.slot_idx.idx(b);
  if (slot < 0 || slot >= p.state.num_slots) {
    for (int64_t t = 0; t < p.tokens_per_seq; ++t) Elem<ACT>::store(p.out.at(b, t, 0), c, 0.0f);
    return;
  }
  float w[kMaxW], win[kMaxW];
  load_window<ST>(p.state.at(slot, c, 0), p.state.s_w, W, win);
  to_weights<WT>(w_raw, w);
  const float bias = p.bias.present() ? bits_to_float(bias_bits, p.bias.dt) : 0.0f;
  for (int64_t t = 0; t < p.tokens_per_seq; ++t) {
    const float x = t == 0 ? raw_to_float<ACT>(x0_raw) : Elem<ACT>::load(p.x.at(b, t, 0), col);
    Elem<ACT>::store(p.out.at(b, t, 0), c, conv_act(p, conv_step(w, win, W, bias, x)));
  }
#pragma unroll
  for (int j = 0; j < kMaxW - 1; ++j)
    if (j < W - 1) Elem<ST>::store(p.state.at(slot, c, 0), j * p.state.s_w, win[j]);
}

// Token range [start, end) of sequence n, clamped to the rows (typed.hpp: clamped_seq_range; a
// prefill's tokens_per_seq is its total row count).
__device__ inline void seq_range(const ConvProblem& p, int64_t n, int64_t& start, int64_t& end) {
  clamped_seq_range(p.cu_seqlens, p.tokens_per_seq, n, start, end);
}

// Sequence of token t: the n with cu[n] <= t < cu[n+1] (binary search; with malformed cu_seqlens
// some n, whose clamped range the caller checks).
__device__ int64_t sequence_of(const ConvProblem& p, int64_t t) {
  int64_t lo = 0, hi = p.num_seqs;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (p.cu_seqlens.idx(mid) <= t) lo = mid; else hi = mid;
  }
  return lo;
}

// Input of channel c at token u of sequence [start, ...): x, or the initial window before start.
template <int32_t ACT, int32_t ST>
__device__ float input_at(const ConvProblem& p, int64_t c, int64_t col, int64_t u, int64_t start, int64_t slot,
                          bool initial) {
  if (u >= start) return Elem<ACT>::load(p.x.at(0, u, 0), col);
  if (!initial) return 0.0f;
  return Elem<ST>::load(p.state.at(slot, c, 0), (u - start + p.d.W - 1) * p.state.s_w);
}

template <int32_t ACT, int32_t WT, int32_t ST>
__global__ void __launch_bounds__(kThreads) conv_prefill_kernel(ConvProblem p, int64_t T) {
  const int64_t C = p.d.conv_dim();
  const int W = int(p.d.W);
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (c >= C) return;
  const int64_t t0 = int64_t(blockIdx.x) * kTokensPerThread;
  const int64_t t1 = t0 + kTokensPerThread < T ? t0 + kTokensPerThread : T;
  float w[kMaxW];
  load_weights<WT>(p, c, W, w);
  const float bias = p.bias.present() ? p.bias.f(c) : 0.0f;
  const int64_t col = p.d.conv_column(c);
  int64_t t = t0;
  while (t < t1) {
    const int64_t n = sequence_of(p, t);
    int64_t start, end;
    seq_range(p, n, start, end);
    if (end > t1) end = t1;
    // Malformed cu_seqlens only: tokens before their sequence's start are left as they are (the
    // initial window reaches back W - 1 inputs from the start, no further).
    if (t < start) t = start;
    const int64_t slot = p.slot_idx.idx(n);
    if (end <= t) break;  // malformed cu_seqlens: nothing sane to do
    if (slot < 0 || slot >= p.state.num_slots) {
      for (; t < end; ++t) Elem<ACT>::store(p.out.at(0, t, 0), c, 0.0f);
      continue;
    }
    const bool initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
    float win[kMaxW];
#pragma unroll
    for (int j = 0; j < kMaxW; ++j)
      win[j] = j < W - 1 ? input_at<ACT, ST>(p, c, col, t - (W - 1) + j, start, slot, initial) : 0.0f;
    for (; t < end; ++t) {
      const float x = Elem<ACT>::load(p.x.at(0, t, 0), col);
      Elem<ACT>::store(p.out.at(0, t, 0), c, conv_act(p, conv_step(w, win, W, bias, x)));
    }
  }
}

// Final window of every sequence: its last W-1 inputs (reaching into the old window when the
// sequence is shorter than W-1).
template <int32_t ACT, int32_t ST>
__global__ void __launch_bounds__(kThreads) conv_final_state_kernel(ConvProblem p) {
  const int64_t C = p.d.conv_dim();
  const int W = int(p.d.W);
  const int64_t c = int64_t(blockIdx.y) * kThreads + threadIdx.x, n = blockIdx.x;
  if (c >= C) return;
  const int64_t slot = p.slot_idx.idx(n);
  if (slot < 0 || slot >= p.state.num_slots) return;
  int64_t start, end;
  seq_range(p, n, start, end);
  const bool initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
  const int64_t col = p.d.conv_column(c);
  float win[kMaxW];
#pragma unroll
  for (int j = 0; j < kMaxW - 1; ++j)
    win[j] = j < W - 1 ? input_at<ACT, ST>(p, c, col, end - (W - 1) + j, start, slot, initial) : 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxW - 1; ++j)
    if (j < W - 1) Elem<ST>::store(p.state.at(slot, c, 0), j * p.state.s_w, win[j]);
}

// Fast path of the decode update for the common case: width 4, 2-byte activations, weights and
// state all of the activation dtype, contiguous weight [C, 4] and state [C, 3] rows, 16-byte
// aligned. One thread takes CPT (2, 4 or 8) consecutive channels, each access a word of CPT
// elements: x, bias and the output one word, the CPT x 4 weights four, the CPT x 3 window three.
// Fewer channels a thread where the batch leaves SMs idle (vec_channels): there the time is the
// length of one thread's instruction chain (ncu at B = 1: ~800 instructions a warp with 8).
template <int CPT> struct ConvWord;
template <> struct ConvWord<2> { using T = uint32_t; };
template <> struct ConvWord<4> { using T = uint2; };
template <> struct ConvWord<8> { using T = uint4; };

template <int CPT>
union Pack {
  typename ConvWord<CPT>::T v;
  uint16_t h[CPT];
};

template <int32_t ACT, int CPT>
__global__ void __launch_bounds__(kThreads) conv_update_vec_kernel(ConvProblem p) {
  using Word = typename ConvWord<CPT>::T;
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  if (p.release_early) pdl_release();
  const int64_t C = p.d.conv_dim(), b = blockIdx.x;
  const int64_t c0 = (int64_t(blockIdx.y) * kThreads + threadIdx.x) * CPT;
  if (c0 >= C) return;
  // What does not depend on the slot first (weights, bias, the first token's input), then the
  // slot and the window: all as raw words, converted after the last is issued, so that no
  // thread waits for one load before it issues the next.
  const int64_t col = p.d.conv_column(c0);
  Pack<CPT> wk[4], bk, x0, sk[3];
  const Word* wp = reinterpret_cast<const Word*>(p.weight.at(c0, 0));
#pragma unroll
  for (int q = 0; q < 4; ++q) wk[q].v = wp[q];
  bk.v = p.bias.present() ? *reinterpret_cast<const Word*>(p.bias.at(c0)) : Word{};
  x0.v = *reinterpret_cast<const Word*>(p.x.at(b, 0, col));
  const int64_t slot = p.slot_idx.idx(b);
  const bool ok = slot >= 0 && slot < p.state.num_slots;
  const Word* window = reinterpret_cast<const Word*>(p.state.at(ok ? slot : 0, c0, 0));
#pragma unroll
  for (int q = 0; q < 3; ++q) sk[q].v = ok ? window[q] : Word{};
  float w[CPT][4], win[CPT][3], bias[CPT];
#pragma unroll
  for (int q = 0; q < 4; ++q)
#pragma unroll
    for (int e = 0; e < CPT; ++e) w[(q * CPT + e) / 4][(q * CPT + e) % 4] = Elem<ACT>::load(wk[q].h, e);
#pragma unroll
  for (int q = 0; q < 3; ++q)
#pragma unroll
    for (int e = 0; e < CPT; ++e) win[(q * CPT + e) / 3][(q * CPT + e) % 3] = Elem<ACT>::load(sk[q].h, e);
#pragma unroll
  for (int e = 0; e < CPT; ++e) bias[e] = Elem<ACT>::load(bk.h, e);
  for (int64_t t = 0; t < p.tokens_per_seq; ++t) {
    Pack<CPT> out;
    out.v = Word{};
    if (ok) {
      Pack<CPT> x = x0;
      if (t > 0) x.v = *reinterpret_cast<const Word*>(p.x.at(b, t, col));
#pragma unroll
      for (int e = 0; e < CPT; ++e) {
        const float xv = Elem<ACT>::load(x.h, e);
        const float acc = bias[e] + w[e][0] * win[e][0] + w[e][1] * win[e][1] + w[e][2] * win[e][2] + w[e][3] * xv;
        win[e][0] = win[e][1];
        win[e][1] = win[e][2];
        win[e][2] = xv;
        Elem<ACT>::store(out.h, e, conv_act(p, acc));
      }
    }
    *reinterpret_cast<Word*>(p.out.at(b, t, c0)) = out.v;
  }
  if (ok) {
    Word* sp = reinterpret_cast<Word*>(p.state.at(slot, c0, 0));
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      Pack<CPT> pk;
#pragma unroll
      for (int e = 0; e < CPT; ++e) Elem<ACT>::store(pk.h, e, win[(q * CPT + e) / 3][(q * CPT + e) % 3]);
      sp[q] = pk.v;
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether conv_update_vec_kernel applies (all strides in elements of 2 bytes).
bool vec_update_ok(const ConvProblem& p) {
  const LayerDims& d = p.d;
  const int32_t a = p.x.dt;
  if (d.W != 4 || dtype_bytes(a) != 2 || p.weight.dt != a || p.state.dt != a) return false;
  if (d.K % 8 || d.V % 8 || (p.bias.present() && (p.bias.dt != a || p.bias.s != 1 || !aligned16(p.bias.p))))
    return false;
  if (p.weight.s_col != 1 || p.weight.s_row != 4 || !aligned16(p.weight.p)) return false;
  if (p.state.s_w != 1 || p.state.s_c != 3 || p.state.s_slot % 8 || !aligned16(p.state.p)) return false;
  return aligned16(p.x.p) && aligned16(p.out.p) && p.x.s_seq % 8 == 0 && p.x.s_tok % 8 == 0 &&
         p.out.s_seq % 8 == 0 && p.out.s_tok % 8 == 0;
}

// Channels a thread of conv_update_vec_kernel (H100, graph replays, C = 8192, session 14): 2
// while that is at most 4 blocks an SM (B <= 32: B = 1 / 8 2.66 / 2.87 -> 1.77 / 1.99 us), 4
// while that is at most one wave of 8 blocks an SM (B = 48 / 128: 4.39 / 8.34 -> 3.87 / 7.69 us),
// 8 beyond (B = 256 / 512: 4 channels 1-4 % slower).
int vec_channels(const Device& dev, const ConvProblem& p) {
  const int64_t C = p.d.conv_dim(), per_sm = int64_t(dev.sm_count) * kThreads;
  if (p.num_seqs * ceil_div(C, int64_t(2)) <= 4 * per_sm) return 2;
  if (p.num_seqs * ceil_div(C, int64_t(4)) <= 8 * per_sm) return 4;
  return 8;
}

// f(act, weight, state) tags: weight and state are the activation dtype or F32.
template <class F>
void dispatch_conv(const ConvProblem& p, F&& f) {
  dispatch_act(p.x.dt, [&](auto a) {
    constexpr int32_t A = decltype(a)::value;
    auto with_state = [&](auto w) {
      if (p.state.dt == A)
        f(a, w, a);
      else
        f(a, w, Tag<GDN_DTYPE_F32>{});
    };
    if (p.weight.dt == A)
      with_state(a);
    else
      with_state(Tag<GDN_DTYPE_F32>{});
  });
}

}  // namespace

void conv_update(const Device& dev, const ConvProblem& p, void* stream) {
  const int64_t C = p.d.conv_dim();
  if (p.num_seqs == 0) return;
  const gpuStream_t s = gpuStream_t(stream);
  if (vec_update_ok(p)) {
    const int cpt = vec_channels(dev, p);
    const dim3 grid(unsigned(p.num_seqs), unsigned(ceil_div(C, int64_t(kThreads) * cpt)));
    dispatch_act(p.x.dt, [&](auto a) {
      constexpr int32_t A = decltype(a)::value;
      if constexpr (A == GDN_DTYPE_BF16 || A == GDN_DTYPE_F16) {
        auto kernel = cpt == 2 ? conv_update_vec_kernel<A, 2> : cpt == 4 ? conv_update_vec_kernel<A, 4>
                                                                         : conv_update_vec_kernel<A, 8>;
        launch_pdl(dev.pdl(), kernel, grid, kThreads, 0, s, p);
      }
    });
    check_launch("conv_update_vec_kernel");
    return;
  }
  dispatch_conv(p, [&](auto a, auto w, auto st) {
    launch_pdl(dev.pdl(), conv_update_kernel<decltype(a)::value, decltype(w)::value, decltype(st)::value>,
               dim3(unsigned(p.num_seqs), ceil_div(C, kThreads)), kThreads, 0, s, p);
    check_launch("conv_update_kernel");
  });
}

void conv_prefill(const Device&, const ConvProblem& p, void* stream) {
  const int64_t C = p.d.conv_dim();
  if (p.num_seqs == 0) return;
  const int64_t T = p.tokens_per_seq;  // prefill: the total row count
  dispatch_conv(p, [&](auto a, auto w, auto s) {
    constexpr int32_t A = decltype(a)::value, WT = decltype(w)::value, ST = decltype(s)::value;
    if (T > 0) {
      launch_plain(conv_prefill_kernel<A, WT, ST>, dim3(ceil_div(T, kTokensPerThread), ceil_div(C, kThreads)), kThreads,
                   0, gpuStream_t(stream), p, T);
      check_launch("conv_prefill_kernel");
    }
    launch_plain(conv_final_state_kernel<A, ST>, dim3(unsigned(p.num_seqs), ceil_div(C, kThreads)), kThreads, 0,
                 gpuStream_t(stream), p);
    check_launch("conv_final_state_kernel");
  });
}

}  // namespace gdn::gpu
