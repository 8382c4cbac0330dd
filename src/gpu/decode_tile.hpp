// The state tile of the recurrent gated delta rule, shared by the decode kernels (decode.cu) and
// the fused decode step (decode_step.cu): a K x BV tile of state columns held in registers by
// BV/4 column threads (4 columns each) x kRG row groups, column sums through shared memory (no
// warp width assumed), and one token's update of it. Every kernel that calls these gets the same
// summation order, so their results agree bit for bit.
#pragma once

#include "launch.hpp"
#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {

constexpr int kRG = 16;

template <int32_t ST>
struct StateIO {
  using T = typename Elem<ST>::T;
  // Loads 4 consecutive columns [j, j+4) of a state row (masked past V).
  static __device__ void load4(const T* row, int64_t j, int64_t V, bool vec, float (&s)[4]) {
    if (vec && j + 4 <= V) return Vec4<ST>::load(row, j, s);
    for (int c = 0; c < 4; ++c) s[c] = j + c < V ? Elem<ST>::load(row, j + c) : 0.0f;
  }
  // One streaming vector store (see store_stream) of 4 columns at p (4-element aligned).
  static __device__ __forceinline__ void store_vec(T* p, const float (&s)[4]) {
    if constexpr (ST == GDN_DTYPE_F32)
      store_stream(reinterpret_cast<float4*>(p), make_float4(s[0], s[1], s[2], s[3]));
    else
      store_stream(reinterpret_cast<uint2*>(p), Vec4<ST>::pack(s));
  }
  static __device__ void store4(T* row, int64_t j, int64_t V, bool vec, const float (&s)[4]) {
    if (vec && j + 4 <= V) return store_vec(row + j, s);
    for (int c = 0; c < 4; ++c)
      if (j + c < V) Elem<ST>::store(row, j + c, s[c]);
  }
  // Row `ty` of (slot, h) (this thread's first row; its others follow every kRG rows).
  static __device__ __forceinline__ T* row0(const GdnProblem& p, int64_t slot, int64_t h, int ty) {
    return reinterpret_cast<T*>(p.state.p) + slot * p.state.s_slot + h * p.state.s_h + ty * p.state.s_k;
  }
  // This thread's rows ty + r * kRG (r < ROWS, rows < K) of the tile at columns [j0, j0 + 4).
  template <int ROWS>
  static __device__ void load_tile(const GdnProblem& p, int64_t slot, int64_t h, int ty, int64_t j0, bool vec,
                                   float (&s)[ROWS][4]) {
    const T* row = slot >= 0 ? row0(p, slot, h, ty) : nullptr;
    const int64_t step = kRG * p.state.s_k;
#pragma unroll
    for (int r = 0; r < ROWS; ++r, row += step) {
      if (slot >= 0 && ty + r * kRG < p.d.K)
        load4(row, j0, p.d.V, vec, s[r]);
      else
        s[r][0] = s[r][1] = s[r][2] = s[r][3] = 0.0f;
    }
  }
  // All K = ROWS * kRG rows of this thread, no masks, vector accesses (4-element aligned rows, whole
  // 4-column groups): the lean kernels' tile (decode_token_kernel, the fused decode step).
  template <int ROWS>
  static __device__ __forceinline__ void load_rows(const GdnProblem& p, int64_t slot, int64_t h, int ty, int64_t j0,
                                                   float (&s)[ROWS][4]) {
    const T* row = row0(p, slot, h, ty);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) Vec4<ST>::load(row + r * kRG * p.state.s_k, j0, s[r]);
  }
  template <int ROWS>
  static __device__ __forceinline__ void store_rows(const GdnProblem& p, int64_t slot, int64_t h, int ty, int64_t j0,
                                                    const float (&s)[ROWS][4]) {
    T* row = row0(p, slot, h, ty) + j0;
#pragma unroll
    for (int r = 0; r < ROWS; ++r) store_vec(row + r * kRG * p.state.s_k, s[r]);
  }
  template <int ROWS>
  static __device__ void store_tile(const GdnProblem& p, int64_t slot, int64_t h, int ty, int64_t j0, bool vec,
                                    const float (&s)[ROWS][4]) {
    T* row = row0(p, slot, h, ty);
    const int64_t step = kRG * p.state.s_k;
#pragma unroll
    for (int r = 0; r < ROWS; ++r, row += step)
      if (ty + r * kRG < p.d.K) store4(row, j0, p.d.V, vec, s[r]);
  }
};

// Rows [0, K) of head h of `slot`, columns col0 .. col0 + BV, into a [K][BV] shared-memory stage
// by 16-byte background copies of NT threads (the caller commits). The streaming decode kernel and
// the fused decode step stage their tiles through this.
template <int32_t ST, int BV, int NT>
__device__ __forceinline__ void stage_state_tile(typename Elem<ST>::T* dst, const GdnProblem& p, int64_t slot,
                                                 int64_t h, int64_t col0, int K) {
  using T = typename Elem<ST>::T;
  constexpr int kChunk = 16 / int(sizeof(T)), kChunksPerRow = BV / kChunk;
  for (int c = threadIdx.x; c < K * kChunksPerRow; c += NT) {
    const int row = c / kChunksPerRow, cc = c % kChunksPerRow;
    async_copy16(dst + row * BV + cc * kChunk, reinterpret_cast<const T*>(p.state.at(slot, h, row)) + col0 + cc * kChunk);
  }
}

// Sums each column's partials over the row groups; thread c < BV gets column c's total.
template <int BV>
__device__ __forceinline__ float column_sum(float (&red)[kRG][BV], const float (&part)[4], int tx, int ty) {
#pragma unroll
  for (int c = 0; c < 4; ++c) red[ty][tx * 4 + c] = part[c];
  __syncthreads();
  float acc = 0.0f;
  if (threadIdx.x < BV) {
#pragma unroll
    for (int r = 0; r < kRG; ++r) acc += red[r][threadIdx.x];
  }
  return acc;
}

// Shared memory of the token loop.
template <int BV>
struct TokenSmem {
  static constexpr int kThreads = BV / 4 * kRG;
  float q[kMaxHeadDim], k[kMaxHeadDim], red[kRG][BV], u[BV], scratch[2 * kThreads / 32], gate[2];
};

// Item index -> (sequence, head, tile), value head -> key head, by multiply and shift (FastDiv)
// instead of run-time divisions. Items < 2^31 (the launch checks).
struct ItemDiv {
  FastDiv tiles, heads, group;  // tiles a head, value heads HV, value heads a key head
  ItemDiv(int64_t t, const LayerDims& d)
      : tiles(uint32_t(t)), heads(uint32_t(d.HV)), group(uint32_t(d.HV / d.HK)) {}
  __device__ __forceinline__ void item(uint32_t it, int64_t& b, int64_t& h, int64_t& tile) const {
    const uint32_t q = tiles.div(it), bb = heads.div(q);
    tile = it - q * tiles.d, h = q - bb * heads.d, b = bb;
  }
  __device__ __forceinline__ int64_t seq(uint32_t it) const { return heads.div(tiles.div(it)); }
  __device__ __forceinline__ int64_t key_head(int64_t h) const { return group.div(uint32_t(h)); }
};

// A token's gate inputs for value head h -- a, b, A_log, dt_bias (raw gate) or g, beta -- loaded
// early as raw bits (load_bits: all four in flight at once, nothing waits for them here) and
// turned into the decay exp(g) and beta later, when their latency has passed.
struct GateInputs {
  uint32_t a = 0, b = 0, A_log = 0, dt_bias = 0;  // bits; without a raw gate: a = g, b = beta
  __device__ __forceinline__ void load(const GdnProblem& p, int64_t i0, int64_t i1, int64_t h) {
    if (p.raw_gate) {
      a = load_bits(p.a.at(i0, i1, h), p.a.dt), b = load_bits(p.b.at(i0, i1, h), p.b.dt);
      A_log = p.A_log.bits(h), dt_bias = p.dt_bias.bits(h);
    } else {
      a = load_bits(p.g.at(i0, i1, h), p.g.dt), b = load_bits(p.beta.at(i0, i1, h), p.beta.dt);
    }
  }
  __device__ __forceinline__ float decay(const GdnProblem& p) const {
    return expf(p.raw_gate ? gate_g(bits_to_float(a, p.a.dt), bits_to_float(A_log, p.A_log.dt),
                                    bits_to_float(dt_bias, p.dt_bias.dt))
                           : bits_to_float(a, p.g.dt));
  }
  __device__ __forceinline__ float beta(const GdnProblem& p) const {
    return p.raw_gate ? sigmoid(bits_to_float(b, p.b.dt)) : bits_to_float(b, p.beta.dt);
  }
};

// A token's q and k scales from this thread's partial sums of squares of q and k: p.scale / |q|
// and 1 / |k| (block sums) with the l2 norm on, else p.scale and 1. A barrier either way, so the
// shared memory written before the call is visible after it.
__device__ __forceinline__ void token_scales(const GdnProblem& p, float qq, float kk, float* scratch,
                                             float& q_scale, float& k_scale) {
  q_scale = p.scale, k_scale = 1.0f;
  if (p.l2norm) {
    block_sum2(qq, kk, scratch);
    q_scale *= 1.0f / sqrtf(qq + kL2NormEps);
    k_scale = 1.0f / sqrtf(kk + kL2NormEps);
  } else {
    __syncthreads();
  }
}

// The slot a sequence's state is read from (-1: none, PAD or out of range).
__device__ __forceinline__ int64_t read_slot_of(const GdnProblem& p, int64_t b) {
  int64_t slot = -1;
  if (!p.per_token_slots) {
    slot = load_index(p.slot_idx.at(b, 0), p.slot_idx.dt);
  } else {
    const int64_t acc = p.num_accepted.present() ? p.num_accepted.idx(b) : 1;
    if (acc >= 1 && acc <= p.tokens_per_seq) slot = load_index(p.slot_idx.at(b, acc - 1), p.slot_idx.dt);
  }
  return slot >= 0 && slot < p.state.num_slots ? slot : -1;
}

// One token on the tile s (rows ty + r * kRG, 4 columns a thread): decay, kv = S^T k, u = beta (v - kv),
// S += k u^T, o = S^T q. q and k are the token's vectors in shared memory (scaled here by q_scale /
// k_scale), vj this thread's v column (threads < BV). Returns o of column threadIdx.x (threads
// < BV). Leaves red and u_s in use: the caller synchronises before they are written again.
template <int ROWS, int BV>
__device__ __forceinline__ float delta_rule_token(float (&s)[ROWS][4], float (&red)[kRG][BV], float* u_s,
                                                  const float* q, const float* k, int64_t K, float q_scale,
                                                  float k_scale, float decay, float beta, float vj, int tx, int ty) {
  // kv = S^T k over this thread's rows, then across row groups.
  float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t i = ty + r * kRG;
    const float ki = i < K ? k[i] * k_scale : 0.0f;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      s[r][c] *= decay;
      part[c] += s[r][c] * ki;
    }
  }
  const float kv = column_sum(red, part, tx, ty);
  if (threadIdx.x < BV) u_s[threadIdx.x] = beta * (vj - kv);
  __syncthreads();

  // S += k u^T; o = S^T q.
  float u[4], o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int c = 0; c < 4; ++c) u[c] = u_s[tx * 4 + c];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t i = ty + r * kRG;
    const float ki = i < K ? k[i] * k_scale : 0.0f, qi = i < K ? q[i] * q_scale : 0.0f;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      s[r][c] += ki * u[c];
      o[c] += s[r][c] * qi;
    }
  }
  return column_sum(red, o, tx, ty);
}

}  // namespace gdn::gpu
