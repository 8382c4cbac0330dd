// Chunked gated delta rule (WY form) on the GPU, in three kernels. Per chunk of L <= BT tokens of
// one sequence and value head (gc = in-chunk cumulative log-decay, S = state entering the chunk,
// q and k l2-normalised, q scaled):
//   A[i][j] = beta_i (k_i . k_j) exp(gc_i - gc_j), j < i
//   Tb      = (I + A)^-1 diag(beta)                                  lower triangular
//   Pm[i][j] = (q_i . k_j) exp(gc_i - gc_j), j <= i
//   Vn      = Tb (V - diag(exp(gc)) K S)
//   O       = diag(exp(gc)) Q S + Pm Vn
//   S      <- exp(gc_last) S + K^T diag(exp(gc_last - gc)) Vn
// This is the CPU backend's W/U form with W S folded into Vn (W = Tb diag(exp(gc)) K, U = Tb V).
//  1. offsets_kernel: chunk offsets of the sequences (one small block; no host synchronisation).
//  2. chunk_kernel: every (chunk, key head) at once: the two Gram matrices once per key head, then
//     Tb (a blocked triangular solve, solve_blocked), Pm and gc for each of its value heads, and
//     the q/k norm factors, into the workspace.
//  3. state_kernel: one block per (sequence, value head, 32-column tile of S) walks its chunks in
//     order with the K x 32 state tile in shared memory; only the products with S are sequential.
// On NVIDIA sm_80+ with K = 64 or 128 (and the shared memory for it), chunk_kernel's Gram
// matrices and all of the state kernel's products run on tensor cores instead (state_mma_kernel,
// split-bf16 products with fp32 accuracy, see mma.hpp; bf16 q and k enter as raw rows, exact
// operands, with their norm factors applied to the products); the fp32-core kernels serve HIP and every
// other shape. Both paths hold the same tests (float64 oracle, token-by-token decode). With bf16
// activations and K = 128 on an sm_90 device (and a library built for sm_90a), the state kernel
// is state_wgmma_kernel with bf16 products (prefill_state_sm90.hpp: warpgroup wgmma products) and
// state_reg_kernel with fp32 products (prefill_state_reg.hpp: the state in mma registers).
#include "launch.hpp"
#include "mma.hpp"
#include "portability.hpp"
#include "typed.hpp"
#include "wgmma.hpp"

namespace gdn::gpu {
namespace {

constexpr int kThreads = 256, kBV = 32, kMaxBT = 64;

// Row stride (floats) of a [rows][K] tile: K rounded up to 4 (float4 steps, zero padded) plus 4,
// so that 8 consecutive rows start in 8 different 4-bank groups.
__host__ __device__ inline int64_t row_stride(int64_t K) { return (K + 3) / 4 * 4 + 4; }

// The workspace, in floats: per token and value head the rows of Tb and Pm and gc; per token and
// key head the q and k norm factors; per sequence its first chunk's index.
struct Work {
  float* mats;   // [T][HV][2][BT]
  float* gc;     // [T][HV]
  float* norms;  // [T][HK][2]
  int32_t* offsets;  // [N + 1]
};
inline size_t align256(size_t b) { return (b + 255) / 256 * 256; }
size_t work_bytes(const LayerDims& d, int64_t T, int64_t N, Work* w, char* base) {
  size_t at = 0;
  auto part = [&](size_t bytes) {
    char* p = base ? base + at : nullptr;
    at += align256(bytes);
    return p;
  };
  char* mats = part(size_t(T) * d.HV * 2 * kMaxBT * sizeof(float));
  char* gc = part(size_t(T) * d.HV * sizeof(float));
  char* norms = part(size_t(T) * d.HK * 2 * sizeof(float));
  char* offsets = part(size_t(N + 1) * sizeof(int32_t));
  if (w) *w = Work{reinterpret_cast<float*>(mats), reinterpret_cast<float*>(gc), reinterpret_cast<float*>(norms),
                   reinterpret_cast<int32_t*>(offsets)};
  return at;
}

// Token range [start, end) of sequence n (clamped: typed.hpp: clamped_seq_range).
__device__ inline void seq_range(const GdnProblem& p, int64_t n, int64_t& start, int64_t& end) {
  clamped_seq_range(p.cu_seqlens, p.num_tokens, n, start, end);
}

// Rows of one head of a [T, heads, dim] view: row(t) = base + t * stride.
struct TokenRows {
  char* base;
  int64_t stride;  // bytes
  __device__ TokenRows(const HeadView& v, int64_t head)
      : base(v.at(0, 0, head)), stride(int64_t(dtype_bytes(v.dt)) * v.s0) {}
  template <class T>
  __device__ T* row(int64_t t) const {
    return reinterpret_cast<T*>(base + t * stride);
  }
};

// Tokens of the chunk starting at c in a sequence ending at end.
template <int BT>
__device__ inline int chunk_len(int64_t c, int64_t end) {
  return int(end - c < BT ? end - c : BT);
}

__device__ inline float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ inline void st4(float* p, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
}
__device__ inline void fma4(float (&acc)[4], float a, const float4& b) {
  acc[0] += a * b.x, acc[1] += a * b.y, acc[2] += a * b.z, acc[3] += a * b.w;
}

// The q and k factors of one token from its squared sums: the scale on q, and the l2 norms when
// the layer asks for them.
__device__ inline void qk_factors(const GdnProblem& p, float qq, float kk, float& qs, float& ks) {
  qs = p.scale, ks = 1.0f;
  if (p.l2norm) {
    qs *= 1.0f / sqrtf(qq + kL2NormEps);
    ks = 1.0f / sqrtf(kk + kL2NormEps);
  }
}

// ---- 1. chunk offsets: offsets[n] = number of chunks of the sequences before n ----
__global__ void __launch_bounds__(kThreads) offsets_kernel(GdnProblem p, int BT, int32_t* offsets) {
  __shared__ int32_t scan[kThreads];
  const int tid = threadIdx.x;
  int32_t carry = 0;
  for (int64_t base = 0; base < p.num_seqs; base += kThreads) {
    const int64_t n = base + tid;
    int32_t c = 0;
    if (n < p.num_seqs) {
      int64_t start, end;
      seq_range(p, n, start, end);
      c = int32_t((end - start + BT - 1) / BT);
    }
    scan[tid] = c;
    __syncthreads();
    for (int o = 1; o < kThreads; o <<= 1) {
      const int32_t x = tid >= o ? scan[tid - o] : 0;
      __syncthreads();
      scan[tid] += x;
      __syncthreads();
    }
    if (n < p.num_seqs) offsets[n + 1] = carry + scan[tid];
    carry += scan[kThreads - 1];
    __syncthreads();
  }
  if (tid == 0) offsets[0] = 0;
}

// Elements [j, j + 4) of a row (zero past n), one vector access when VEC (row and j 4-aligned,
// n a multiple of 4).
template <int32_t DT, bool VEC>
__device__ inline void load4(const void* row, int64_t j, int64_t n, float (&v)[4]) {
  if (VEC) {
    if (j < n) Vec4<DT>::load(row, j, v);
  } else {
    for (int c = 0; c < 4; ++c) v[c] = j + c < n ? Elem<DT>::load(row, j + c) : 0.0f;
  }
}
template <int32_t DT, bool VEC>
__device__ inline void store4(void* row, int64_t j, int64_t n, const float (&v)[4]) {
  if (VEC) {
    if (j < n) Vec4<DT>::store(row, j, v);
  } else {
    for (int c = 0; c < 4; ++c)
      if (j + c < n) Elem<DT>::store(row, j + c, v[c]);
  }
}

// Rows [c0, c0 + L) of q and k of key head hk into shared memory (row stride KP), zero past L
// and K; times the rows' norm factors from the workspace when SCALED. NT threads, one 32-lane
// subgroup per row, 4 consecutive elements a lane, every load of a pass issued before its stores.
template <int32_t ACT, int BT, int NT, bool VEC, bool SCALED>
__device__ void stage_qk(const GdnProblem& p, const Work& w, int64_t c0, int L, int64_t hk, float* q_s, float* k_s) {
  constexpr int kRowsPer = BT / (NT / 32);
  const int64_t K = p.d.K, KP = row_stride(K), HK = p.d.HK;
  const int lane = threadIdx.x % 32, sg = threadIdx.x / 32;
  const TokenRows q_rows(p.q, hk), k_rows(p.k, hk);
  for (int64_t i = 4 * lane; i < KP; i += 128) {
    float q[kRowsPer][4], k[kRowsPer][4], qs[kRowsPer], ks[kRowsPer];
#pragma unroll
    for (int u = 0; u < kRowsPer; ++u) {
      const int r = sg + u * (NT / 32);
      for (int c = 0; c < 4; ++c) q[u][c] = k[u][c] = 0.0f;
      qs[u] = ks[u] = SCALED ? 0.0f : 1.0f;
      if (r < L) {
        load4<ACT, VEC>(q_rows.row<char>(c0 + r), i, K, q[u]);
        load4<ACT, VEC>(k_rows.row<char>(c0 + r), i, K, k[u]);
        if (SCALED) {
          qs[u] = w.norms[((c0 + r) * HK + hk) * 2 + 0];
          ks[u] = w.norms[((c0 + r) * HK + hk) * 2 + 1];
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kRowsPer; ++u) {
      const int r = sg + u * (NT / 32);
      st4(q_s + r * KP + i, qs[u] * q[u][0], qs[u] * q[u][1], qs[u] * q[u][2], qs[u] * q[u][3]);
      st4(k_s + r * KP + i, ks[u] * k[u][0], ks[u] * k[u][1], ks[u] * k[u][2], ks[u] * k[u][3]);
    }
  }
}

// Columns j, j + 1 of a workspace row as split bf16 words: BT/2 words of hi halves, then BT/2 of
// lo halves; `low` (bf16 products): the hi halves only, the only ones the state kernel reads then.
template <int BT>
__device__ inline void store_split_pair(uint32_t* row, int jp, float x0, float x1, bool low) {
  if (low) {
    row[jp] = pack_bf16x2(x0, x1);
  } else {
    split2_bf16(x0, x1, row[jp], row[BT / 2 + jp]);
  }
}

// Rows i < L of Tb = X diag(beta) into the workspace rows of tokens c0 + i (value head h, row
// stride MS floats in X), split (store_split_pair), by NT threads: a thread keeps one column pair
// (and its two betas) and walks every (NT / (BT / 2))-th row, its row pointer advancing by a
// constant. X's strictly upper 16 x 16 blocks are never written (solve_blocked): stored as zeros.
template <int BT, int NT, int MS>
__device__ void store_tb_rows(float* mats, int64_t c0, int L, int64_t HV, int64_t h, bool low, const float* X,
                              const float* beta) {
  constexpr int kPairs = BT / 2, kRowStep = NT / kPairs;
  static_assert(NT % kPairs == 0, "whole rows of pairs a pass");
  const int jp = int(threadIdx.x) % kPairs, j = 2 * jp;
  const float b0 = beta[j], b1 = beta[j + 1];
  const int64_t row_step = kRowStep * HV * 2 * kMaxBT;
  float* row = mats + ((c0 + threadIdx.x / kPairs) * HV + h) * 2 * kMaxBT;
  for (int i = threadIdx.x / kPairs; i < L; i += kRowStep, row += row_step) {
    const bool upper = j / 16 > i / 16;
    const float x0 = upper ? 0.0f : X[i * MS + j] * b0, x1 = upper ? 0.0f : X[i * MS + j + 1] * b1;
    store_split_pair<BT>(reinterpret_cast<uint32_t*>(row), jp, x0, x1, low);
  }
}

// acc -+ sum_{m < n} row[m] x[m] (SUB: minus), in order of m, the row (16-byte aligned) read as
// float4s: a row of a 16 x 16 triangular block times the lane's column (solve_blocked).
template <bool SUB>
__device__ __forceinline__ float lower_row(float acc, const float* row, const float (&x)[16], int n) {
#pragma unroll
  for (int q = 0; 4 * q < n; ++q) {
    const float4 a = ld4(row + 4 * q);
    const float av[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (4 * q + e < n) acc = SUB ? acc - av[e] * x[4 * q + e] : acc + av[e] * x[4 * q + e];
  }
  return acc;
}

// Tb = (I + A)^-1 diag(beta) for one or two value heads (u = 0, 1; A and X of head u at
// A + u HS, X + u HS, row stride MS), blocked by 16 x 16 (NB = BT / 16 block rows), in X =
// (I + A)^-1, unscaled (the stores apply beta). The diagonal blocks X_dd = (I + A_dd)^-1 by
// substitution, then the blocks below them by
//   X_ij = -X_ii sum_{k = j}^{i - 1} A_ik X_kj          (i > j),
// one k a stage with a barrier between stages (X_kj is final after stage k - j): NB stages on the
// longest chain instead of BT dependent rows. 16 lanes own a block, one column c each with its 16
// rows in registers; A's and X_ii's rows are read as broadcast float4s, X_kj's column one element
// a lane. The 16 lanes after them take the same block of the second head. Thread groups of 32
// (slots) take the blocks, so NT / 32 >= NB and >= NB (NB - 1) / 2. X's strictly upper blocks are
// not written. Every thread of the block calls it (barriers).
template <int BT, int NT, int MS, int HS>
__device__ void solve_blocked(const float* A, float* X, int heads) {
  constexpr int NB = BT / 16, kSlots = NT / 32;
  static_assert(BT % 16 == 0 && kSlots >= NB && kSlots >= NB * (NB - 1) / 2, "a slot a block");
  static_assert(MS % 4 == 0 && HS % 4 == 0, "16-byte rows");
  const int tid = int(threadIdx.x), slot = tid / 32, u = tid / 16 % 2, c = tid % 16;
  const bool on = u < heads;
  const float* Au = A + u * HS;
  float* Xu = X + u * HS;
  // 1. Diagonal block d = slot: row r of X_dd's column c is [r == c] - sum_{i < r} A[r][i] x[i].
  if (on && slot < NB) {
    const int d0 = 16 * slot;
    float x[16];
#pragma unroll
    for (int r = 0; r < 16; ++r) x[r] = lower_row<true>(r == c ? 1.0f : 0.0f, Au + (d0 + r) * MS + d0, x, r);
#pragma unroll
    for (int r = 0; r < 16; ++r) Xu[(d0 + r) * MS + d0 + c] = x[r];
  }
  // 2. Off-diagonal block (bi, bj) of slot: in order of distance bi - bj, then of bj.
  int bi = -1, bj = -1;
#pragma unroll
  for (int d = 1, n = 0; d < NB; ++d)
#pragma unroll
    for (int j = 0; j + d < NB; ++j, ++n)
      if (n == slot) bi = j + d, bj = j;
  float r[16] = {};
#pragma unroll 1
  for (int s = 1; s < NB; ++s) {
    __syncthreads();  // X_kj of this stage's k is final
    if (!on || bi < 0 || s > bi - bj) continue;
    const int k0 = 16 * (bj + s - 1), i0 = 16 * bi, j0 = 16 * bj;
#pragma unroll
    for (int q = 0; q < 4; ++q) {  // four rows of X_kj's column at a time
      float xk[4];
#pragma unroll
      for (int m = 0; m < 4; ++m) xk[m] = Xu[(k0 + 4 * q + m) * MS + j0 + c];
#pragma unroll
      for (int row = 0; row < 16; ++row) {
        const float4 a = ld4(Au + (i0 + row) * MS + k0 + 4 * q);
        r[row] += a.x * xk[0] + a.y * xk[1] + a.z * xk[2] + a.w * xk[3];
      }
    }
    if (s == bi - bj) {  // X_ij = -X_ii r (X_ii unit lower triangular)
#pragma unroll
      for (int row = 0; row < 16; ++row)
        Xu[(i0 + row) * MS + j0 + c] = -lower_row<false>(r[row], Xu + (i0 + row) * MS + i0, r, row);
    }
  }
}

// Tensor-core kernels: q / k operands as raw bf16 rows (exact, no split) for this activation type.
__host__ __device__ constexpr bool raw_qk(int32_t act) { return act == GDN_DTYPE_BF16; }

// The chunk kernel's BT x BT matrices: row stride BT + 4 (16-byte rows), and for two value heads
// at once the second 16 floats (16 banks) past the first's end, so that the two heads' lanes of
// solve_blocked meet in different banks.
__host__ __device__ constexpr int chunk_row_stride(int BT) { return BT + 4; }
__host__ __device__ constexpr int chunk_head_stride(int BT) { return BT * chunk_row_stride(BT) + 16; }

// raw: q and k staged as raw bf16 words (the tensor-core Gram matrices of bf16 activations).
template <int BT>
size_t chunk_smem_floats(int64_t K, bool raw = false) {
  const size_t qk = size_t(2 * BT * (raw ? K / 2 + 4 : row_stride(K))), mats = size_t(2 * chunk_head_stride(BT));
  return (qk > mats ? qk : mats) + mats + 6 * BT;
}

// ---- 2. per (chunk, key head): Tb, Pm, gc for each value head of the key head ----
// KM > 0: the tensor-core Gram matrices, with K = KM at compile time.
// RAW (KM > 0 and bf16 activations): the Gram matrices of the raw rows (exact bf16 operands, one
// product each), scaled by the rows' norm factors afterwards.
template <int32_t ACT, int BT, bool VEC, int KM>
__global__ void __launch_bounds__(kThreads, (KM > 0 && raw_qk(ACT)) ? 3 : 2) chunk_kernel(GdnProblem p, Work w) {
  constexpr bool MMA = KM > 0, RAW = MMA && raw_qk(ACT);
  GDN_DYNAMIC_SMEM(float, smem);
  const int64_t K = MMA ? KM : p.d.K, KP = RAW ? K / 2 + 4 : row_stride(K), HV = p.d.HV, HK = p.d.HK, G = HV / HK;
  constexpr int MS = chunk_row_stride(BT), HS = chunk_head_stride(BT);  // matrix row and head strides
  // q and k live until the Gram matrices are done; A and X (Tb unscaled) reuse their space.
  const int64_t qk_floats = 2 * BT * KP > 2 * HS ? 2 * BT * KP : 2 * HS;
  float* q_s = smem;                  // [BT][KP]  (RAW: KP words of bf16 pairs)
  float* k_s = q_s + BT * KP;         // [BT][KP]
  float* A = smem;                    // [2][HS]  A of one or two value heads, or A and X
  float* KK = smem + qk_floats;       // [HS]  k_i . k_j  (X of the first of two value heads)
  float* QK = KK + HS;                // [HS]  q_i . k_j  (X of the second)
  float* g_s = QK + HS;               // [2][BT]
  float* beta_s = g_s + 2 * BT;       // [2][BT]
  float* qf_s = beta_s + 2 * BT;      // [BT]  RAW: the norm factors
  float* kf_s = qf_s + BT;            // [BT]
  const int tid = threadIdx.x;

  // Which sequence and chunk: the last n with offsets[n] <= chunk.
  const int32_t chunk = int32_t(blockIdx.x);
  const int64_t hk = blockIdx.y;
  if (chunk >= w.offsets[p.num_seqs]) return;
  int64_t lo = 0, hi = p.num_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (w.offsets[mid] <= chunk) lo = mid; else hi = mid - 1;
  }
  int64_t start, end;
  seq_range(p, lo, start, end);
  const int64_t c0 = start + int64_t(chunk - w.offsets[lo]) * BT;
  const int L = chunk_len<BT>(c0, end);

  // q and k, l2-normalised (q also scaled); the factors go to the workspace for state_kernel.
  if constexpr (RAW) {  // raw rows by 16-byte background copies, zero past L
    constexpr int kPieces = KM / 8;
    const TokenRows q_rows(p.q, hk), k_rows(p.k, hk);
    for (int e = tid; e < BT * kPieces; e += kThreads) {
      const int r = e / kPieces, x = 8 * (e % kPieces);
      float* qd = q_s + r * KP + x / 2;
      float* kd = k_s + r * KP + x / 2;
      if (r < L) {
        async_copy16(qd, q_rows.row<uint16_t>(c0 + r) + x);
        async_copy16(kd, k_rows.row<uint16_t>(c0 + r) + x);
      } else {
        st4(qd, 0.0f, 0.0f, 0.0f, 0.0f);
        st4(kd, 0.0f, 0.0f, 0.0f, 0.0f);
      }
    }
    async_commit();
    async_wait<0>();
  } else {
    stage_qk<ACT, BT, kThreads, VEC, false>(p, w, c0, L, hk, q_s, k_s);
  }
  __syncthreads();
  auto put_norms = [&](int r, float qs, float ks) {  // the factors of row r, for the state kernel
    w.norms[((c0 + r) * HK + hk) * 2 + 0] = qs;
    w.norms[((c0 + r) * HK + hk) * 2 + 1] = ks;
  };
  if constexpr (RAW) {
    // kThreads / BT lanes a row (4 at BT = 64): every row at once, a few shuffle steps.
    constexpr int LPR = kThreads / BT;
    const int r = tid / LPR, part = tid % LPR;
    const uint32_t* qw = reinterpret_cast<const uint32_t*>(q_s + r * KP);
    const uint32_t* kw = reinterpret_cast<const uint32_t*>(k_s + r * KP);
    float qq = 0.0f, kk = 0.0f;
#pragma unroll
    for (int wp = part; wp < KM / 2; wp += LPR) {
      const float q0 = bf16_to_f32(uint16_t(qw[wp] & 0xffffu)), q1 = bf16_to_f32(uint16_t(qw[wp] >> 16));
      const float k0 = bf16_to_f32(uint16_t(kw[wp] & 0xffffu)), k1 = bf16_to_f32(uint16_t(kw[wp] >> 16));
      qq += q0 * q0 + q1 * q1;
      kk += k0 * k0 + k1 * k1;
    }
    for (int m = 1; m < LPR; m <<= 1) qq += shfl_xor32(qq, m), kk += shfl_xor32(kk, m);
    float qs, ks;
    qk_factors(p, qq, kk, qs, ks);
    if (part == 0) {
      qf_s[r] = qs, kf_s[r] = ks;
      if (r < L) put_norms(r, qs, ks);
    }
  } else {
    const int lane = tid % 32, sg = tid / 32;
    for (int r = sg; r < L; r += kThreads / 32) {
      float qq = 0.0f, kk = 0.0f;
      for (int64_t i = lane; i < K; i += 32) {
        qq += q_s[r * KP + i] * q_s[r * KP + i];
        kk += k_s[r * KP + i] * k_s[r * KP + i];
      }
      float qs, ks;
      qk_factors(p, p.l2norm ? subgroup32_sum(qq) : 0.0f, p.l2norm ? subgroup32_sum(kk) : 0.0f, qs, ks);
      if (MMA) {
#if GDN_HAVE_MMA
        // In place, as split bf16: the row slot becomes K/2 words of hi halves, then K/2 of lo.
        constexpr int U = 2;  // K <= 128: K/2 <= 64 words, two a lane
        float qv[U][2] = {}, kv[U][2] = {};
        for (int u = 0; u < U; ++u) {
          const int wp = lane + 32 * u;
          if (wp < K / 2)
            for (int x = 0; x < 2; ++x) qv[u][x] = q_s[r * KP + 2 * wp + x], kv[u][x] = k_s[r * KP + 2 * wp + x];
        }
        __syncwarp();
        uint32_t* qw = reinterpret_cast<uint32_t*>(q_s + r * KP);
        uint32_t* kw = reinterpret_cast<uint32_t*>(k_s + r * KP);
        for (int u = 0; u < U; ++u) {
          const int wp = lane + 32 * u;
          if (wp < K / 2) {
            split2_bf16(qs * qv[u][0], qs * qv[u][1], qw[wp], qw[K / 2 + wp]);
            split2_bf16(ks * kv[u][0], ks * kv[u][1], kw[wp], kw[K / 2 + wp]);
          }
        }
#endif
      } else {
        for (int64_t i = lane; i < K; i += 32) {
          q_s[r * KP + i] *= qs;
          k_s[r * KP + i] *= ks;
        }
      }
      if (lane == 0) put_norms(r, qs, ks);
    }
  }
  if (!RAW) __syncthreads();  // RAW: the products read the raw rows; the factors are awaited below

  // Gram matrices. Tensor cores: warp (mt, nb) takes rows 16 mt .. and the 4 column tiles from
  // nb (RAW: exact products of the raw rows, then times the factors; else split products of
  // the scaled rows, fp32 accuracy; BT = 64, 8 warps).
  if (MMA) {
#if GDN_HAVE_MMA
    const int warp = tid / 32, mt = warp % 4, nb = 4 * (warp / 4), g = (tid % 32) / 4, t = tid % 4;
    const int kp = int(KP);
    float kk[4][4] = {}, qk[4][4] = {};
    if constexpr (RAW) {
      const uint32_t* kw = reinterpret_cast<const uint32_t*>(k_s);
      const uint32_t* qw = reinterpret_cast<const uint32_t*>(q_s);
#pragma unroll 2
      for (int w0 = 0; w0 < KM / 2; w0 += 8) {
        uint32_t ka[4], qa[4], b[4][2];
        load_a1(kw, kp, 16 * mt, w0, ka);
        load_a1(qw, kp, 16 * mt, w0, qa);
        load_b1_pair(kw, kp, 8 * nb, w0, b[0], b[1]);
        load_b1_pair(kw, kp, 8 * nb + 16, w0, b[2], b[3]);
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          mma_bf16(kk[v], ka, b[v]);
          mma_bf16(qk[v], qa, b[v]);
        }
      }
      __syncthreads();  // the norm factors
    } else {
      const SplitTile KA{reinterpret_cast<const uint32_t*>(k_s), reinterpret_cast<const uint32_t*>(k_s) + K / 2, kp};
      const SplitTile QA{reinterpret_cast<const uint32_t*>(q_s), reinterpret_cast<const uint32_t*>(q_s) + K / 2, kp};
      for (int w0 = 0; w0 < K / 2; w0 += 8) {
        uint32_t khi[4], klo[4], qhi[4], qlo[4];
        load_a(KA, 16 * mt, w0, khi, klo);
        load_a(QA, 16 * mt, w0, qhi, qlo);
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          uint32_t bhi[2], blo[2];
          load_b(KA, 8 * (nb + v), w0, bhi, blo);
          mma_split(kk[v], kk[v], khi, klo, bhi, blo);
          mma_split(qk[v], qk[v], qhi, qlo, bhi, blo);
        }
      }
    }
#pragma unroll
    for (int v = 0; v < 4; ++v)
      for (int e = 0; e < 4; ++e) {
        const int i = 16 * mt + g + 8 * (e / 2), j = 8 * (nb + v) + 2 * t + e % 2;
        const float fk = RAW ? kf_s[i] * kf_s[j] : 1.0f, fq = RAW ? qf_s[i] * kf_s[j] : 1.0f;
        KK[i * MS + j] = fk * kk[v][e];
        QK[i * MS + j] = fq * qk[v][e];
      }
#endif
  } else {
    // Fp32 cores: a 16 x 16 grid of threads, each BT/16 x BT/16 entries of both (rows ig + 16 r,
    // so that the 8 threads of a quarter warp read 8 different 4-bank groups).
    constexpr int R = BT / 16;
    const int ig = tid % 16, jg = tid / 16;
    float kk[R][R] = {}, qk[R][R] = {};
#pragma unroll 2
    for (int64_t m = 0; m < KP - 4; m += 4) {
      float4 ki[R], kj[R], qi[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        ki[r] = ld4(k_s + (ig + 16 * r) * KP + m);
        qi[r] = ld4(q_s + (ig + 16 * r) * KP + m);
        kj[r] = ld4(k_s + (jg + 16 * r) * KP + m);
      }
#pragma unroll
      for (int a = 0; a < R; ++a)
#pragma unroll
        for (int b = 0; b < R; ++b) {
          kk[a][b] += ki[a].x * kj[b].x + ki[a].y * kj[b].y + ki[a].z * kj[b].z + ki[a].w * kj[b].w;
          qk[a][b] += qi[a].x * kj[b].x + qi[a].y * kj[b].y + qi[a].z * kj[b].z + qi[a].w * kj[b].w;
        }
    }
#pragma unroll
    for (int a = 0; a < R; ++a)
#pragma unroll
      for (int b = 0; b < R; ++b) {
        KK[(ig + 16 * a) * MS + jg + 16 * b] = kk[a][b];
        QK[(ig + 16 * a) * MS + jg + 16 * b] = qk[a][b];
      }
  }

  // Per value head h: its gates, gc, A (strictly lower, into A_h) and Pm (straight to the
  // workspace: fp32, or for the tensor-core state kernel as split bf16 words: BT/2 hi words, then
  // BT/2 lo words). g_h / beta_h: its [BT] gate arrays.
  auto prepare = [&](int64_t h, float* A_h, float* g_h, float* beta_h) {
    float gc = 0.0f, beta = 0.0f;  // g, then its prefix sum
    if (tid < BT) {
      float g = 0.0f;
      if (tid < L) {
        const int64_t t = c0 + tid;
        if (p.raw_gate) {
          g = gate_g(load_float(p.a.at(t, 0, h), p.a.dt), p.A_log.f(h), p.dt_bias.f(h));
          beta = sigmoid(load_float(p.b.at(t, 0, h), p.b.dt));
        } else {
          g = load_float(p.g.at(t, 0, h), p.g.dt);
          beta = load_float(p.beta.at(t, 0, h), p.beta.dt);
        }
      }
      gc = g;
    }
    // gc = the inclusive prefix sum of g over the chunk: within each 32-lane subgroup by shuffles
    // (every lane of a subgroup takes part), then the second subgroup adds the first's total.
    static_assert(BT <= 64, "at most two subgroups of g");
    if (tid < (BT + 31) / 32 * 32) {
      const int lane = tid % 32;
      for (int d = 1; d < 32; d <<= 1) {
        const float y = shfl32(gc, lane >= d ? lane - d : lane);
        if (lane >= d) gc += y;
      }
    }
    __syncthreads();  // also: the Gram matrices complete (q, k dead); the previous head done with A, X, beta
    if (tid < BT) g_h[tid] = gc, beta_h[tid] = beta;
    __syncthreads();
    if (tid >= 32 && tid < BT) g_h[tid] = gc += g_h[31];  // g_h[31] is final: no thread changes it here
    if (tid < L) w.gc[(c0 + tid) * HV + h] = gc;
    __syncthreads();
    if (MMA) {
      // A thread keeps one column pair (j, j + 1) and walks every kRowStep-th row: its g_j, the
      // row pointer and the shared-memory offsets advance by constants (ncu: the index and
      // 64-bit address math of a flat loop were ~half of this loop's instructions).
      constexpr int kPairs = BT / 2, kRowStep = kThreads / kPairs;
      static_assert(kThreads % kPairs == 0, "whole rows of pairs a pass");
      const int jp = tid % kPairs, j0 = 2 * jp;
      static_assert(MS % 2 == 0 && HS % 2 == 0, "8-byte pairs of A, KK, QK and the gates");
      constexpr float kLog2e = 1.4426950408889634f;  // the decays as powers of 2
      const float2 gj = *reinterpret_cast<const float2*>(g_h + j0);
      const float gj0 = kLog2e * gj.x, gj1 = kLog2e * gj.y;
      const int64_t row_step = kRowStep * HV * 2 * kMaxBT;
      float* row = w.mats + ((c0 + tid / kPairs) * HV + h) * 2 * kMaxBT + kMaxBT;
#pragma unroll
      for (int n = 0; n < BT / kRowStep; ++n, row += row_step) {
        const int i = tid / kPairs + n * kRowStep;
        const float gi = kLog2e * g_h[i], bi = beta_h[i];
        // The pair's entries as 8-byte accesses (rows of even stride, even j0). The exponential
        // unconditionally, then the mask (a warp spans a whole row, so it took the exponential's
        // path anyway; the branch around it cost ~4 instructions an element). Above the diagonal
        // gi - gj may overflow to inf: masked, never multiplied. The hardware 2^x of the
        // pre-scaled gates (relative error ~|gi| 2^-24, as the subtraction's own): the accurate
        // expf was ~9 instructions of this loop's ~29 an element, __expf still 5.
        const float2 kk = *reinterpret_cast<const float2*>(KK + i * MS + j0);
        const float2 qk = *reinterpret_cast<const float2*>(QK + i * MS + j0);
        const float e0 = fast_exp2(gi - gj0), e1 = fast_exp2(gi - gj1);
        const float d0 = j0 <= i ? e0 : 0.0f, d1 = j0 + 1 <= i ? e1 : 0.0f;
        *reinterpret_cast<float2*>(A_h + i * MS + j0) =
            make_float2(j0 < i ? bi * kk.x * d0 : 0.0f, j0 + 1 < i ? bi * kk.y * d1 : 0.0f);
        const float pm[2] = {qk.x * d0, qk.y * d1};
        if (i < L) store_split_pair<BT>(reinterpret_cast<uint32_t*>(row), jp, pm[0], pm[1], p.bf16_products);
      }
    } else {
      for (int e = tid; e < BT * BT; e += kThreads) {
        const int i = e / BT, j = e % BT;
        const float decay = j <= i ? expf(g_h[i] - g_h[j]) : 0.0f;
        A_h[i * MS + j] = j < i ? beta_h[i] * KK[i * MS + j] * decay : 0.0f;
        if (i < L) w.mats[((c0 + i) * HV + h) * 2 * kMaxBT + kMaxBT + j] = QK[i * MS + j] * decay;
      }
    }
  };

  // The value heads of the key head one at a time (A and X in the first region), or -- with two
  // (Qwen3-Next) -- both at once: A of both first, then both solves with X where KK and QK were.
  const int pass = G == 2 ? 2 : 1;
  for (int64_t h0 = hk * G; h0 < hk * G + G; h0 += pass) {
#pragma unroll 1
    for (int u = 0; u < pass; ++u) prepare(h0 + u, A + u * HS, g_s + u * BT, beta_s + u * BT);
    __syncthreads();
    float* X = pass == 2 ? KK : A + HS;
    solve_blocked<BT, kThreads, MS, HS>(A, X, pass);
    __syncthreads();
    for (int u = 0; u < pass; ++u) {
      const float* X_h = X + u * HS;
      const float* beta_h = beta_s + u * BT;
      if (MMA) {
        store_tb_rows<BT, kThreads, MS>(w.mats, c0, L, HV, h0 + u, p.bf16_products, X_h, beta_h);
      } else {
        for (int e = tid; e < L * BT; e += kThreads) {
          const int i = e / BT, j = e % BT;
          w.mats[((c0 + i) * HV + h0 + u) * 2 * kMaxBT + j] = j / 16 > i / 16 ? 0.0f : X_h[i * MS + j] * beta_h[j];
        }
      }
    }
  }
}

// Where every state kernel's block starts (state_kernel, state_mma_kernel, state_wgmma_kernel):
// from blockIdx.x = (n * HV + h) * tiles + tile, its sequence n, value head h, key head hk and
// first column v0 (tiles of kBV columns), the sequence's token range [start, end), its state
// slot (without has_slot -- PAD or out of range -- the block writes zero outputs by `none` and
// stops), whether that slot holds an initial state, and its head's workspace rows at token 0
// (token strides: mats_stride floats for mats, HV for gcs, 2 HK for norms).
struct TileJob {
  int64_t n, h, hk, v0, start, end, slot;
  bool initial;
  const float *mats, *gcs, *norms;
  int64_t mats_stride;
  __device__ __forceinline__ TileJob(const GdnProblem& p, const Work& w, int64_t tiles) {
    const int64_t HV = p.d.HV, tile = blockIdx.x % tiles;
    h = (blockIdx.x / tiles) % HV, n = blockIdx.x / (tiles * HV);
    hk = h / (HV / p.d.HK), v0 = tile * kBV;
    seq_range(p, n, start, end);
    slot = load_index(p.slot_idx.at(n, 0), p.slot_idx.dt);
    initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
    mats = w.mats + h * 2 * kMaxBT, mats_stride = HV * 2 * kMaxBT;
    gcs = w.gc + h, norms = w.norms + hk * 2;
  }
  __device__ __forceinline__ bool has_slot(const GdnProblem& p) const {
    return slot >= 0 && slot < p.state.num_slots;
  }
  // No state slot: zero outputs (the caller returns).
  template <int32_t ACT>
  __device__ void none(const GdnProblem& p) const {
    for (int64_t e = threadIdx.x; e < (end - start) * kBV; e += blockDim.x) {
      const int64_t t = start + e / kBV, j = v0 + e % kBV;
      if (j < p.d.V) Elem<ACT>::store(p.out.at(t, 0, h), j, 0.0f);
    }
  }
};

// Both state kernels: the chunk's Tb and Pm rows (workspace rows of one value head, token
// stride `stride` floats) into Tb_s / Pm_s (row stride BT + 4) by background copies, zero past
// L; the caller commits and waits.
template <int BT>
__device__ void copy_chunk_mats(const float* mats, int64_t stride, int64_t c0, int L, float* Tb_s, float* Pm_s) {
  for (int e = threadIdx.x; e < BT * (BT / 2); e += blockDim.x) {
    const int r = e / (BT / 2), q4 = e % (BT / 2);  // q4 < BT/4: Tb, else Pm
    const int which = q4 / (BT / 4), j = 4 * (q4 % (BT / 4));
    float* dst = (which ? Pm_s : Tb_s) + r * (BT + 4) + j;
    if (r < L)
      async_copy16(dst, mats + (c0 + r) * stride + which * kMaxBT + j);
    else
      st4(dst, 0.0f, 0.0f, 0.0f, 0.0f);
  }
}
// acc += row[0 .. i] . tile[0 .. i][c4 .. c4 + 3]: a row of a lower-triangular matrix times a
// [BT][kBV] tile on the fp32 cores.
__device__ inline void lower_row_times_tile(float (&acc)[4], const float* row, const float* tile, int i, int c4) {
#pragma unroll 2
  for (int j = 0; j <= i; j += 4) {
    const float4 t = ld4(row + j);
    fma4(acc, t.x, ld4(tile + (j + 0) * kBV + c4));
    fma4(acc, t.y, ld4(tile + (j + 1) * kBV + c4));
    fma4(acc, t.z, ld4(tile + (j + 2) * kBV + c4));
    fma4(acc, t.w, ld4(tile + (j + 3) * kBV + c4));
  }
}

template <int BT>
size_t state_smem_floats
(int64_t K) {
  const int64_t KP = row_stride(K);
  return size_t(2 * BT * KP + 2 * BT * (BT + 4) + KP * kBV + 2 * BT * kBV + 2 * BT);
}

// ---- 3. per (sequence, value head, 32-column tile): the chunks in order ----
// 8 * BT threads: thread (row rg, columns c4 .. c4 + 3) of the chunk's outputs, and a 2 x 4 block
// of the state tile.
template <int32_t ACT, int32_t ST, int BT, bool VEC>
__global__ void __launch_bounds__(8 * BT) state_kernel(GdnProblem p, Work w, int64_t tiles) {
  constexpr int NT = 8 * BT;
  GDN_DYNAMIC_SMEM(float, smem);
  const int64_t K = p.d.K, KP = row_stride(K), V = p.d.V, HV = p.d.HV;
  constexpr int MP = BT + 4;  // Tb / Pm row stride (float4 steps)
  float* q_s = smem;                // [BT][KP]
  float* k_s = q_s + BT * KP;       // [BT][KP]
  float* Tb_s = k_s + BT * KP;      // [BT][MP]
  float* Pm_s = Tb_s + BT * MP;     // [BT][MP]
  float* S_s = Pm_s + BT * MP;      // [KP][kBV]  (rows >= K stay zero)
  float* R_s = S_s + KP * kBV;      // [BT][kBV]
  float* Vn_s = R_s + BT * kBV;     // [BT][kBV]
  float* eg_s = Vn_s + BT * kBV;    // [BT]  exp(gc_i)
  float* ed_s = eg_s + BT;          // [BT]  exp(gc_last - gc_i)

  const TileJob job(p, w, tiles);
  if (!job.has_slot(p)) return job.none<ACT>(p);
  const int64_t h = job.h, hk = job.hk, v0 = job.v0, start = job.start, end = job.end, slot = job.slot;
  const bool initial = job.initial;
  const int tid = threadIdx.x;
  for (int64_t e = tid; e < KP * kBV; e += NT) {
    const int64_t i = e / kBV, j = v0 + e % kBV;
    S_s[e] = (initial && i < K && j < V) ? Elem<ST>::load(p.state.at(slot, h, i), j) : 0.0f;
  }
  const int c4 = 4 * (tid % 8), i = tid / 8;

  for (int64_t c0 = start; c0 < end; c0 += BT) {
    const int L = chunk_len<BT>(c0, end);
    // Chunk inputs: Tb and Pm rows by background copies (first needed after K S), q and k (raw
    // times the norm factors), decays.
    copy_chunk_mats<BT>(w.mats + h * 2 * kMaxBT, HV * 2 * kMaxBT, c0, L, Tb_s, Pm_s);
    async_commit();
    stage_qk<ACT, BT, NT, VEC, true>(p, w, c0, L, hk, q_s, k_s);
    if (tid < BT) {
      const float last = w.gc[(c0 + L - 1) * HV + h];
      const float gc = tid < L ? w.gc[(c0 + tid) * HV + h] : 0.0f;
      eg_s[tid] = tid < L ? expf(gc) : 0.0f;
      ed_s[tid] = tid < L ? expf(last - gc) : 0.0f;
    }
    __syncthreads();

    // K S and Q S for row i; R = V - exp(gc) K S; O starts as exp(gc) Q S.
    float o[4];
    {
      float ks[4] = {}, qs[4] = {};
#pragma unroll 2
      for (int64_t m = 0; m < KP - 4; m += 4) {
        const float4 s0 = ld4(S_s + (m + 0) * kBV + c4), s1 = ld4(S_s + (m + 1) * kBV + c4);
        const float4 s2 = ld4(S_s + (m + 2) * kBV + c4), s3 = ld4(S_s + (m + 3) * kBV + c4);
        const float4 kr = ld4(k_s + i * KP + m), qr = ld4(q_s + i * KP + m);
        fma4(ks, kr.x, s0), fma4(ks, kr.y, s1), fma4(ks, kr.z, s2), fma4(ks, kr.w, s3);
        fma4(qs, qr.x, s0), fma4(qs, qr.y, s1), fma4(qs, qr.z, s2), fma4(qs, qr.w, s3);
      }
      const float e = eg_s[i];
      float rv[4] = {};
      if (i < L) load4<ACT, VEC>(p.v.at(c0 + i, 0, h), v0 + c4, V, rv);
      for (int c = 0; c < 4; ++c) {
        rv[c] = i < L ? rv[c] - e * ks[c] : 0.0f;
        o[c] = e * qs[c];
      }
      st4(R_s + i * kBV + c4, rv[0], rv[1], rv[2], rv[3]);
    }
    async_wait<0>();
    __syncthreads();

    // Vn = Tb R (Tb lower triangular: j <= i).
    {
      float acc[4] = {};
      lower_row_times_tile(acc, Tb_s + i * MP, R_s, i, c4);
      st4(Vn_s + i * kBV + c4, acc[0], acc[1], acc[2], acc[3]);
    }
    __syncthreads();

    // O += Pm Vn, to the output.
    lower_row_times_tile(o, Pm_s + i * MP, Vn_s, i, c4);
    if (i < L) store4<ACT, VEC>(p.out.at(c0 + i, 0, h), v0 + c4, V, o);

    // S <- exp(gc_last) S + K^T diag(exp(gc_last - gc)) Vn, 2 x 4 blocks of S per thread.
    {
      const float e_last = eg_s[L - 1];
      for (int64_t b = tid; b < (KP / 2 - 2) * (kBV / 4); b += NT) {
        const int64_t m0 = 2 * (b / (kBV / 4));
        const int cc = int(4 * (b % (kBV / 4)));
        float acc[2][4];
        for (int u = 0; u < 2; ++u) {
          const float4 s = ld4(S_s + (m0 + u) * kBV + cc);
          acc[u][0] = e_last * s.x, acc[u][1] = e_last * s.y, acc[u][2] = e_last * s.z, acc[u][3] = e_last * s.w;
        }
#pragma unroll 4
        for (int j = 0; j < L; ++j) {
          const float2 kv = *reinterpret_cast<const float2*>(k_s + j * KP + m0);
          float4 vn = ld4(Vn_s + j * kBV + cc);
          const float d = ed_s[j];
          vn.x *= d, vn.y *= d, vn.z *= d, vn.w *= d;
          fma4(acc[0], kv.x, vn), fma4(acc[1], kv.y, vn);
        }
        for (int u = 0; u < 2; ++u) st4(S_s + (m0 + u) * kBV + cc, acc[u][0], acc[u][1], acc[u][2], acc[u][3]);
      }
    }
    __syncthreads();
  }
  for (int64_t e = tid; e < K * kBV; e += NT) {
    const int64_t r = e / kBV, j = v0 + e % kBV;
    if (j < V) Elem<ST>::store(p.state.at(slot, h, r), j, S_s[e]);
  }
}

#if GDN_HAVE_MMA
// ---- 3'. state_kernel on tensor cores (sm_80+; BT = 64, K = 64 or 128, V % 32 == 0) ----
// The same steps with every product on tensor cores: K S, Q S, Vn = Tb R, O += Pm Vn and the
// state update. Fp32 accuracy from bf16 products (see mma.hpp): with bf16 activations the raw q
// and k rows are exact bf16 operands (their norm factors are applied to the products' rows:
// two products, K S and Q S, and the K^T side of the update take the rows straight from the
// background copies, double-buffered a chunk ahead); other activation types are scaled and split
// (three products). 16 warps: warp (mt, nt) owns rows 16 mt .. of K S / Q S and columns 8 nt .. ;
// in the update it owns the state rows of m-tiles 2 (w / 4) and 2 (w / 4) + 1 (in registers for
// the whole sequence: `sr`).
constexpr int kMmaBT = 64, kMmaThreads = 512;


// Shared memory (32-bit words) for activation type act.
inline int64_t mma_smem_words(int64_t K, int32_t act) {
  const int64_t RW = K / 2 + 4, TW = kMmaBT / 2 + 4, MP = kMmaBT + 4;
  const int64_t staging = raw_qk(act) ? 0 : 2 * kMmaBT * K * dtype_bytes(act) / 4;
  return 4 * kMmaBT * RW + 2 * kBV * RW + 2 * kMmaBT * MP + 6 * kBV * TW + 6 * kMmaBT + staging;
}

// A 16 x 8 accumulator tile (rows r0 .., columns c .. c + 1 of this lane's fragment, see mma.hpp)
// times per-row factors f0 (row g) and f8 (row g + 8), transposed into split bf16 halves:
// [column][row] with `tw` words per column (LOW: the hi half only, a plain bf16 operand).
template <bool LOW>
__device__ inline void store_tile_t(uint32_t* hi, uint32_t* lo, int tw, int r0, int c, const float (&x)[4], float f0,
                                    float f8) {
  uint16_t* h16 = reinterpret_cast<uint16_t*>(hi);
  uint16_t* l16 = reinterpret_cast<uint16_t*>(lo);
  const int r = r0 + (threadIdx.x % 32) / 4;
  for (int half = 0; half < 2; ++half) {  // rows r, r + 8
    const float f = half ? f8 : f0;
    const int at = c * 2 * tw + r + 8 * half;
    if constexpr (LOW) {
      const uint32_t wh = pack_bf16x2(f * x[2 * half], f * x[2 * half + 1]);
      h16[at] = uint16_t(wh & 0xffffu), h16[at + 2 * tw] = uint16_t(wh >> 16);
    } else {
      uint32_t wh, wl;
      split2_bf16(f * x[2 * half], f * x[2 * half + 1], wh, wl);  // columns c, c + 1
      h16[at] = uint16_t(wh & 0xffffu), l16[at] = uint16_t(wl & 0xffffu);
      h16[at + 2 * tw] = uint16_t(wh >> 16), l16[at + 2 * tw] = uint16_t(wl >> 16);
    }
  }
}

// d (+ corr) += A B for a 16 x 8 warp tile: A rows 16 mt .. of a matrix that is lower triangular
// in 16-row blocks (Tb, Pm: only blocks kb <= mt), B^T rows 8 nt ... LOW: plain bf16 operands (the
// hi halves), one mma a block; else split operands, fp32 accuracy (corr gets the cross terms).
template <bool LOW>
__device__ __forceinline__ void tri_product(float (&d)[4], float (&corr)[4], const SplitTile& A, const SplitTile& B,
                                            int mt, int nt) {
  for (int kb = 0; kb <= mt; ++kb) {
    if constexpr (LOW) {
      uint32_t a[4], b[2];
      load_a1(A.hi, A.stride, 16 * mt, 8 * kb, a);
      load_b1(B.hi, B.stride, 8 * nt, 8 * kb, b);
      mma_bf16(d, a, b);
    } else {
      uint32_t ahi[4], alo[4], bhi[2], blo[2];
      load_a(A, 16 * mt, 8 * kb, ahi, alo);
      load_b(B, 8 * nt, 8 * kb, bhi, blo);
      mma_split(d, corr, ahi, alo, bhi, blo);
    }
  }
}

// LOW (the layer's GDN_PRECISION_BF16): every product on plain bf16 operands, one mma each --
// the state, R, Vn, Tb, Pm and non-bf16 q / k rounded to bf16 as operands (the state itself stays
// fp32), the accuracy of FLA's chunked kernels.
template <int32_t ACT, int32_t ST, int KD, bool LOW>
__global__ void __launch_bounds__(kMmaThreads) state_mma_kernel(GdnProblem p, Work w, int64_t tiles) {
  constexpr int BT = kMmaBT, NT = kMmaThreads, MP = BT + 4, TW = BT / 2 + 4;
  constexpr bool RAW = raw_qk(ACT);
  GDN_DYNAMIC_SMEM(float, smem);
  constexpr int K = KD, RW = K / 2 + 4;
  const int64_t HV = p.d.HV, HK = p.d.HK;
  // q / k operand tiles [BT][RW] (words along k): RAW: q and k of two chunks (buffers 0 / 1);
  // else the split hi / lo halves of the chunk's scaled q and k.
  uint32_t* qk_w = reinterpret_cast<uint32_t*>(smem);    // 4 tiles of [BT][RW]
  uint32_t* st_hi = qk_w + 4 * BT * RW;                  // [kBV][RW] S^T, words along k
  uint32_t* st_lo = st_hi + kBV * RW;
  float* Tb_s = reinterpret_cast<float*>(st_lo + kBV * RW);  // [BT][MP]  split words: BT/2 hi, BT/2 lo
  float* Pm_s = Tb_s + BT * MP;                               // [BT][MP]  split words
  uint32_t* rt_hi = reinterpret_cast<uint32_t*>(Pm_s + BT * MP);  // [kBV][TW]  R^T
  uint32_t* rt_lo = rt_hi + kBV * TW;
  uint32_t* nt_hi = rt_lo + kBV * TW;                             // [kBV][TW]  Vn^T
  uint32_t* nt_lo = nt_hi + kBV * TW;
  uint32_t* vt_hi = nt_lo + kBV * TW;                             // [kBV][TW]  (exp(gc_last - gc) Vn)^T
  uint32_t* vt_lo = vt_hi + kBV * TW;
  // Per-row factors of the chunk: exp(gc); of K S in R; of Q S in O; of Vn in the update; the
  // q and k norm factors (the split staging's).
  float* eg_s = reinterpret_cast<float*>(vt_lo + kBV * TW);
  float* rf_s = eg_s + BT;
  float* of_s = rf_s + BT;
  float* uf_s = of_s + BT;
  float* qf_s = uf_s + BT;
  float* kf_s = qf_s + BT;
  using Raw = typename Elem<ACT>::T;
  Raw* qr_s = reinterpret_cast<Raw*>(kf_s + BT);              // !RAW: [BT][K]  next chunk's raw q
  Raw* kr_s = qr_s + BT * K;                                  // !RAW: [BT][K]  raw k

  const TileJob job(p, w, tiles);
  if (!job.has_slot(p)) return job.none<ACT>(p);
  const int64_t h = job.h, hk = job.hk, v0 = job.v0, start = job.start, end = job.end, slot = job.slot;
  const bool initial = job.initial;
  const float *mats = job.mats, *gcs = job.gcs, *norms = job.norms;
  const int64_t mats_stride = job.mats_stride;
  const int tid = threadIdx.x, warp = tid / 32, g = (tid % 32) / 4, t = tid % 4;
  // Row bases (token 0) and token strides, so that the chunk loop does no view arithmetic.
  const TokenRows q_rows(p.q, hk), k_rows(p.k, hk), v_rows(p.v, h), out_rows(p.out, h);

  // The warp's state entries: (row m_of(u, r), column c_of(c)) for tiles u = 0, 1, r = 0, 1, c = 0, 1.
  const int nt = warp % 4, mt0 = 2 * (warp / 4);
  auto m_of = [&](int u, int r) { return 16 * (mt0 + u) + g + 8 * r; };
  auto c_of = [&](int c) { return 8 * nt + 2 * t + c; };
  // This thread's v entries and output entries of a chunk: rows io, io + 8 (of the warp's 16-row
  // block), columns c_of(0), c_of(1); from fixed row-0 pointers plus the chunk's rows.
  const int io = 16 * (warp / 4) + g;
  const char* const v_c0 = v_rows.base + io * v_rows.stride + int64_t(sizeof(Raw)) * (v0 + c_of(0));
  char* const o_c0 = out_rows.base + io * out_rows.stride + int64_t(sizeof(Raw)) * (v0 + c_of(0));
  uint16_t* st16_hi = reinterpret_cast<uint16_t*>(st_hi);
  uint16_t* st16_lo = reinterpret_cast<uint16_t*>(st_lo);
  float sr[2][4];
  auto publish_state = [&]() {  // sr -> S^T hi / lo for the next K S, Q S
    for (int u = 0; u < 2; ++u)
      if (16 * (mt0 + u) < K)
        for (int e = 0; e < 4; e += 2) {  // (row, column) and (row, column + 1)
          const int at = c_of(0) * 2 * RW + m_of(u, e / 2);
          if constexpr (LOW) {
            const uint32_t hi = pack_bf16x2(sr[u][e], sr[u][e + 1]);
            st16_hi[at] = uint16_t(hi & 0xffffu), st16_hi[at + 2 * RW] = uint16_t(hi >> 16);
          } else {
            uint32_t hi, lo;
            split2_bf16(sr[u][e], sr[u][e + 1], hi, lo);
            st16_hi[at] = uint16_t(hi & 0xffffu), st16_lo[at] = uint16_t(lo & 0xffffu);
            st16_hi[at + 2 * RW] = uint16_t(hi >> 16), st16_lo[at + 2 * RW] = uint16_t(lo >> 16);
          }
        }
  };
  for (int u = 0; u < 2; ++u)
    for (int e = 0; e < 4; ++e) {
      const int m = m_of(u, e / 2);
      sr[u][e] = (initial && m < K) ? Elem<ST>::load(p.state.at(slot, h, m), v0 + c_of(e % 2)) : 0.0f;
    }
  publish_state();

  // Raw q and k rows of the chunk at c (16-byte background copies, zero rows past its end) into
  // buffer `buf` (RAW: the operand tiles, row stride RW words; else the staging rows), and the
  // per-token values (gc, norm factors) of thread tid's row into registers: one chunk ahead.
  // The per-thread part of every copy's addressing is the same each chunk: copy u of this thread
  // is row r_rows + u * kRowStep, 16-byte piece x_rows (likewise r_mats + u * kMatStep, column
  // j_mats of Tb or Pm for the Tb / Pm rows).
  constexpr int kPer16 = 16 / int(sizeof(Raw)), kRowCopies = K / kPer16, kRowStep = NT / kRowCopies;
  static_assert(NT % kRowCopies == 0 && BT % kRowStep == 0, "row copies tile the block");
  const int r_rows = tid / kRowCopies, x_rows = kPer16 * (tid % kRowCopies);
  // (32-bit offsets: a chunk's rows span less than 2 GiB)
  const int q_off = int(r_rows * q_rows.stride) + x_rows * int(sizeof(Raw));
  const int k_off = int(r_rows * k_rows.stride) + x_rows * int(sizeof(Raw));
  auto prefetch_rows = [&](int64_t c, int buf) {
    const int Lc = chunk_len<BT>(c, end);
    const char* qsrc = static_cast<const char*>(q_rows.base) + c * q_rows.stride + q_off;
    const char* ksrc = static_cast<const char*>(k_rows.base) + c * k_rows.stride + k_off;
    Raw* qd = RAW ? reinterpret_cast<Raw*>(qk_w + (2 * buf) * BT * RW + r_rows * RW) + x_rows : qr_s + r_rows * K + x_rows;
    Raw* kd = RAW ? reinterpret_cast<Raw*>(qk_w + (2 * buf + 1) * BT * RW + r_rows * RW) + x_rows : kr_s + r_rows * K + x_rows;
    constexpr int kDst = RAW ? kRowStep * 2 * RW : kRowStep * K;  // Raw elements per step
#pragma unroll
    for (int u = 0; u < BT / kRowStep; ++u) {
      if (r_rows + u * kRowStep < Lc) {
        async_copy16(qd + u * kDst, qsrc + u * kRowStep * q_rows.stride);
        async_copy16(kd + u * kDst, ksrc + u * kRowStep * k_rows.stride);
      } else if (RAW) {  // the products read every row: no stale (or never written) words
        *reinterpret_cast<uint4*>(qd + u * kDst) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(kd + u * kDst) = make_uint4(0, 0, 0, 0);
      }
    }
    async_commit();
  };
  constexpr int kMatCopies = BT / 2, kMatStep = NT / kMatCopies;  // 16-byte pieces of a Tb + Pm row
  const int r_mats = tid / kMatCopies, q4 = tid % kMatCopies, j_mats = 4 * (q4 % (BT / 4));
  const int mats_dst = (q4 < BT / 4 ? 0 : BT * MP) + r_mats * MP + j_mats;  // from Tb_s
  const int mats_src = int(r_mats * mats_stride) + (q4 < BT / 4 ? 0 : kMaxBT) + j_mats;
  auto copy_mats = [&](int64_t c, int L) {  // the chunk's Tb and Pm rows, zero past L
    if (LOW && j_mats >= BT / 2) return;  // lo halves: not read
    const float* src = mats + c * mats_stride + mats_src;
    float* dst = Tb_s + mats_dst;
#pragma unroll
    for (int u = 0; u < BT / kMatStep; ++u) {
      if (r_mats + u * kMatStep < L)
        async_copy16(dst + u * kMatStep * MP, src + u * kMatStep * mats_stride);
      else
        st4(dst + u * kMatStep * MP, 0.0f, 0.0f, 0.0f, 0.0f);
    }
  };
  float nx_gc = 0.0f, nx_last = 0.0f, nx_qf = 0.0f, nx_kf = 0.0f;
  auto prefetch_scalars = [&](int64_t c) {
    const int Lc = chunk_len<BT>(c, end);
    if (tid < BT && c < end) {
      nx_last = gcs[(c + Lc - 1) * HV];
      nx_gc = tid < Lc ? gcs[(c + tid) * HV] : 0.0f;
      nx_qf = tid < Lc ? norms[(c + tid) * 2 * HK + 0] : 0.0f;
      nx_kf = tid < Lc ? norms[(c + tid) * 2 * HK + 1] : 0.0f;
    }
  };
  if (start < end) prefetch_rows(start, 0);
  prefetch_scalars(start);

  int buf = 0;  // RAW: the operand buffer of this chunk
  for (int64_t c0 = start; c0 < end; c0 += BT, buf ^= 1) {
    const int L = chunk_len<BT>(c0, end);
    // Chunk inputs: Tb and Pm by background copies (awaited before Vn = Tb R); decays and norm
    // factors from the registers prefetched a chunk ago; raw q and k from the copies of a chunk
    // ago (RAW: used as they are; else times their factors, split).
    copy_mats(c0, L);
    async_commit();
    if (tid < BT) {
      const float eg = tid < L ? expf(nx_gc) : 0.0f, ed = tid < L ? expf(nx_last - nx_gc) : 0.0f;
      eg_s[tid] = eg;
      rf_s[tid] = RAW ? eg * nx_kf : eg;
      of_s[tid] = RAW ? eg * nx_qf : eg;
      uf_s[tid] = RAW ? ed * nx_kf : ed;
      qf_s[tid] = nx_qf;
      kf_s[tid] = nx_kf;
    }
    prefetch_scalars(c0 + BT);
    // This thread's v entries for R (rows 16 mt + g (+ 8), columns c_of(0 / 1)), loaded early
    // and kept raw: converted where R is formed, so the load latency overlaps the work between.
    Raw v_in[4];
    {
      const Raw* vr = reinterpret_cast<const Raw*>(v_c0 + c0 * v_rows.stride);
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // row io + 8 (e / 2), column c_of(e % 2); a full chunk tests no row
        const Raw* at = reinterpret_cast<const Raw*>(reinterpret_cast<const char*>(vr) + 8 * (e / 2) * v_rows.stride) + e % 2;
        v_in[e] = (L == BT || io + 8 * (e / 2) < L) ? *at : Raw(0);
      }
    }
    async_wait<1>();  // the raw rows (all groups but the newest, Tb / Pm)
    __syncthreads();
    const uint32_t* qa_hi = qk_w + (RAW ? 2 * buf : 0) * BT * RW;  // RAW: the raw q rows
    const uint32_t* ka_hi = qk_w + (RAW ? 2 * buf + 1 : 2) * BT * RW;
    const uint32_t* qa_lo = qk_w + 1 * BT * RW;  // !RAW only
    const uint32_t* ka_lo = qk_w + 3 * BT * RW;
    if constexpr (!RAW) {
      for (int e = tid; e < BT * (K / 4); e += NT) {
        const int r = e / (K / 4), x = 4 * (e % (K / 4));
        float q[4] = {}, k[4] = {};
        if (r < L) {
          Vec4<ACT>::load(qr_s + r * K, x, q);
          Vec4<ACT>::load(kr_s + r * K, x, k);
        }
        const float qf = qf_s[r], kf = kf_s[r];
        const int at = r * RW + x / 2;
        if constexpr (LOW) {  // hi halves only
          *reinterpret_cast<uint2*>(qk_w + 0 * BT * RW + at) =
              make_uint2(pack_bf16x2(qf * q[0], qf * q[1]), pack_bf16x2(qf * q[2], qf * q[3]));
          *reinterpret_cast<uint2*>(qk_w + 2 * BT * RW + at) =
              make_uint2(pack_bf16x2(kf * k[0], kf * k[1]), pack_bf16x2(kf * k[2], kf * k[3]));
          continue;
        }
        uint32_t h0, l0, h1, l1;
        split2_bf16(qf * q[0], qf * q[1], h0, l0);
        split2_bf16(qf * q[2], qf * q[3], h1, l1);
        *reinterpret_cast<uint2*>(qk_w + 0 * BT * RW + at) = make_uint2(h0, h1);
        *reinterpret_cast<uint2*>(qk_w + 1 * BT * RW + at) = make_uint2(l0, l1);
        split2_bf16(kf * k[0], kf * k[1], h0, l0);
        split2_bf16(kf * k[2], kf * k[3], h1, l1);
        *reinterpret_cast<uint2*>(qk_w + 2 * BT * RW + at) = make_uint2(h0, h1);
        *reinterpret_cast<uint2*>(qk_w + 3 * BT * RW + at) = make_uint2(l0, l1);
      }
      __syncthreads();
    }
    if (c0 + BT < end) prefetch_rows(c0 + BT, buf ^ 1);  // RAW: the other buffer; else staging free again
    else async_commit();                                // an empty group keeps the wait counts uniform

    // K S and Q S (warp tile rows 16 mt, columns 8 nt); R = V - exp(gc) K S (to R^T, split);
    // O = exp(gc) Q S stays in registers (same tile).
    const int mt = warp / 4;
    float o[4];
    {
      float ks[4] = {}, qs[4] = {}, ks_c[4] = {}, qs_c[4] = {};
      const SplitTile SB{st_hi, st_lo, RW};
#pragma unroll 4
      for (int w0 = 0; w0 < K / 2; w0 += 8) {
        if constexpr (LOW) {  // q / k operands: raw rows, or the hi halves of the scaled ones
          uint32_t b[2], ka[4], qa[4];
          load_b1(st_hi, RW, 8 * nt, w0, b);
          load_a1(ka_hi, RW, 16 * mt, w0, ka);
          load_a1(qa_hi, RW, 16 * mt, w0, qa);
          mma_bf16(ks, ka, b);
          mma_bf16(qs, qa, b);
          continue;
        }
        uint32_t bhi[2], blo[2];
        load_b(SB, 8 * nt, w0, bhi, blo);
        if constexpr (RAW) {
          uint32_t ka[4], qa[4];
          load_a1(ka_hi, RW, 16 * mt, w0, ka);
          load_a1(qa_hi, RW, 16 * mt, w0, qa);
          mma_mixed(ks, ks_c, ka, bhi, blo);
          mma_mixed(qs, qs_c, qa, bhi, blo);
        } else {
          uint32_t khi[4], klo[4], qhi[4], qlo[4];
          load_a(SplitTile{ka_hi, ka_lo, RW}, 16 * mt, w0, khi, klo);
          load_a(SplitTile{qa_hi, qa_lo, RW}, 16 * mt, w0, qhi, qlo);
          mma_split(ks, ks_c, khi, klo, bhi, blo);
          mma_split(qs, qs_c, qhi, qlo, bhi, blo);
        }
      }
      float r[4];
      for (int e = 0; e < 4; ++e) {
        const int i = 16 * mt + g + 8 * (e / 2);
        r[e] = i < L ? Elem<ACT>::load(&v_in[e], 0) - rf_s[i] * (ks[e] + ks_c[e]) : 0.0f;
        o[e] = of_s[i] * (qs[e] + qs_c[e]);
      }
      store_tile_t<LOW>(rt_hi, rt_lo, TW, 16 * mt, c_of(0), r, 1.0f, 1.0f);
    }
    async_wait<1>();  // Tb / Pm (the newest group is the next chunk's raw rows)
    __syncthreads();

    // Vn = Tb R (Tb lower triangular: 16-row blocks up to the diagonal) to Vn^T and, times the
    // update factor (exp(gc_last - gc), RAW: times the k norm factor), to Vd^T (both split).
    const SplitTile TbA{reinterpret_cast<const uint32_t*>(Tb_s), reinterpret_cast<const uint32_t*>(Tb_s) + BT / 2, MP};
    const SplitTile PmA{reinterpret_cast<const uint32_t*>(Pm_s), reinterpret_cast<const uint32_t*>(Pm_s) + BT / 2, MP};
    {
      float vn[4] = {}, corr[4] = {};
      const SplitTile RB{rt_hi, rt_lo, TW};
      tri_product<LOW>(vn, corr, TbA, RB, mt, nt);
      for (int e = 0; e < 4; ++e) vn[e] += corr[e];
      const int i0 = 16 * mt + g;
      store_tile_t<LOW>(nt_hi, nt_lo, TW, 16 * mt, c_of(0), vn, 1.0f, 1.0f);
      store_tile_t<LOW>(vt_hi, vt_lo, TW, 16 * mt, c_of(0), vn, uf_s[i0], uf_s[i0 + 8]);
    }
    __syncthreads();

    // O += Pm Vn, to the output.
    {
      float corr[4] = {};
      const SplitTile VnB{nt_hi, nt_lo, TW};
      tri_product<LOW>(o, corr, PmA, VnB, mt, nt);
      char* orow = o_c0 + c0 * out_rows.stride;
#pragma unroll
      for (int e = 0; e < 4; ++e)  // as v_in
        if (L == BT || io + 8 * (e / 2) < L) Elem<ACT>::store(orow + 8 * (e / 2) * out_rows.stride, e % 2, o[e] + corr[e]);
    }

    // S <- exp(gc_last) S + K^T (exp(gc_last - gc) Vn) on the warp's two state tiles (one B
    // fragment load serves both).
    {
      const float e_last = eg_s[L - 1];
      const SplitTile VB{vt_hi, vt_lo, TW};
      float corr[2][4] = {};
      for (int u = 0; u < 2; ++u)
        for (int e = 0; e < 4; ++e) sr[u][e] *= e_last;
      if (16 * mt0 < K) {
#pragma unroll
        for (int w0 = 0; w0 < BT / 2; w0 += 8) {
          if constexpr (LOW) {
            uint32_t b[2];
            load_b1(vt_hi, TW, 8 * nt, w0, b);
#pragma unroll
            for (int u = 0; u < 2; ++u) {
              if (16 * (mt0 + u) >= K) continue;
              uint32_t a[4];
              load_a1_trans(ka_hi, RW, 16 * (mt0 + u), 2 * w0, a);
              mma_bf16(sr[u], a, b);
            }
            continue;
          }
          uint32_t bhi[2], blo[2];
          load_b(VB, 8 * nt, w0, bhi, blo);
#pragma unroll
          for (int u = 0; u < 2; ++u) {
            if (16 * (mt0 + u) >= K) continue;
            if constexpr (RAW) {
              uint32_t a[4];
              load_a1_trans(ka_hi, RW, 16 * (mt0 + u), 2 * w0, a);
              mma_mixed(sr[u], corr[u], a, bhi, blo);
            } else {
              uint32_t ahi[4], alo[4];
              load_a_trans(SplitTile{ka_hi, ka_lo, RW}, 16 * (mt0 + u), 2 * w0, ahi, alo);
              mma_split(sr[u], corr[u], ahi, alo, bhi, blo);
            }
          }
        }
      }
      for (int u = 0; u < 2; ++u)
        for (int e = 0; e < 4; ++e) sr[u][e] += corr[u][e];
      publish_state();
    }
    __syncthreads();
  }
  for (int u = 0; u < 2; ++u)
    for (int e = 0; e < 4; ++e) {
      const int m = m_of(u, e / 2);
      if (m < K) Elem<ST>::store(p.state.at(slot, h, m), v0 + c_of(e % 2), sr[u][e]);
    }
}
#endif  // GDN_HAVE_MMA

#include "prefill_state_sm90.hpp"
#include "prefill_state_reg.hpp"

// The dynamic shared memory a kernel launches with (name: the kernel's, for the error).
template <class F>
void set_smem(F kernel, size_t bytes, const char* name) {
  const gpuError_t e = gpuFuncSetAttribute(kernel, gpuFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != gpuSuccess) fail(GDN_ERROR_DEVICE, "%s smem: %s", name, gpuGetErrorString(e));
}

// q, k, v and out rows 4-element aligned and K, V multiples of 4 (vector accesses).
bool rows_vec4(const GdnProblem& p) {
  return p.d.K % 4 == 0 && p.d.V % 4 == 0 && head_rows_aligned(p.q, 4) && head_rows_aligned(p.k, 4) &&
         head_rows_aligned(p.v, 4) && head_rows_aligned(p.out, 4);
}

// The tensor-core kernels' conditions: sm_80+, K = 64 or 128 (compile-time shapes), whole 32-column
// tiles, 16-byte aligned q / k rows, and the shared memory (185 KB at K = 128 with 2-byte
// activations: H100 yes, A100 no).
#if GDN_HAVE_MMA
bool use_mma(const Device& dev, const GdnProblem& p) {
  // Raw q / k rows copied 16 bytes at a time: row starts 16-byte aligned.
  const int64_t per16 = 16 / dtype_bytes(p.q.dt);  // q and k share the activation dtype
  if (!head_rows_aligned(p.q, per16) || !head_rows_aligned(p.k, per16)) return false;
  return dev.arch >= 80 && (p.d.K == 64 || p.d.K == 128) && p.d.V % kBV == 0 &&
         size_t(mma_smem_words(p.d.K, p.q.dt)) * 4 <= dev.max_smem_optin;
}
// And the warpgroup state kernel's: a library with sm_90a code on an sm_90 device, bf16
// activations and products, K = 128, 16-byte aligned v rows, 4-byte aligned out rows.
bool use_wgmma(const Device& dev, const GdnProblem& p) {
#if defined(GDN_HAVE_SM90A) || defined(GDN_GPU_SIM)
  return dev.arch == 90 && p.bf16_products && p.q.dt == GDN_DTYPE_BF16 && p.d.K == kWgK && p.d.V % kBV == 0 &&
         head_rows_aligned(p.v, 8) && head_rows_aligned(p.out, 2) && kWgSmemBytes <= dev.max_smem_optin;
#else
  (void)dev, (void)p;
  return false;
#endif
}
// And the register state kernel's for fp32 products (the default precision): the same, with split
// operands (prefill_state_reg.hpp), 16-byte aligned out rows.
bool use_reg(const Device& dev, const GdnProblem& p) {
#if defined(GDN_HAVE_SM90A) || defined(GDN_GPU_SIM)
  return dev.arch == 90 && !p.bf16_products && p.q.dt == GDN_DTYPE_BF16 && p.d.K == kRgK && p.d.V % kBV == 0 &&
         head_rows_aligned(p.v, 8) && head_rows_aligned(p.out, 8) && kRgSmemBytes <= dev.max_smem_optin;
#else
  (void)dev, (void)p;
  return false;
#endif
}
#endif

template <int32_t ACT, int32_t ST, int BT>
void launch(const Device& dev, const GdnProblem& p, const Work& w, gpuStream_t stream) {
  const bool vec = rows_vec4(p);
  launch_plain(offsets_kernel, 1, kThreads, 0, stream, p, BT, w.offsets);
  check_launch("prefill offsets_kernel");

#if GDN_HAVE_MMA
  const bool mma = BT == kMmaBT && use_mma(dev, p);
#else
  const bool mma = false;
#endif
  const int64_t max_chunks = (p.num_tokens + BT - 1) / BT + p.num_seqs;
  if (max_chunks > 0) {
    const size_t smem = chunk_smem_floats<BT>(p.d.K, mma && raw_qk(ACT)) * sizeof(float);
    auto run = [&](auto kernel) {
      set_smem(kernel, smem, "prefill chunk_kernel");
      launch_plain(kernel, dim3(unsigned(max_chunks), unsigned(p.d.HK)), kThreads, smem, stream, p, w);
      check_launch("prefill chunk_kernel");
    };
#if GDN_HAVE_MMA
    if (mma) {
      p.d.K == 64 ? run(chunk_kernel<ACT, BT, true, 64>) : run(chunk_kernel<ACT, BT, true, 128>);
    } else
#endif
    if (vec)
      run(chunk_kernel<ACT, BT, true, 0>);
    else
      run(chunk_kernel<ACT, BT, false, 0>);
  }

  // Step 3: one block per (sequence, value head, column tile).
  const int64_t tiles = (p.d.V + kBV - 1) / kBV;
  auto run = [&](auto kernel, int threads, size_t smem, const char* name) {
    set_smem(kernel, smem, name);
    launch_plain(kernel, unsigned(p.num_seqs * p.d.HV * tiles), threads, smem, stream, p, w, tiles);
    check_launch(name);
  };
#if GDN_HAVE_MMA
  if constexpr (ACT == GDN_DTYPE_BF16) {
    if (mma && use_wgmma(dev, p)) {
      run(state_wgmma_kernel<ST>, kWgThreads, kWgSmemBytes, "prefill state_wgmma_kernel");
      return;
    }
    if (mma && use_reg(dev, p)) {
      run(state_reg_kernel<ST>, kRgThreads, kRgSmemBytes, "prefill state_reg_kernel");
      return;
    }
  }
  if (mma) {
    const size_t smem = size_t(mma_smem_words(p.d.K, p.q.dt)) * 4;
    const char* name = "prefill state_mma_kernel";
    if (p.bf16_products)
      p.d.K == 64 ? run(state_mma_kernel<ACT, ST, 64, true>, kMmaThreads, smem, name)
                  : run(state_mma_kernel<ACT, ST, 128, true>, kMmaThreads, smem, name);
    else
      p.d.K == 64 ? run(state_mma_kernel<ACT, ST, 64, false>, kMmaThreads, smem, name)
                  : run(state_mma_kernel<ACT, ST, 128, false>, kMmaThreads, smem, name);
    return;
  }
#endif
  const size_t smem = state_smem_floats<BT>(p.d.K) * sizeof(float);
  if (vec)
    run(state_kernel<ACT, ST, BT, true>, 8 * BT, smem, "prefill state_kernel");
  else
    run(state_kernel<ACT, ST, BT, false>, 8 * BT, smem, "prefill state_kernel");
}

template <int BT>
bool fits(const Device& dev, int64_t K) {
  return chunk_smem_floats<BT>(K) * sizeof(float) <= dev.max_smem_optin &&
         state_smem_floats<BT>(K) * sizeof(float) <= dev.max_smem_optin;
}

}  // namespace

size_t prefill_workspace(const Device&, const LayerDims& d, int64_t tokens, int64_t seqs) {
  return work_bytes(d, tokens, seqs, nullptr, nullptr) + 256;  // + 256: room to align the base
}

#if defined(GDN_AMD_PATHS)
// 64 KB of LDS a workgroup (every AMD target): chunks of 16 tokens at K = 128 (K > 128 does not
// fit: the layer is refused).
constexpr int kMinBT = 16;
#else
constexpr int kMinBT = 32;  // NVIDIA sm_80+: at least 163 KB a block
#endif

bool prefill_fits(const Device& dev, int64_t K) { return fits<kMinBT>(dev, K); }

void prefill(const Device& dev, const GdnProblem& p, void* ws, size_t, void* stream) {
  if (p.num_seqs == 0) return;
  char* base = static_cast<char*>(ws);
  base += (256 - reinterpret_cast<uintptr_t>(base) % 256) % 256;
  Work w{};
  work_bytes(p.d, p.num_tokens, p.num_seqs, &w, base);
  // The largest chunk the device's shared memory allows (64, 32; on AMD also 16): the same
  // function either way.
  const int bt = fits<64>(dev, p.d.K) ? 64 : fits<32>(dev, p.d.K) ? 32 : 16;
  dispatch_act(p.q.dt, [&](auto a) {
    dispatch_state(p.state.dt, [&](auto s) {
      constexpr int32_t A = decltype(a)::value, S = decltype(s)::value;
      if (bt == 64)
        launch<A, S, 64>(dev, p, w, gpuStream_t(stream));
      else if (bt == 32 || kMinBT == 32)
        launch<A, S, 32>(dev, p, w, gpuStream_t(stream));
#if defined(GDN_AMD_PATHS)
      else
        launch<A, S, 16>(dev, p, w, gpuStream_t(stream));
#endif
    });
  });
}

}  // namespace gdn::gpu
