// Recurrent gated delta rule on the GPU. One block per (sequence, value head, tile of BV state
// columns); the K x BV state tile stays in registers across the Tn tokens of the call, so the
// state is read once and written once (the tile and its token update: decode_tile.hpp). The
// common case (one token a sequence, K = 64 or 128) runs decode_token_kernel, one block per
// 32-column tile, at every batch size; otherwise large batches go through a persistent streaming
// kernel (decode_stream_kernel) and small ones through decode_kernel (speculative tokens,
// per-token slots, other K, unaligned state).
#include <algorithm>
#include <type_traits>

#include "decode_tile.hpp"
#include "launch.hpp"

namespace gdn::gpu {
namespace {

// The Tn tokens of sequence b on the state tile (rows ty + r * kRG, columns j0 .. j0 + 3) held in
// s; writes the outputs and the updated state. PRE (one token): its q, k and the tile's v are
// already in shared memory (`in`: q [K], k [K], v [BV], activation dtype), its decay and beta in
// `gate`.
template <int32_t ACT, int32_t ST, int ROWS, int BV, bool PRE = false>
__device__ __forceinline__ void run_tokens(const GdnProblem& p, const ItemDiv& dv, TokenSmem<BV>& sm,
                                           float (&s)[ROWS][4], int64_t b, int64_t h, int64_t tile,
                                           int64_t read_slot, bool vec, const void* in = nullptr,
                                           const float* gate = nullptr) {
  constexpr int kCT = BV / 4, kThreads = kCT * kRG, kBV = BV;
  const int64_t K = p.d.K, V = p.d.V, Tn = p.tokens_per_seq;
  const int64_t hk = dv.key_head(h);
  const int tx = threadIdx.x % kCT, ty = threadIdx.x / kCT;
  const int64_t j0 = tile * kBV + tx * 4;
  if (read_slot < 0) {  // PAD / out of range: zero outputs, no state (uniform over the block)
    if (ty == 0)
      for (int64_t t = 0; t < Tn; ++t)
        for (int c = 0; c < 4; ++c)
          if (j0 + c < V) Elem<ACT>::store(p.out.at(b, t, h), j0 + c, 0.0f);
    __syncthreads();  // like the token loop's last barrier: shared memory may be reused after this
    return;
  }
  for (int64_t t = 0; t < Tn; ++t) {
    // q, k of this token into shared memory; their norms.
    float qq = 0.0f, kk = 0.0f;
    const void *qrow = PRE ? in : p.q.at(b, t, hk), *krow = PRE ? in : p.k.at(b, t, hk);
    const int koff = PRE ? int(K) : 0;
    for (int i = threadIdx.x; i < int(K); i += kThreads) {
      const float qi = Elem<ACT>::load(qrow, i), ki = Elem<ACT>::load(krow, koff + i);
      sm.q[i] = qi;
      sm.k[i] = ki;
      qq += qi * qi;
      kk += ki * ki;
    }
    // This thread's v column, loaded before the reductions so its latency overlaps them.
    const int64_t jv = tile * kBV + threadIdx.x;
    float vj = 0.0f;
    if (threadIdx.x < kBV && jv < V)
      vj = PRE ? Elem<ACT>::load(in, 2 * K + threadIdx.x) : Elem<ACT>::load(p.v.at(b, t, h), jv);
    if (!PRE && threadIdx.x == 0) {  // the gate once per block, published by the barrier below
      GateInputs gi;
      gi.load(p, b, t, h);
      sm.gate[0] = gi.decay(p);
      sm.gate[1] = gi.beta(p);
    }
    float q_scale, k_scale;
    token_scales(p, qq, kk, sm.scratch, q_scale, k_scale);
    const float decay = PRE ? gate[0] : sm.gate[0], beta = PRE ? gate[1] : sm.gate[1];

    const float acc = delta_rule_token<ROWS, BV>(s, sm.red, sm.u, sm.q, sm.k, K, q_scale, k_scale, decay, beta, vj,
                                                 tx, ty);
    if (threadIdx.x < kBV) {
      const int64_t j = tile * kBV + threadIdx.x;
      if (j < V) Elem<ACT>::store(p.out.at(b, t, h), j, acc);
    }
    if (p.per_token_slots) {
      const int64_t ws = load_index(p.slot_idx.at(b, t), p.slot_idx.dt);
      if (ws >= 0 && ws < p.state.num_slots) StateIO<ST>::store_tile(p, ws, h, ty, j0, vec, s);
    }
    __syncthreads();  // q_s, k_s, red and u_s are reused by the next token
  }
  if (!p.per_token_slots) StateIO<ST>::store_tile(p, read_slot, h, ty, j0, vec, s);
}

template <int32_t ACT, int32_t ST, int ROWS, int BV>
__global__ void __launch_bounds__(BV / 4 * kRG) decode_kernel(GdnProblem p, ItemDiv dv, bool vec) {
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  constexpr int kCT = BV / 4;
  __shared__ TokenSmem<BV> sm;
  int64_t b, h, tile;
  dv.item(blockIdx.x, b, h, tile);
  const int tx = threadIdx.x % kCT, ty = threadIdx.x / kCT;
  const int64_t j0 = tile * BV + tx * 4;
  const int64_t read_slot = read_slot_of(p, b);
  float s[ROWS][4];
  StateIO<ST>::load_tile(p, read_slot, h, ty, j0, vec, s);
  run_tokens<ACT, ST, ROWS, BV>(p, dv, sm, s, b, h, tile, read_slot, vec);
}

// How decode_token_kernel's state tile reaches its registers: loaded straight into them
// (kLoadRegs), or by the thread's own 16- or 8-byte cp.async copies into shared memory, read back
// after the token's scales (kLoadAsync: the copies hold no registers while in flight). The same
// values reach the same registers either way, so the results are the same bit for bit.
enum : int { kLoadRegs, kLoadAsync };

// The common case, lean: one token a sequence, one slot per sequence, K = ROWS * kRG
// exactly (64 or 128: no row masks, one q/k element a thread), whole 32-column tiles, 4-element
// aligned state rows (vector accesses). Every load that does not depend on the slot index (q, k,
// v, the gate inputs) is issued before it, so the chain is slot -> state tile -> the token's
// update; the update is run_tokens' (the same delta_rule_token, the same sums), so the results
// equal decode_kernel's bit for bit. H100, graph replays, against the previous paths: B = 1 5.8 ->
// 4.3 us, B = 8 18.7 -> 15.5, B = 32 60.2 -> 51.6, B = 128 211 -> 196.
// At most 64 registers (no spills): 8 blocks an SM instead of 7 for fp32 state (bf16 state used
// 64 already), so B = 8 (1024 blocks at HV = 32) runs in one wave of 1056: 15.65 -> 13.92 us on
// the H100, other batches unchanged. (A bound of 1 block for bf16 state let it take 80 registers:
// 8-11 % slower.)
template <int32_t ACT, int32_t ST, int ROWS, bool READY, int LOAD>
__global__ void __launch_bounds__(32 / 4 * kRG, 8) decode_token_kernel(GdnProblem p, ItemDiv dv) {
  constexpr int BV = 32, kCT = BV / 4, kThreads = kCT * kRG, K = ROWS * kRG;
  static_assert(K <= kThreads, "one q/k element a thread");
  using T = typename Elem<ST>::T;
  __shared__ TokenSmem<BV> sm;
  alignas(16) __shared__ T tile_s[LOAD == kLoadRegs ? 1 : K * BV];
  int64_t b, h, tile;
  dv.item(blockIdx.x, b, h, tile);
  const int tx = threadIdx.x % kCT, ty = threadIdx.x / kCT;
  const int64_t hk = dv.key_head(h);
  const int64_t j0 = tile * BV + tx * 4;
  float s[ROWS][4];
  int64_t slot = -1;
  auto load_state = [&]() {
    slot = read_slot_of(p, b);
    if (slot < 0) return;
    if constexpr (LOAD == kLoadRegs) {
      StateIO<ST>::load_rows(p, slot, h, ty, j0, s);
    } else {
      const T* row = StateIO<ST>::row0(p, slot, h, ty) + j0;
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        T* dst = tile_s + (ty + r * kRG) * BV + tx * 4;
        if constexpr (sizeof(T) == 4)
          async_copy16(dst, row + r * kRG * p.state.s_k);
        else
          async_copy8(dst, row + r * kRG * p.state.s_k);
      }
      async_commit();
    }
  };
  // READY (p.state_ready, the decode step's chain): the slot and the state tile before the wait,
  // so that they are on their way while the conv kernel in front still runs.
  if constexpr (READY) load_state();
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  // Slot-independent loads first: q, k (threads < K), v (threads < BV), gate inputs (thread 0),
  // all raw, converted only once the slot and state loads are issued: a conversion in the
  // conditional code of its load made the thread wait for each (H100, B = 1: q / k, then the
  // gate inputs one by one, before the slot index was even requested).
  using A = typename Elem<ACT>::T;
  const bool has_qk = int(threadIdx.x) < K;
  A q_raw{}, k_raw{}, v_raw{};
  if (has_qk) {
    q_raw = load_raw<ACT>(p.q.at(b, 0, hk), threadIdx.x);
    k_raw = load_raw<ACT>(p.k.at(b, 0, hk), threadIdx.x);
  }
  if (threadIdx.x < BV) v_raw = load_raw<ACT>(p.v.at(b, 0, h), tile * BV + threadIdx.x);
  GateInputs gi;
  if (threadIdx.x == 0) gi.load(p, b, 0, h);
  if constexpr (!READY) load_state();

  const float qi = raw_to_float<ACT>(q_raw), ki = raw_to_float<ACT>(k_raw), vj = raw_to_float<ACT>(v_raw);
  if (has_qk) sm.q[threadIdx.x] = qi, sm.k[threadIdx.x] = ki;
  float qq = qi * qi, kk = ki * ki;
  if (threadIdx.x == 0) {
    sm.gate[0] = gi.decay(p);
    sm.gate[1] = gi.beta(p);
  }
  float q_scale, k_scale;
  token_scales(p, qq, kk, sm.scratch, q_scale, k_scale);
  if (slot < 0) {  // PAD / out of range: zero outputs, no state
    if (threadIdx.x < BV) Elem<ACT>::store(p.out.at(b, 0, h), tile * BV + threadIdx.x, 0.0f);
    return;
  }
  if constexpr (LOAD == kLoadAsync) {
    async_wait<0>();  // this thread's own copies: no barrier needed
#pragma unroll
    for (int r = 0; r < ROWS; ++r) Vec4<ST>::load(tile_s + (ty + r * kRG) * BV, tx * 4, s[r]);
  }
  const float acc = delta_rule_token<ROWS, BV>(s, sm.red, sm.u, sm.q, sm.k, K, q_scale, k_scale, sm.gate[0],
                                               sm.gate[1], vj, tx, ty);
  if (threadIdx.x < BV) Elem<ACT>::store(p.out.at(b, 0, h), tile * BV + threadIdx.x, acc);
  StateIO<ST>::store_rows(p, slot, h, ty, j0, s);
}

// Streaming version for batches that fill the GPU: a persistent grid, each block walking the
// (sequence, head, tile) items with a stride; the state tiles of the next NS - 1 items are copied
// into shared memory asynchronously (cp.async on sm_80+) while the current one is computed, so
// every SM keeps its share of HBM bandwidth busy instead of idling between load phases. Needs
// V % BV == 0 and 16-byte aligned state rows. At most 80 registers a thread (768 threads per SM:
// 3 blocks of 64 columns or 6 of 32; no spills).
// PRE (one token a sequence, 2-byte activations, 16-byte aligned q/k/v rows, NS = 2): each
// item's q, k and v rows are copied into shared memory with its state tile, its slot index is
// loaded when the previous item is issued and its gate inputs wait in thread 0's registers, so
// no phase of an item waits on a global load.
template <int32_t ACT, int32_t ST, int ROWS, int BV, int NS, bool PRE>
__global__ void __launch_bounds__(BV / 4 * kRG, 768 / (BV / 4 * kRG))
    decode_stream_kernel(GdnProblem p, ItemDiv dv, int64_t items) {
  static_assert(!PRE || (NS == 2 && sizeof(typename Elem<ACT>::T) == 2), "PRE: two stages, 2-byte activations");
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  constexpr int kCT = BV / 4, kThreads = kCT * kRG, kRows = ROWS * kRG;
  using T = typename Elem<ST>::T;
  using A = typename Elem<ACT>::T;
  GDN_DYNAMIC_SMEM(unsigned char, stage_raw);
  T* stages = reinterpret_cast<T*>(stage_raw);  // [NS][kRows][BV]
  __shared__ TokenSmem<BV> sm;
  __shared__ int64_t slot_s[NS];  // read slot of the item in each stage
  constexpr int kIn = PRE ? 2 * kRows + BV : 8;
  __shared__ __align__(16) A in_s[NS][kIn];  // PRE: q, k, v of the item in each stage
  __shared__ float gate_s[NS][2];            // PRE: its decay and beta
  const int64_t K = p.d.K;
  const int tx = threadIdx.x % kCT, ty = threadIdx.x / kCT;
  const int64_t stride = gridDim.x;

  auto seq_of = [&](int64_t item) { return dv.seq(uint32_t(item)); };
  int64_t next_slot = PRE && blockIdx.x < items ? read_slot_of(p, seq_of(blockIdx.x)) : -1;
  GateInputs gi;  // PRE, thread 0: gate inputs of the newest item
  auto issue = [&](int64_t item, int stage) {
    if (item < items) {
      int64_t b, h, tile;
      dv.item(uint32_t(item), b, h, tile);
      int64_t slot;
      if constexpr (PRE) {
        slot = next_slot;
        next_slot = item + stride < items ? read_slot_of(p, seq_of(item + stride)) : -1;
      } else {
        slot = read_slot_of(p, b);
      }
      if (threadIdx.x == 0) slot_s[stage] = slot;
      if (slot >= 0) stage_state_tile<ST, BV, kThreads>(stages + int64_t(stage) * kRows * BV, p, slot, h, tile * BV, int(K));
      if constexpr (PRE) {
        const int nq = int(K) / 8, nv = BV / 8;  // 16-byte pieces of q (and k), of v
        const int64_t hk = dv.key_head(h);
        for (int c = threadIdx.x; c < 2 * nq + nv; c += kThreads) {
          const A* src = c < nq       ? reinterpret_cast<const A*>(p.q.at(b, 0, hk)) + 8 * c
                         : c < 2 * nq ? reinterpret_cast<const A*>(p.k.at(b, 0, hk)) + 8 * (c - nq)
                                      : reinterpret_cast<const A*>(p.v.at(b, 0, h)) + tile * BV + 8 * (c - 2 * nq);
          async_copy16(&in_s[stage][8 * c], src);
        }
        if (threadIdx.x == 0) gi.load(p, b, 0, h);
      }
    }
    async_commit();
  };
  // PRE, thread 0: the newest issued item's decay and beta into its stage (read after a barrier).
  auto publish_gate = [&](int stage) {
    if (PRE && threadIdx.x == 0) {
      gate_s[stage][0] = gi.decay(p);
      gate_s[stage][1] = gi.beta(p);
    }
  };

#pragma unroll
  for (int k = 0; k < NS - 1; ++k) issue(blockIdx.x + k * stride, k);
  publish_gate(0);
  int stage = 0;
  for (int64_t item = blockIdx.x; item < items; item += stride) {
    const int issued = (stage + NS - 1) % NS;
    issue(item + (NS - 1) * stride, issued);
    async_wait<NS - 1>();
    __syncthreads();
    int64_t b, h, tile;
    dv.item(uint32_t(item), b, h, tile);
    const int64_t read_slot = slot_s[stage];
    const T* src = stages + int64_t(stage) * kRows * BV;
    float s[ROWS][4];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int i = ty + r * kRG;
      if (read_slot >= 0 && i < K)
        Vec4<ST>::load(src + i * BV, tx * 4, s[r]);
      else
        s[r][0] = s[r][1] = s[r][2] = s[r][3] = 0.0f;
    }
    run_tokens<ACT, ST, ROWS, BV, PRE>(p, dv, sm, s, b, h, tile, read_slot, true, in_s[stage],
                                       gate_s[stage]);  // ends with a barrier
    publish_gate(issued);
    stage = (stage + 1) % NS;
  }
  async_wait<0>();
}

template <int32_t ACT, int32_t ST, int BV>
void launch_bv(const Device& dev, const GdnProblem& p, bool vec, gpuStream_t stream) {
  const int64_t tiles = (p.d.V + BV - 1) / BV;
  const unsigned grid = unsigned(p.num_seqs * p.d.HV * tiles), threads = BV / 4 * kRG;
  const ItemDiv dv(tiles, p.d);
  if (p.d.K <= 4 * kRG)
    launch_pdl(dev.pdl(), decode_kernel<ACT, ST, 4, BV>, grid, threads, 0, stream, p, dv, vec);
  else if (p.d.K <= 8 * kRG)
    launch_pdl(dev.pdl(), decode_kernel<ACT, ST, 8, BV>, grid, threads, 0, stream, p, dv, vec);
  else
    launch_pdl(dev.pdl(), decode_kernel<ACT, ST, 16, BV>, grid, threads, 0, stream, p, dv, vec);
  check_launch("decode_kernel");
}

template <int32_t ACT, int32_t ST, int ROWS, int BV, int NS, bool PRE>
void launch_stream_kernel(const Device& dev, const GdnProblem& p, gpuStream_t stream) {
  auto kernel = decode_stream_kernel<ACT, ST, ROWS, BV, NS, PRE>;
  const int threads = BV / 4 * kRG;
  const size_t smem = size_t(NS) * ROWS * kRG * BV * dtype_bytes(ST);
  // Static + dynamic shared memory over 48 KiB needs the opt-in (idempotent, not a stream op).
  check(gpuFuncSetAttribute(kernel, gpuFuncAttributeMaxDynamicSharedMemorySize, int(smem)), "decode smem");
  int per_sm = 0;
  check(gpuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem), "decode occupancy");
  const int64_t tiles = p.d.V / BV, items = p.num_seqs * p.d.HV * tiles;
  const unsigned grid = unsigned(std::min<int64_t>(items, int64_t(std::max(per_sm, 1)) * dev.sm_count));
  launch_pdl(dev.pdl(), kernel, grid, threads, smem, stream, p, ItemDiv(tiles, p.d), items);
  check_launch("decode_stream_kernel");
}

template <int32_t ACT, int32_t ST, int ROWS, int BV, int NS>
void launch_stream(const Device& dev, const GdnProblem& p, gpuStream_t stream) {
  // Inputs staged with the state (PRE): 64-column tiles (32-column ones measured 4-5 % slower
  // with it: their q/k are copied once per 32 columns), one token a sequence, 2-byte activations,
  // q/k/v head rows 16-byte aligned.
  if constexpr (sizeof(typename Elem<ACT>::T) == 2 && NS == 2 && BV == 64) {
    if (p.tokens_per_seq == 1 && p.d.K % 8 == 0 && head_rows_aligned(p.q, 8) && head_rows_aligned(p.k, 8) &&
        head_rows_aligned(p.v, 8))
      return launch_stream_kernel<ACT, ST, ROWS, BV, NS, true>(dev, p, stream);
  }
  launch_stream_kernel<ACT, ST, ROWS, BV, NS, false>(dev, p, stream);
}

template <int32_t ACT, int32_t ST>
void launch_token(const Device& dev, const GdnProblem& p, gpuStream_t stream) {
  const unsigned grid = unsigned(p.num_seqs * p.d.HV * (p.d.V / 32)), threads = 32 / 4 * kRG;
  const ItemDiv dv(p.d.V / 32, p.d);
  auto run = [&](auto kernel) { launch_pdl(dev.pdl(), kernel, grid, threads, 0, stream, p, dv); };
  auto go = [&](auto ld) {
    constexpr int L = decltype(ld)::value;
    if (p.state_ready)
      p.d.K == 4 * kRG ? run(decode_token_kernel<ACT, ST, 4, true, L>) : run(decode_token_kernel<ACT, ST, 8, true, L>);
    else
      p.d.K == 4 * kRG ? run(decode_token_kernel<ACT, ST, 4, false, L>) : run(decode_token_kernel<ACT, ST, 8, false, L>);
  };
  // 2-byte states at up to 64 blocks an SM: the tile by cp.async (H100, docs/perf-notes.md,
  // session 26: bf16 state B = 1 / 32 / 128 -12 / -7 / -1 %, but B = 512 +12 %; for fp32 state
  // B = 1 +2.5 %, B >= 8 within 0.5 %). Off NVIDIA devices the copies would be plain ones.
#if !defined(GDN_AMD_PATHS)
  if constexpr (sizeof(typename Elem<ST>::T) == 2) {
    if (int64_t(grid) <= 64 * int64_t(dev.sm_count)) {
      go(std::integral_constant<int, kLoadAsync>());
      return check_launch("decode_token_kernel");
    }
  }
#endif
  go(std::integral_constant<int, kLoadRegs>());
  check_launch("decode_token_kernel");
}

template <int32_t ACT, int32_t ST>
void launch(const Device& dev, const GdnProblem& p, gpuStream_t stream) {
  if (p.num_seqs * p.d.HV == 0) return;
  const bool vec = state_rows_aligned(p.state, 4);  // float4 / 4 x bf16 accesses
  // One token a sequence, K = 64 or 128, whole 32-column tiles: the lean kernel at every batch
  // size (H100, docs/perf-notes.md, session 8: it beats the streaming kernel at B = 8, 32 and 128,
  // e.g. B = 32 60.2 -> 51.6 us). Otherwise the streaming kernel (2 stages) takes batches with
  // >= 4 items per SM in 64-column tiles (fp32 state; bf16 state measured faster in 32-column
  // tiles), or >= 2 per SM in 32-column tiles, given 16-byte aligned rows, whole tiles and
  // K <= 128; everything else (speculative tokens, other K) runs one block per 32-column tile
  // with the state loaded straight into registers.
  const bool aligned16 = state_rows_aligned(p.state, 16 / dtype_bytes(ST));  // 16-byte cp.async
  const int64_t heads = p.num_seqs * p.d.HV, sms = dev.sm_count;
  const bool lean = vec && p.tokens_per_seq == 1 && !p.per_token_slots && p.d.V % 32 == 0 &&
                    (p.d.K == 4 * kRG || p.d.K == 8 * kRG);
  if (lean) return launch_token<ACT, ST>(dev, p, stream);
  if (aligned16 && p.d.K <= 8 * kRG) {
    if constexpr (ST == GDN_DTYPE_F32) {
      if (p.d.V % 64 == 0 && heads * (p.d.V / 64) >= 4 * sms) {
        if (p.d.K <= 4 * kRG) return launch_stream<ACT, ST, 4, 64, 2>(dev, p, stream);
        return launch_stream<ACT, ST, 8, 64, 2>(dev, p, stream);
      }
    }
    if (p.d.V % 32 == 0 && heads * (p.d.V / 32) >= 2 * sms) {
      if (p.d.K <= 4 * kRG) return launch_stream<ACT, ST, 4, 32, 2>(dev, p, stream);
      return launch_stream<ACT, ST, 8, 32, 2>(dev, p, stream);
    }
  }
  launch_bv<ACT, ST, 32>(dev, p, vec, stream);
}

}  // namespace

void decode(const Device& dev, const GdnProblem& p, void* stream) {
  if (p.num_seqs * p.tokens_per_seq == 0) return;
  // Item indices (sequence, head, 32-column tile at most) stay below 2^31 (ItemDiv, grid size).
  if (p.num_seqs * p.d.HV * ((p.d.V + 31) / 32) >= (int64_t(1) << 31))
    fail(GDN_ERROR_UNSUPPORTED, "gdn_decode: %lld sequences x %lld heads is too large for the GPU backend",
         (long long)p.num_seqs, (long long)p.d.HV);
  dispatch_act(p.q.dt, [&](auto act) {
    dispatch_state(p.state.dt, [&](auto st) { launch<decltype(act)::value, decltype(st)::value>(dev, p, gpuStream_t(stream)); });
  });
}

}  // namespace gdn::gpu
