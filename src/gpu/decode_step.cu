// The whole decode step of a GDN layer fused: conv update -> gated delta rule -> RMSNormGated
// (+ FP8 group quantisation), one token per sequence, V = 128, on sm_90 at small batches.
//
// A block of 512 threads per (sequence, value head) holds the head's K x 128 state in registers
// (each thread 4 columns x K / 16 rows: the decode tile's layout, decode_tile.hpp, so its sums run
// in the decode kernels' order); no staging, no persistent loop. The G = HV / HK value heads of a
// key head form a cluster. The head's v channels belong to its block alone; the key head's q and
// k channels are split over the cluster so that each is convolved, and its window written back, by
// exactly one block (no race on the conv state in place), and the parts meet through distributed
// shared memory after one cluster barrier. The whole head's output is in the block, so the norm
// (norm_row.hpp) needs no exchange. Every step uses the device functions and the summation order
// of the separate kernels (conv_math.hpp, decode_tile.hpp, norm_row.hpp) and rounds the
// intermediate q/k/v and core output to the activation dtype as they do, so the outputs, the
// scales and both pools equal those of conv_update -> decode -> norm_gated bit for bit.
//
// Where it runs (H100, graph replays, docs/perf-notes.md, sessions 9, 13 and 14): where its
// blocks take one SM each and cover more than half of the SMs -- B = 3, 4 at HV = 32, where it
// beats the three kernels (10.9 / 12.6 us against 11.6 / 13.3); at B = 2 (64 blocks: 10.1 vs 9.5),
// at B = 1 and past one block an SM (B = 6 / 8: 16.2 / 19.4 vs 15.5 / 18.5) the three kernels are
// faster since the conv kernel takes 2 channels a thread at small batches (session 14), and
// decode_step returns false, so the caller runs them.
// Tried there and measured slower than the three kernels at every batch: a persistent kernel of
// (sequence, key head) items streaming 64-column tiles through shared memory (B = 32 65.2 us),
// clusters of the 8 tile blocks of a key head (78.1; in session 13 with each block convolving its
// key head's q / k itself: B = 1 8.8-9.6 us, B = 8 24-27), a decode tile with the norm in
// clusters of a head's 4 tile blocks (68.4; at B = 1 behind the conv kernel 8.7 against 8.4),
// and the same with the norm done by the head's last tile block to take a ticket from an atomic
// counter (+5-11 %, on an H200): each kept blocks resident longer or coupled their schedules.
#include "conv_math.hpp"
#include "decode_tile.hpp"
#include "launch.hpp"
#include "norm_row.hpp"

namespace gdn::gpu {
namespace {

constexpr int kV = 128, kMaxCluster = 8;

template <int32_t DT>
__device__ __forceinline__ float round_to(float x) {
  typename Elem<DT>::T v[1];
  Elem<DT>::store(v, 0, x);
  return Elem<DT>::load(v, 0);
}

// The run-time divisors of the kernel's index math, as multiply-and-shift (FastDiv).
struct StepDiv {
  FastDiv hv, group;  // value heads HV, value heads a key head G
  explicit StepDiv(const GdnProblem& pd) : hv(uint32_t(pd.d.HV)), group(uint32_t(pd.d.HV / pd.d.HK)) {}
};

#if defined(GDN_HAVE_CLUSTERS)
constexpr int kHThreads = kV / 4 * kRG;  // 4 columns x K / kRG rows a thread

// Two blocks an SM (64 registers; a few words spill): one block an SM measured 12-23 % slower.
template <int32_t ACT, int32_t ST, int32_t OUT, bool FP8, int ROWS>
__global__ void __launch_bounds__(kHThreads, 2) decode_step_head_kernel(ConvProblem pc, GdnProblem pd, NormProblem pn,
                                                                        StepDiv dv) {
#if defined(GDN_DEVICE_CLUSTERS)
  pdl_wait();  // launched with launch_cluster(pdl): inputs may come from the previous kernel
  constexpr int K = ROWS * kRG, kHCT = kV / 4;
  static_assert(K <= kHThreads, "one q/k element a thread");
  const int HK = int(pd.d.HK), G = int(pd.d.HV / pd.d.HK), W = int(pc.d.W);
  const int b = int(dv.hv.div(blockIdx.x)), h = int(blockIdx.x) - b * int(pd.d.HV);
  const int hk = int(dv.group.div(h)), g = h - hk * G;
  const int t = int(threadIdx.x), tx = t % kHCT, ty = t / kHCT;
  const int nq = K / G, nq_shift = __ffs(nq) - 1;  // q (and k) channels a block: a power of two
  __shared__ TokenSmem<kV> sm;
  // This block's q, then k channels; the head's core output, z and norm weights.
  __shared__ float qk_own[2 * K], o_s[kV], z_s[kV], nw_s[kV];

  // Slot-independent loads first: this thread's conv channel (threads < 128: the head's v
  // channels; the next 2 nq: q, then k channels) -- weights, bias, input --, the gate inputs, z
  // and the norm weights (parked in shared memory while the slot index loads).
  int64_t c = -1;
  if (t < kV) {
    c = 2 * int64_t(HK) * K + int64_t(h) * kV + t;
  } else if (t < kV + 2 * nq) {
    const int j = t - kV;
    c = (j < nq ? 0 : int64_t(HK) * K) + int64_t(hk) * K + g * nq + (j < nq ? j : j - nq);
  }
  // All raw (load_raw / load_bits), converted once the slot's loads are issued: a conversion in
  // the conditional code of its load would make the thread wait for it there.
  using A = typename Elem<ACT>::T;
  A w_raw[kMaxW] = {}, bias_raw = 0, x_raw = 0, z_raw = 0;
  uint32_t nw_bits = 0;
  if (c >= 0) {
    load_weights_raw<ACT>(pc, c, W, w_raw);
    if (pc.bias.present()) bias_raw = load_raw<ACT>(pc.bias.at(c), 0);
    x_raw = load_raw<ACT>(pc.x.at(b, 0, 0), pc.d.conv_column(c));
  }
  GateInputs gi;
  if (t == 0) gi.load(pd, b, 0, h);
  if (t < kV) z_raw = load_raw<ACT>(pn.z.at(b, 0, h), t), nw_bits = pn.weight.bits(t);

  // The slot, then the window and the state tile.
  const int64_t raw = load_index(pd.slot_idx.at(b, 0), pd.slot_idx.dt);
  float w[kMaxW], win[kMaxW];
  to_weights<ACT>(w_raw, w);
  const float bias = raw_to_float<ACT>(bias_raw), x = raw_to_float<ACT>(x_raw);
  const bool conv_ok = raw >= 0 && raw < pc.state.num_slots;
  const int64_t slot = raw >= 0 && raw < pd.state.num_slots ? raw : -1;
  const bool convolve = c >= 0 && conv_ok;
  load_window<ACT>(convolve ? pc.state.at(raw, c, 0) : nullptr, pc.state.s_w, convolve ? W : 1, win);
  float s[ROWS][4];
  const int j0 = tx * 4;

  // This block's conv channels, rounded to the activation dtype as the separate conv writes them.
  const float y = convolve ? round_to<ACT>(conv_act(pc, conv_step(w, win, W, bias, x))) : 0.0f;
  if (t >= kV && t < kV + 2 * nq) qk_own[t - kV] = y;
  if (t < kV) z_s[t] = raw_to_float<ACT>(z_raw), nw_s[t] = bits_to_float(nw_bits, pn.weight.dt);
  if (t == 0) {
    sm.gate[0] = gi.decay(pd);
    sm.gate[1] = gi.beta(pd);
  }
  // Every block's q / k channels visible, the state tile issued between arrive and wait: the
  // arrive's release waits for this thread's outstanding loads (a MEMBAR), so it goes first
  // (measured 3.5 % faster at B = 32 than issuing the state loads before it).
  if (G > 1) cluster_arrive();
  if (slot >= 0) StateIO<ST>::load_rows(pd, slot, h, ty, j0, s);
  if (G > 1) cluster_wait();
  else __syncthreads();

  // q and k of the key head from the cluster (element t from block t / nq), their scales.
  const bool has_qk = t < K;
  const float* src = cluster_peer(qk_own, has_qk ? unsigned(t >> nq_shift) : 0u);
  const float qi = has_qk ? src[t & (nq - 1)] : 0.0f, ki = has_qk ? src[nq + (t & (nq - 1))] : 0.0f;
  if (G > 1) cluster_arrive_relaxed();  // done reading the peers' shared memory
  if (has_qk) sm.q[t] = qi, sm.k[t] = ki;
  float q_scale, k_scale;
  token_scales(pd, qi * qi, ki * ki, sm.scratch, q_scale, k_scale);
  if (slot >= 0) {
    const float acc = delta_rule_token<ROWS, kV>(s, sm.red, sm.u, sm.q, sm.k, K, q_scale, k_scale, sm.gate[0],
                                                   sm.gate[1], y, tx, ty);
    if (t < kV) o_s[t] = round_to<ACT>(acc);
  } else if (t < kV) {
    o_s[t] = 0.0f;  // PAD / out of range: a zero core output, no state
  }
  __syncthreads();  // o_s complete

  if (t < 32) {  // the head's norm: lanes 0..15 (16..31 compute on zeros, store nothing)
    const int lane = t % 16;
    const bool mine = t < 16;
    float xs[1][8], zs[1][8], nw[1][8];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int j = lane * 8 + e;
      xs[0][e] = mine ? o_s[j] : 0.0f, zs[0][e] = mine ? z_s[j] : 0.0f, nw[0][e] = mine ? nw_s[j] : 0.0f;
    }
    const int gs = int(pn.group);
    float* scales = FP8 && mine ? reinterpret_cast<float*>(pn.scales.at(b, h * pn.d.V / gs)) : nullptr;
    norm_row16<OUT, FP8, 1>(xs, zs, nw, pn.eps, FP8 ? fp8_max(OUT) : 0.0f, gs, lane, scales, pn.scales.s_col,
                            mine ? pn.out.at(b, 0, h) : nullptr);
  }
  if (slot >= 0) StateIO<ST>::store_rows(pd, slot, h, ty, j0, s);
  if (convolve)
#pragma unroll
    for (int j = 0; j < kMaxW - 1; ++j)
      if (j < W - 1) Elem<ACT>::store(pc.state.at(raw, c, 0), j * pc.state.s_w, win[j]);
  if (G > 1) cluster_wait();  // no block leaves while another still reads its q / k channels (the
                              // relaxed arrive above)
#endif
}

#endif

// K = 64 or 128, G <= 8 with K / G a power of two, 4-element aligned state rows, sm_90.
bool head_kernel_fits(const Device& dev, const GdnProblem& pd) {
#if !defined(GDN_HAVE_CLUSTERS)
  return false;  // no clusters on the AMD paths (and Device::arch counts differently there)
#endif
  const int64_t K = pd.d.K, G = pd.d.HV / pd.d.HK;
  if (dev.arch < 90 || (K != 4 * kRG && K != 8 * kRG) || G > kMaxCluster || K % G || ((K / G) & (K / G - 1)))
    return false;
  return state_rows_aligned(pd.state, 4);
}

template <int32_t ACT, int32_t ST, int32_t OUT, bool FP8>
void launch(const Device& dev, const ConvProblem& pc, const GdnProblem& pd, const NormProblem& pn, gpuStream_t stream) {
#if defined(GDN_HAVE_CLUSTERS)
  const unsigned cs = unsigned(pd.d.HV / pd.d.HK), grid = unsigned(pd.num_seqs * pd.d.HV);
  if (pd.d.K == 4 * kRG)
    launch_cluster(dev.pdl(), cs, decode_step_head_kernel<ACT, ST, OUT, FP8, 4>, grid, kHThreads, 0, stream, pc, pd, pn,
                   StepDiv(pd));
  else
    launch_cluster(dev.pdl(), cs, decode_step_head_kernel<ACT, ST, OUT, FP8, 8>, grid, kHThreads, 0, stream, pc, pd, pn,
                   StepDiv(pd));
  check_launch("decode_step_head_kernel");
#else
  (void)dev, (void)pc, (void)pd, (void)pn, (void)stream;
#endif
}

template <int32_t ACT, int32_t ST>
void dispatch_out(const Device& dev, const ConvProblem& pc, const GdnProblem& pd, const NormProblem& pn, bool fp8,
                  gpuStream_t s) {
  if (fp8) {
    if (pn.out.dt == GDN_DTYPE_F8_E4M3FN)
      launch<ACT, ST, GDN_DTYPE_F8_E4M3FN, true>(dev, pc, pd, pn, s);
    else
      launch<ACT, ST, GDN_DTYPE_F8_E4M3FNUZ, true>(dev, pc, pd, pn, s);
  } else {
    dispatch_act(pn.out.dt, [&](auto o) { launch<ACT, ST, decltype(o)::value, false>(dev, pc, pd, pn, s); });
  }
}

}  // namespace

bool decode_step(const Device& dev, const ConvProblem& pc, const GdnProblem& pd, const NormProblem& pn, bool fp8,
                 void* stream) {
  const LayerDims& d = pd.d;
  const int32_t act = pd.q.dt;
  // The shapes, dtypes and batches the fused kernel takes; the caller runs the three kernels
  // otherwise. One block a (sequence, value head), one an SM, more than half of the SMs busy (the
  // head comment has the measurements).
  if (d.V != kV || d.HV % d.HK != 0 || d.W > kMaxW || !head_kernel_fits(dev, pd)) return false;
  const int64_t blocks = pd.num_seqs * d.HV;
  if (blocks > int64_t(dev.sm_count) || 2 * blocks <= int64_t(dev.sm_count)) return false;
  if (act != GDN_DTYPE_BF16 && act != GDN_DTYPE_F16) return false;
  if (pc.weight.dt != act || pc.state.dt != act || pc.x.dt != act || (pc.bias.present() && pc.bias.dt != act))
    return false;
  if (pd.tokens_per_seq != 1 || pd.per_token_slots || !pd.raw_gate) return false;
  if (!norm_rows_fast_path(pn, fp8)) return false;  // the norm the separate op would run
  const gpuStream_t s = gpuStream_t(stream);
  if (act == GDN_DTYPE_BF16) {
    dispatch_state(pd.state.dt, [&](auto st) { dispatch_out<GDN_DTYPE_BF16, decltype(st)::value>(dev, pc, pd, pn, fp8, s); });
  } else {
    dispatch_state(pd.state.dt, [&](auto st) { dispatch_out<GDN_DTYPE_F16, decltype(st)::value>(dev, pc, pd, pn, fp8, s); });
  }
  return true;
}

}  // namespace gdn::gpu
