// Chunked gated delta rule (WY form) on the GPU. One block per (sequence, value head, tile of 32
// state columns) walks the sequence chunk by chunk with its K x 32 state tile in shared memory.
// Per chunk of L <= BT tokens (gc = in-chunk cumulative log-decay, S = state entering the chunk):
//   A[i][j] = beta_i (k_i . k_j) exp(gc_i - gc_j), j < i
//   R_i     = beta_i (v_i - exp(gc_i) k_i^T S)
//   (I + A) Vn = R                                  forward substitution
//   o_i     = exp(gc_i) q_i^T S + sum_{j<=i} (q_i . k_j) exp(gc_i - gc_j) Vn_j
//   S      <- exp(gc_last) S + sum_j exp(gc_last - gc_j) k_j Vn_j^T
// This is the CPU backend's W/U form with W S folded into R (Vn = T R, T = (I + A)^-1).
#include "launch.hpp"
#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {
namespace {

constexpr int kThreads = 256, kBV = 32, kLanes = 32, kSub = kThreads / kLanes;

template <int BT>
size_t smem_floats(int64_t K) {
  return size_t(2 * BT * K + BT * (BT + 1) + BT * kBV + K * kBV + 2 * BT);
}

template <int32_t ACT, int32_t ST, int BT>
__global__ void __launch_bounds__(kThreads) prefill_kernel(GdnProblem p, int64_t tiles) {
  extern __shared__ float smem[];
  const int64_t K = p.d.K, V = p.d.V, HV = p.d.HV, T = p.num_tokens;
  float* q_s = smem;                   // [BT][K]  normalised, scaled q
  float* k_s = q_s + BT * K;           // [BT][K]  normalised k
  float* A_s = k_s + BT * K;           // [BT][BT + 1]
  float* R_s = A_s + BT * (BT + 1);    // [BT][kBV]  R, then Vn
  float* S_s = R_s + BT * kBV;         // [K][kBV]
  float* gc_s = S_s + K * kBV;         // [BT]
  float* beta_s = gc_s + BT;           // [BT]
  constexpr int AS = BT + 1;

  const int64_t tile = blockIdx.x % tiles, h = (blockIdx.x / tiles) % HV, n = blockIdx.x / (tiles * HV);
  const int64_t hk = h / (HV / p.d.HK), v0 = tile * kBV;
  const int tid = threadIdx.x, lane = tid % kLanes, sg = tid / kLanes;
  int64_t start = p.cu_seqlens.idx(n), end = p.cu_seqlens.idx(n + 1);
  start = start < 0 ? 0 : (start > T ? T : start);
  end = end < start ? start : (end > T ? T : end);
  const int64_t slot = load_index(p.slot_idx.at(n, 0), p.slot_idx.dt);
  if (slot < 0 || slot >= p.state.num_slots) {
    for (int64_t e = tid; e < (end - start) * kBV; e += kThreads) {
      const int64_t t = start + e / kBV, j = v0 + e % kBV;
      if (j < V) Elem<ACT>::store(p.out.at(t, 0, h), j, 0.0f);
    }
    return;
  }
  const bool initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
  for (int64_t e = tid; e < K * kBV; e += kThreads) {
    const int64_t i = e / kBV, j = v0 + e % kBV;
    S_s[e] = (initial && j < V) ? Elem<ST>::load(p.state.at(slot, h, i), j) : 0.0f;
  }

  for (int64_t c0 = start; c0 < end; c0 += BT) {
    const int L = int(end - c0 < BT ? end - c0 : BT);
    // q, k rows (one 32-lane subgroup per row), normalised in fp32.
    for (int r = sg; r < BT; r += kSub) {
      float qq = 0.0f, kk = 0.0f;
      for (int64_t i = lane; i < K; i += kLanes) {
        const float qi = r < L ? Elem<ACT>::load(p.q.at(c0 + r, 0, hk), i) : 0.0f;
        const float ki = r < L ? Elem<ACT>::load(p.k.at(c0 + r, 0, hk), i) : 0.0f;
        q_s[r * K + i] = qi;
        k_s[r * K + i] = ki;
        qq += qi * qi;
        kk += ki * ki;
      }
      float qs = p.scale, ks = 1.0f;
      if (p.l2norm) {
        qs *= 1.0f / sqrtf(subgroup32_sum(qq) + kL2NormEps);
        ks = 1.0f / sqrtf(subgroup32_sum(kk) + kL2NormEps);
      }
      for (int64_t i = lane; i < K; i += kLanes) {
        q_s[r * K + i] *= qs;
        k_s[r * K + i] *= ks;
      }
    }
    if (tid < BT) {
      float g = 0.0f, beta = 0.0f;
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
      gc_s[tid] = g;
      beta_s[tid] = beta;
    }
    __syncthreads();
    if (tid == 0)
      for (int i = 1; i < BT; ++i) gc_s[i] += gc_s[i - 1];
    __syncthreads();

    // A (strictly lower) and R.
    for (int e = tid; e < BT * BT; e += kThreads) {
      const int i = e / BT, j = e % BT;
      if (j < i && i < L) {
        float d = 0.0f;
        for (int64_t c = 0; c < K; ++c) d += k_s[i * K + c] * k_s[j * K + c];
        A_s[i * AS + j] = beta_s[i] * d * expf(gc_s[i] - gc_s[j]);
      }
    }
    for (int e = tid; e < BT * kBV; e += kThreads) {
      const int i = e / kBV, c = e % kBV;
      const int64_t j = v0 + c;
      float r = 0.0f;
      if (i < L && j < V) {
        float ks = 0.0f;
        for (int64_t m = 0; m < K; ++m) ks += k_s[i * K + m] * S_s[m * kBV + c];
        r = beta_s[i] * (Elem<ACT>::load(p.v.at(c0 + i, 0, h), j) - expf(gc_s[i]) * ks);
      }
      R_s[e] = r;
    }
    __syncthreads();

    // Forward substitution: row i of Vn once rows < i are final. 8 lanes per column share the sum.
    {
      const int c = tid / 8, part = tid % 8;
      for (int i = 1; i < L; ++i) {
        float s = 0.0f;
        for (int j = part; j < i; j += 8) s += A_s[i * AS + j] * R_s[j * kBV + c];
        s += shfl_xor32(s, 4);
        s += shfl_xor32(s, 2);
        s += shfl_xor32(s, 1);
        if (part == 0) R_s[i * kBV + c] -= s;
        __syncthreads();
      }
    }

    // Q K^T (causal, with decay) into A, then the outputs.
    for (int e = tid; e < BT * BT; e += kThreads) {
      const int i = e / BT, j = e % BT;
      if (j <= i && i < L) {
        float d = 0.0f;
        for (int64_t c = 0; c < K; ++c) d += q_s[i * K + c] * k_s[j * K + c];
        A_s[i * AS + j] = d * expf(gc_s[i] - gc_s[j]);
      }
    }
    __syncthreads();
    for (int e = tid; e < L * kBV; e += kThreads) {
      const int i = e / kBV, c = e % kBV;
      const int64_t j = v0 + c;
      float o = 0.0f;
      for (int64_t m = 0; m < K; ++m) o += q_s[i * K + m] * S_s[m * kBV + c];
      o *= expf(gc_s[i]);
      for (int jj = 0; jj <= i; ++jj) o += A_s[i * AS + jj] * R_s[jj * kBV + c];
      if (j < V) Elem<ACT>::store(p.out.at(c0 + i, 0, h), j, o);
    }
    __syncthreads();

    // State to the end of the chunk.
    const float last = gc_s[L - 1], e_last = expf(last);
    for (int64_t e = tid; e < K * kBV; e += kThreads) {
      const int64_t m = e / kBV;
      const int c = int(e % kBV);
      float s = S_s[e] * e_last;
      for (int j = 0; j < L; ++j) s += expf(last - gc_s[j]) * k_s[j * K + m] * R_s[j * kBV + c];
      S_s[e] = s;
    }
    __syncthreads();
  }
  for (int64_t e = tid; e < K * kBV; e += kThreads) {
    const int64_t i = e / kBV, j = v0 + e % kBV;
    if (j < V) Elem<ST>::store(p.state.at(slot, h, i), j, S_s[e]);
  }
}

template <int32_t ACT, int32_t ST, int BT>
void launch(const GdnProblem& p, gpuStream_t stream) {
  const int64_t tiles = (p.d.V + kBV - 1) / kBV;
  const size_t smem = smem_floats<BT>(p.d.K) * sizeof(float);
  auto kernel = prefill_kernel<ACT, ST, BT>;
  check(gpuFuncSetAttribute(kernel, gpuFuncAttributeMaxDynamicSharedMemorySize, int(smem)), "prefill smem");
  kernel<<<unsigned(p.num_seqs * p.d.HV * tiles), kThreads, smem, stream>>>(p, tiles);
  check_launch("prefill_kernel");
}

}  // namespace

size_t prefill_workspace(const Device&, const LayerDims&, int64_t, int64_t) { return 0; }

bool prefill_fits(const Device& dev, int64_t K) { return smem_floats<32>(K) * sizeof(float) <= dev.max_smem_optin; }

void prefill(const Device& dev, const GdnProblem& p, void*, size_t, void* stream) {
  if (p.num_seqs == 0) return;
  // Chunk 64 where the device's shared memory allows it, else 32 (same function either way).
  const bool big = smem_floats<64>(p.d.K) * sizeof(float) <= dev.max_smem_optin;
  dispatch_act(p.q.dt, [&](auto a) {
    dispatch_state(p.state.dt, [&](auto s) {
      constexpr int32_t A = decltype(a)::value, S = decltype(s)::value;
      if (big)
        launch<A, S, 64>(p, gpuStream_t(stream));
      else
        launch<A, S, 32>(p, gpuStream_t(stream));
    });
  });
}

}  // namespace gdn::gpu
