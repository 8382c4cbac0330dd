// The whole decode step of a GDN layer in one kernel: conv update -> gated delta rule ->
// RMSNormGated (+ FP8 group quantisation), one token per sequence, V = 128.
//
// A persistent grid walks the (sequence, key head) items. An item owns the conv channels of its
// key head's q and k and of its HV/HK value heads' v, so no other block reads or writes them and
// the conv state is updated in place without a race. The item's q, k and v stay in shared memory;
// each of its value heads then runs its K x 128 state through the delta rule in two 64-column
// tiles (256 threads, the decode tile of decode_tile.hpp), and the heads' outputs are normalised
// (and quantised) by half-subgroups (norm_row.hpp). The state tiles stream through NS
// shared-memory stages (cp.async): the next tiles, of this item or of the next, load while the
// current one is computed; two blocks fit an SM, so one block's conv and norm phases overlap the
// other's streaming. Small batches on sm_90 take a cluster kernel instead (below), which spreads
// each item over G x 4 blocks.
//
// Every step uses the device functions and the summation order of the separate kernels
// (conv_math.hpp, decode_tile.hpp, norm_row.hpp) and rounds the intermediate q/k/v and core output
// to the activation dtype as they do, so the outputs, the scales and both pools equal those of
// conv_update -> decode -> norm_gated bit for bit.
#include <algorithm>

#include "conv_math.hpp"
#include "decode_tile.hpp"
#include "launch.hpp"
#include "norm_row.hpp"

namespace gdn::gpu {
namespace {

// V = 128 columns in kTiles tiles of kBV; K <= kMaxK = kRows * kRG rows; kNS state stages (up to
// kMaxNS when every block has a single item).
constexpr int kV = 128, kBV = 64, kTiles = kV / kBV, kCT = kBV / 4, kThreads = kCT * kRG, kNS = 2, kMaxNS = 4, kRows = 8;
constexpr int kMaxK = kRows * kRG;
// An item's inputs are issued NS - 1 sub-items ahead, so they land in its predecessor: within an
// item of >= kTiles sub-items, which keeps the double-buffered item inputs below race-free. More
// stages (a block's whole item in flight at once) only when each block has a single item.
static_assert(kNS - 1 < kTiles, "item inputs would be overwritten before use");

// async_wait<n>() for a run-time n < kMaxNS.
__device__ __forceinline__ void async_wait_upto(int n) {
  static_assert(kMaxNS == 4, "one case per stage count");
  switch (n) {
    case 0: async_wait<0>(); break;
    case 1: async_wait<1>(); break;
    case 2: async_wait<2>(); break;
    default: async_wait<3>(); break;
  }
}

template <int32_t DT>
__device__ __forceinline__ float round_to(float x) {
  typename Elem<DT>::T v[1];
  Elem<DT>::store(v, 0, x);
  return Elem<DT>::load(v, 0);
}

// Shared memory of one item's inputs, in activation elements, each part a multiple of 8 (16 bytes;
// K % 8 == 0): per channel (q, k of the key head, then v of its G value heads) the conv window
// [nch][W-1], weights [nch][W], bias [nch] and input x [nch]; then z [G][128].
struct ItemInputs {
  int nch, W1, W, G;
  GDN_HD int window() const { return 0; }
  GDN_HD int weights() const { return nch * W1; }
  GDN_HD int bias() const { return nch * (W1 + W); }
  GDN_HD int x() const { return nch * (W1 + W + 1); }
  GDN_HD int z() const { return nch * (W1 + W + 2); }
  GDN_HD int elems() const { return z() + G * kV; }
};

// The run-time divisors of both step kernels' index math, as multiply-and-shift (FastDiv).
struct StepDiv {
  FastDiv hk, w1, per;  // key heads HK, conv window W - 1, sub-items (cluster blocks) an item
  StepDiv(const GdnProblem& pd, int64_t per_item)
      : hk(uint32_t(pd.d.HK)), w1(uint32_t(pd.d.W - 1)), per(uint32_t(per_item)) {}
};

// elems (a multiple of 8) 2-byte elements by the block's NT threads, 16 bytes at a time.
template <int NT>
__device__ __forceinline__ void copy_async(uint16_t* dst, const void* src, int elems) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int c = threadIdx.x; c < elems / 8; c += NT) async_copy16(dst + 8 * c, s + 8 * c);
}

// Issues the copies of the conv inputs of channel runs c0[r] .. c0[r] + cnt[r] (r < 3) of
// sequence b into `buf` (laid out by `in`, runs back to back).
template <int NT>
__device__ __forceinline__ void copy_conv_inputs(const ConvProblem& pc, const ItemInputs& in, uint16_t* buf,
                                                 int64_t slot, int b, const int (&c0)[3], const int (&cnt)[3]) {
  int n0 = 0;
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    copy_async<NT>(buf + in.window() + n0 * in.W1, pc.state.at(slot, c0[r], 0), cnt[r] * in.W1);
    copy_async<NT>(buf + in.weights() + n0 * in.W, pc.weight.at(c0[r], 0), cnt[r] * in.W);
    if (pc.bias.present()) copy_async<NT>(buf + in.bias() + n0, pc.bias.at(c0[r]), cnt[r]);
    copy_async<NT>(buf + in.x() + n0, pc.x.at(b, 0, pc.d.conv_column(c0[r])), cnt[r]);
    n0 += cnt[r];
  }
}

// Channel i of an item's conv inputs in `buf` through the conv (window updated in win); the
// output rounded to the activation dtype as the separate conv writes it.
template <int32_t ACT>
__device__ __forceinline__ float conv_from_inputs(const ConvProblem& pc, const ItemInputs& in, const uint16_t* buf,
                                                  int i, float (&win)[kMaxW]) {
  float w[kMaxW];
#pragma unroll
  for (int j = 0; j < kMaxW; ++j) {
    w[j] = j < in.W ? Elem<ACT>::load(buf + in.weights(), i * in.W + j) : 0.0f;
    win[j] = j < in.W1 ? Elem<ACT>::load(buf + in.window(), i * in.W1 + j) : 0.0f;
  }
  const float bias = pc.bias.present() ? Elem<ACT>::load(buf + in.bias(), i) : 0.0f;
  return round_to<ACT>(conv_act(pc, conv_step(w, win, in.W, bias, Elem<ACT>::load(buf + in.x(), i))));
}

// The q and k scales of a token whose q and k (K each) are in sm (token_scales over NT threads,
// the decode kernel's order).
template <int NT, int BV>
__device__ __forceinline__ void qk_scales(const GdnProblem& p, TokenSmem<BV>& sm, int K, float& q_scale,
                                          float& k_scale) {
  float qq = 0.0f, kk = 0.0f;
  if (p.l2norm)
    for (int i = threadIdx.x; i < K; i += NT) {
      qq += sm.q[i] * sm.q[i];
      kk += sm.k[i] * sm.k[i];
    }
  token_scales(p, qq, kk, sm.scratch, q_scale, k_scale);
}

template <int32_t ACT, int32_t ST, int32_t OUT, bool FP8>
__global__ void __launch_bounds__(kThreads, 2) decode_step_kernel(ConvProblem pc, GdnProblem pd, NormProblem pn,
                                                                  StepDiv dv, int items, int ns) {
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  using T = typename Elem<ST>::T;
  const int K = int(pd.d.K), HK = int(pd.d.HK), G = int(pd.d.HV / pd.d.HK), W = int(pc.d.W);
  const ItemInputs in{2 * K + G * kV, W - 1, W, G};
  GDN_DYNAMIC_SMEM(unsigned char, smem_raw);
  T* stages = reinterpret_cast<T*>(smem_raw);                                    // [NS][K][kBV]
  uint16_t* inputs = reinterpret_cast<uint16_t*>(stages + ns * K * kBV);          // [2][in.elems()]
  float* v_s = reinterpret_cast<float*>(inputs + 2 * in.elems());               // [G][128]
  float* o_s = v_s + G * kV;                                                     // [G][128]
  float* gate_s = o_s + G * kV;                                                  // [G][2]
  __shared__ TokenSmem<kBV> sm;                                                  // q, k, column sums, u
  __shared__ float norm_w[kV];
  __shared__ int64_t slot_s[kMaxNS];  // state slot of each stage
  __shared__ int64_t raw_s[2];     // slot index of each item input buffer
  const int tx = threadIdx.x % kCT, ty = threadIdx.x / kCT;
  const int stride = int(gridDim.x), per_item = G * kTiles;
  if (threadIdx.x < kV) norm_w[threadIdx.x] = pn.weight.f(threadIdx.x);

  // Sub-item n of this block: column tile n % kTiles of value head (n / kTiles) % G of item
  // blockIdx.x + n / per_item * stride. Issuing an item's first sub-item also issues the item's
  // inputs; its slot index was loaded when the previous item was issued, and its gate inputs load
  // into registers of threads < G, used at its conv phase: no load waits in the issue path.
  auto slot_index = [&](int item) {
    return item < items ? load_index(pd.slot_idx.at(dv.hk.div(item), 0), pd.slot_idx.dt) : int64_t(-1);
  };
  int64_t raw = -1, raw_next = slot_index(blockIdx.x);
  GateInputs gi;  // threads < G: the gate inputs of value head threadIdx.x of the newest item
  auto issue = [&](int n, int stage) {
    const int k = int(dv.per.div(n)), item = int(blockIdx.x) + k * stride, within = n - k * per_item;
    if (item < items) {
      const int b = int(dv.hk.div(item)), hk = item - b * HK;
      if (within == 0) {
        raw = raw_next;
        raw_next = slot_index(item + stride);
        if (threadIdx.x == 0) raw_s[k & 1] = raw;
        uint16_t* buf = inputs + (k & 1) * in.elems();
        if (raw >= 0 && raw < pc.state.num_slots) {
          const int c0[3] = {hk * K, HK * K + hk * K, 2 * HK * K + hk * G * kV}, cnt[3] = {K, K, G * kV};
          copy_conv_inputs<kThreads>(pc, in, buf, raw, b, c0, cnt);
        }
        for (int g = 0; g < G; ++g) copy_async<kThreads>(buf + in.z() + g * kV, pn.z.at(b, 0, hk * G + g), kV);
        if (int(threadIdx.x) < G) gi.load(pd, b, 0, hk * G + int(threadIdx.x));
      }
      const int h = hk * G + within / kTiles, tile = within % kTiles;
      const int64_t slot = raw >= 0 && raw < pd.state.num_slots ? raw : -1;
      if (threadIdx.x == 0) slot_s[stage] = slot;
      if (slot >= 0) stage_state_tile<ST, kBV, kThreads>(stages + int64_t(stage) * K * kBV, pd, slot, h, tile * kBV, K);
    }
    async_commit();
  };

  for (int n = 0; n < ns - 1; ++n) issue(n, n);
  float q_scale = pd.scale, k_scale = 1.0f;
  int stage = 0;
  for (int n = 0;; ++n) {
    const int k = int(dv.per.div(n)), item = int(blockIdx.x) + k * stride, within = n - k * per_item;
    if (item >= items) break;
    const int g = within / kTiles, tile = within % kTiles, col0 = g * kV + tile * kBV;
    const int b = int(dv.hk.div(item)), hk = item - b * HK, h = hk * G + g;
    const uint16_t* buf = inputs + (k & 1) * in.elems();
    issue(n + ns - 1, (stage + ns - 1) % ns);
    async_wait_upto(ns - 1);
    __syncthreads();

    if (within == 0) {
      // Conv update of the item's channels (q, k of key head hk; v of its G value heads) into
      // shared memory, rounded to the activation dtype as the separate conv writes them.
      const int64_t cslot = raw_s[k & 1];
      const bool conv_ok = cslot >= 0 && cslot < pc.state.num_slots;
      for (int i = threadIdx.x; i < in.nch; i += kThreads) {
        float y = 0.0f;
        if (conv_ok) {
          float win[kMaxW];
          y = conv_from_inputs<ACT>(pc, in, buf, i, win);
          const int c = i < K       ? hk * K + i                           // q
                            : i < 2 * K ? HK * K + hk * K + (i - K)                // k
                                        : 2 * HK * K + hk * G * kV + (i - 2 * K);  // v
#pragma unroll
          for (int j = 0; j < kMaxW - 1; ++j)
            if (j < W - 1) Elem<ACT>::store(pc.state.at(cslot, c, 0), j, win[j]);
        }
        (i < K ? sm.q[i] : i < 2 * K ? sm.k[i - K] : v_s[i - 2 * K]) = y;
      }
      if (int(threadIdx.x) < G) {  // the gates of the item's value heads
        gate_s[2 * threadIdx.x] = gi.decay(pd);
        gate_s[2 * threadIdx.x + 1] = gi.beta(pd);
      }
      __syncthreads();
      qk_scales<kThreads>(pd, sm, K, q_scale, k_scale);
    }

    const int64_t read_slot = slot_s[stage];
    if (read_slot < 0) {  // PAD / out of range: a zero core output, no state
      if (threadIdx.x < kBV) o_s[col0 + threadIdx.x] = 0.0f;
    } else {
      const T* src = stages + int64_t(stage) * K * kBV;
      float s[kRows][4];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int i = ty + r * kRG;
        if (i < K)
          Vec4<ST>::load(src + i * kBV, tx * 4, s[r]);
        else
          s[r][0] = s[r][1] = s[r][2] = s[r][3] = 0.0f;
      }
      const float vj = threadIdx.x < kBV ? v_s[col0 + threadIdx.x] : 0.0f;
      const float acc = delta_rule_token<kRows, kBV>(s, sm.red, sm.u, sm.q, sm.k, K, q_scale, k_scale,
                                                     gate_s[2 * g], gate_s[2 * g + 1], vj, tx, ty);
      if (threadIdx.x < kBV) o_s[col0 + threadIdx.x] = round_to<ACT>(acc);
      StateIO<ST>::template store_tile<kRows>(pd, read_slot, h, ty, tile * kBV + tx * 4, true, s);
    }
    __syncthreads();  // o_s complete; red, u and this stage free again

    if (within == per_item - 1) {
      // RMSNormGated (+ FP8) of the item's G heads: half-subgroup j takes head j (the shuffles
      // need whole subgroups; a half past the last head computes on zeros and stores nothing).
      const int lane = threadIdx.x % 16, half = threadIdx.x / 16;
      if (int(threadIdx.x) / 32 * 2 < G) {
        const bool mine = half < G;
        float xs[1][8], zs[1][8], w[1][8];
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const int j = lane * 8 + e;
          xs[0][e] = mine ? o_s[half * kV + j] : 0.0f;
          zs[0][e] = mine ? Elem<ACT>::load(buf + in.z(), half * kV + j) : 0.0f;
          w[0][e] = norm_w[j];
        }
        const uint32_t hh = uint32_t(hk * G + half);
        norm_row16<OUT, FP8, 1>(pn, xs, zs, w, FP8 ? fp8_max(OUT) : 0.0f, lane, uint32_t(b), hh,
                                mine ? pn.out.at(b, 0, hh) : nullptr);
      }
    }
    stage = (stage + 1) % ns;
  }
  async_wait<0>();
}

#if defined(GDN_HAVE_CLUSTERS)
// Small batches (sm_90): one cluster of G * kCTiles blocks per item, a block per (value head,
// 32-column tile) -- the decode kernel's tile -- so a few sequences still spread over the SMs.
// Every block convolves the item's q and k channels (and its own 32 v channels) itself; block 0
// writes the q/k conv windows back only after the cluster barrier, when every block has read
// them. The norm needs a head's 128 outputs: after the barrier each block's first half-subgroup
// reads them from the head's 4 tile blocks' shared memory and stores its own tile's columns.
constexpr int kCBV = 32, kCTiles = kV / kCBV, kCThreads = kCBV / 4 * kRG, kMaxCluster = 8;

template <int32_t ACT, int32_t ST, int32_t OUT, bool FP8>
__global__ void __launch_bounds__(kCThreads) decode_step_cluster_kernel(ConvProblem pc, GdnProblem pd,
                                                                        NormProblem pn, StepDiv dv) {
#if defined(GDN_DEVICE_CLUSTERS)
  pdl_wait();  // launched with launch_cluster(pdl): inputs may come from the previous kernel
  using A = typename Elem<ACT>::T;
  const int K = int(pd.d.K), HK = int(pd.d.HK), G = int(pd.d.HV / pd.d.HK), W = int(pc.d.W);
  const int cs = G * kCTiles, item = int(dv.per.div(blockIdx.x)), rank = int(blockIdx.x) - item * cs;
  const int b = int(dv.hk.div(item)), hk = item - b * HK, g = rank / kCTiles, tile = rank % kCTiles, h = hk * G + g;
  const int tx = threadIdx.x % (kCBV / 4), ty = threadIdx.x / (kCBV / 4);
  __shared__ TokenSmem<kCBV> sm;
  __shared__ float v_s[kCBV], o_s[kCBV];
  __shared__ A qk_win[2 * kMaxK * (kMaxW - 1)];  // block 0: new q/k windows [2K][W-1]
  const ItemInputs in{2 * K + kCBV, W - 1, W, 0};  // conv inputs of q, k and this tile's v
  __shared__ __align__(16) A inputs[(2 * kMaxK + kCBV) * (2 * kMaxW + 1)];

  // Every load up front: slot, conv inputs (background copies), state tile, gate inputs, this
  // lane's z and norm weights.
  const int64_t raw = load_index(pd.slot_idx.at(b, 0), pd.slot_idx.dt);
  const bool conv_ok = raw >= 0 && raw < pc.state.num_slots;
  if (conv_ok) {
    const int c0[3] = {hk * K, HK * K + hk * K, 2 * HK * K + h * kV + tile * kCBV}, cnt[3] = {K, K, kCBV};
    copy_conv_inputs<kCThreads>(pc, in, inputs, raw, b, c0, cnt);
  }
  async_commit();
  const int64_t slot = raw >= 0 && raw < pd.state.num_slots ? raw : -1;
  float s[kRows][4];
  StateIO<ST>::template load_tile<kRows>(pd, slot, h, ty, tile * kCBV + tx * 4, true, s);
  GateInputs gi;
  if (threadIdx.x == 0) gi.load(pd, b, 0, h);
  const int lane = threadIdx.x % 16;
  float zs[1][8], w[1][8];
  if (threadIdx.x < 16) {
#pragma unroll
    for (int q = 0; q < 8; q += 4) {
      float zz[4];
      Vec4<ACT>::load(pn.z.at(b, 0, h), lane * 8 + q, zz);
#pragma unroll
      for (int e = 0; e < 4; ++e) zs[0][q + e] = zz[e], w[0][q + e] = pn.weight.f(lane * 8 + q + e);
    }
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) zs[0][e] = w[0][e] = 0.0f;
  }

  async_wait<0>();
  __syncthreads();
  for (int i = threadIdx.x; i < in.nch; i += kCThreads) {
    float y = 0.0f;
    if (conv_ok) {
      float win[kMaxW];
      y = conv_from_inputs<ACT>(pc, in, inputs, i, win);
      const int c = 2 * HK * K + h * kV + tile * kCBV + (i - 2 * K);  // v channel (i >= 2K)
#pragma unroll
      for (int j = 0; j < kMaxW - 1; ++j) {
        if (j >= W - 1) continue;
        if (i >= 2 * K)
          Elem<ACT>::store(pc.state.at(raw, c, 0), j * pc.state.s_w, win[j]);
        else if (rank == 0)
          Elem<ACT>::store(qk_win, i * (W - 1) + j, win[j]);
      }
    }
    (i < K ? sm.q[i] : i < 2 * K ? sm.k[i - K] : v_s[i - 2 * K]) = y;
  }
  if (threadIdx.x == 0) {
    sm.gate[0] = gi.decay(pd);
    sm.gate[1] = gi.beta(pd);
  }
  __syncthreads();
  float q_scale, k_scale;
  qk_scales<kCThreads>(pd, sm, K, q_scale, k_scale);
  if (slot >= 0) {
    const float vj = threadIdx.x < kCBV ? v_s[threadIdx.x] : 0.0f;
    const float acc = delta_rule_token<kRows, kCBV>(s, sm.red, sm.u, sm.q, sm.k, K, q_scale, k_scale, sm.gate[0],
                                                    sm.gate[1], vj, tx, ty);
    if (threadIdx.x < kCBV) o_s[threadIdx.x] = round_to<ACT>(acc);
  } else if (threadIdx.x < kCBV) {
    o_s[threadIdx.x] = 0.0f;  // PAD / out of range: a zero core output, no state
  }
  cluster_sync();  // every block's outputs are visible and every block has read the conv windows
  // The state tile after the barrier: its release would otherwise wait for these stores to land.
  if (slot >= 0) StateIO<ST>::template store_tile<kRows>(pd, slot, h, ty, tile * kCBV + tx * 4, true, s);

  if (rank == 0 && conv_ok)
    for (int i = threadIdx.x; i < 2 * K * (W - 1); i += kCThreads) {
      const int ch = int(dv.w1.div(i)), j = i - ch * (W - 1);
      const int c = ch < K ? hk * K + ch : HK * K + hk * K + (ch - K);
      Elem<ACT>::store(pc.state.at(raw, c, 0), j * pc.state.s_w, Elem<ACT>::load(qk_win, i));
    }
  if (threadIdx.x < 32) {  // the head's norm: lanes 0..15 (16..31 compute on zeros, store nothing)
    const bool mine = threadIdx.x < 16;
    const float* peer = cluster_peer(o_s, unsigned(g * kCTiles + lane * 8 / kCBV));
    float xs[1][8];
#pragma unroll
    for (int e = 0; e < 8; ++e) xs[0][e] = mine ? peer[lane * 8 % kCBV + e] : 0.0f;
    char* out = mine && lane * 8 / kCBV == tile ? pn.out.at(b, 0, h) : nullptr;
    norm_row16<OUT, FP8, 1>(pn, xs, zs, w, FP8 ? fp8_max(OUT) : 0.0f, lane, uint32_t(b), uint32_t(h), out);
  }
  cluster_sync_relaxed();  // no block leaves while another still reads its outputs
#endif
}
#endif

// The persistent kernel's static shared memory (TokenSmem, norm weights, slots), with slack.
constexpr size_t kStaticSmem = sizeof(TokenSmem<kBV>) + kV * 4 + 128;

size_t smem_bytes(const GdnProblem& pd, int ns) {
  const int K = int(pd.d.K), G = int(pd.d.HV / pd.d.HK), W = int(pd.d.W);
  const ItemInputs in{2 * K + G * kV, W - 1, W, G};
  return size_t(ns * K * kBV * dtype_bytes(pd.state.dt) + 2 * in.elems() * 2 + (G * (2 * kV + 2)) * 4);
}

template <int32_t ACT, int32_t ST, int32_t OUT, bool FP8>
void launch(const Device& dev, const ConvProblem& pc, const GdnProblem& pd, const NormProblem& pn, gpuStream_t stream) {
#if defined(GDN_HAVE_CLUSTERS)
  const int64_t G = pd.d.HV / pd.d.HK;
  // Few items (at most two blocks of clusters per SM): a cluster per item spreads each over
  // G * kCTiles blocks. Beyond that the q/k conv every block repeats costs more than it saves.
  if (dev.arch >= 90 && G * kCTiles <= kMaxCluster && pd.num_seqs * pd.d.HK * G * kCTiles <= 2 * dev.sm_count) {
    const unsigned cs = unsigned(G * kCTiles);
    launch_cluster(dev.pdl(), cs, decode_step_cluster_kernel<ACT, ST, OUT, FP8>, unsigned(pd.num_seqs * pd.d.HK) * cs,
                   kCThreads, 0, stream, pc, pd, pn, StepDiv(pd, cs));
    check_launch("decode_step_cluster_kernel");
    return;
  }
#endif
  auto kernel = decode_step_kernel<ACT, ST, OUT, FP8>;
  const int64_t items = pd.num_seqs * pd.d.HK, per_item = pd.d.HV / pd.d.HK * kTiles;
  // No more items than SMs: grid == items, one item per block, all its state tiles loading at once
  // (a single item never reuses the item input buffers, so more than kTiles stages are safe).
  int ns = kNS;
  if (items <= dev.sm_count && smem_bytes(pd, kMaxNS) + kStaticSmem <= dev.max_smem_optin)
    ns = int(std::min<int64_t>(kMaxNS, std::max<int64_t>(per_item, kNS)));
  const size_t smem = smem_bytes(pd, ns);
  check(gpuFuncSetAttribute(kernel, gpuFuncAttributeMaxDynamicSharedMemorySize, int(smem)), "decode step smem");
  int per_sm = 0;
  check(gpuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem), "decode step occupancy");
  const unsigned grid = unsigned(std::min<int64_t>(items, int64_t(std::max(per_sm, 1)) * dev.sm_count));
  launch_pdl(dev.pdl(), kernel, grid, kThreads, smem, stream, pc, pd, pn, StepDiv(pd, per_item), int(items), ns);
  check_launch("decode_step_kernel");
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
  // The shapes and dtypes the fused kernel takes; the caller runs the three kernels otherwise.
  if (d.V != kV || d.K > kMaxK || d.HV % d.HK != 0 || d.HV / d.HK > kThreads / 16 || d.W > kMaxW) return false;
  if (act != GDN_DTYPE_BF16 && act != GDN_DTYPE_F16) return false;
  if (pc.weight.dt != act || pc.state.dt != act || pc.x.dt != act) return false;
  if (pd.tokens_per_seq != 1 || pd.per_token_slots || !pd.raw_gate || pd.num_seqs * d.HK >= (int64_t(1) << 30))
    return false;
  if (!norm_rows_fast_path(pn, fp8)) return false;  // the norm the separate op would run
  const int64_t n = 16 / dtype_bytes(pd.state.dt);  // 16-byte cp.async of state rows
  if (reinterpret_cast<uintptr_t>(pd.state.p) % 16 || pd.state.s_k % n || pd.state.s_h % n || pd.state.s_slot % n)
    return false;
  // The item inputs' 16-byte copies: contiguous conv windows, weights and bias, 8-element aligned
  // channel runs (K % 8 == 0) and rows.
  auto a16 = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  if (d.K % 8 || pc.state.s_w != 1 || pc.state.s_c != d.W - 1 || pc.state.s_slot % 8 || !a16(pc.state.p)) return false;
  if (pc.weight.s_col != 1 || pc.weight.s_row != d.W || !a16(pc.weight.p)) return false;
  if (pc.bias.present() && (pc.bias.dt != act || pc.bias.s != 1 || !a16(pc.bias.p))) return false;
  if (!a16(pc.x.p) || pc.x.s_seq % 8 || !head_rows_aligned(pn.z, 8)) return false;
  if (smem_bytes(pd, kNS) + kStaticSmem > dev.max_smem_optin) return false;
  if (pd.num_seqs == 0) return true;
  const gpuStream_t s = gpuStream_t(stream);
  if (act == GDN_DTYPE_BF16) {
    dispatch_state(pd.state.dt, [&](auto st) { dispatch_out<GDN_DTYPE_BF16, decltype(st)::value>(dev, pc, pd, pn, fp8, s); });
  } else {
    dispatch_state(pd.state.dt, [&](auto st) { dispatch_out<GDN_DTYPE_F16, decltype(st)::value>(dev, pc, pd, pn, fp8, s); });
  }
  return true;
}

}  // namespace gdn::gpu
