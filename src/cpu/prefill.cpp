// Chunked gated delta rule (chunk 64, WY form) over a varlen batch. Per (sequence, value head),
// per chunk of L <= 64 tokens with in-chunk cumulative log-decay gc:
//   A[i][j] = beta_i (k_i . k_j) exp(gc_i - gc_j), j < i          (strictly lower triangular)
//   (I + A) W = beta * k * exp(gc),  (I + A) U = beta * v          (forward substitution)
//   Vn = U - W S                                                   (S: state entering the chunk)
//   o_i = exp(gc_i) q_i^T S + sum_{j<=i} (q_i . k_j) exp(gc_i - gc_j) Vn_j
//   S  <- exp(gc_last) S + sum_j exp(gc_last - gc_j) k_j Vn_j^T
#include <cmath>
#include <cstring>

#include "token_inputs.hpp"

namespace gdn::cpu {

namespace {
constexpr int64_t kChunk = 64;

float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
// y -= c * x
void axpy_neg(float* __restrict y, const float* __restrict x, float c, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] -= c * x[i];
}
void axpy(float* __restrict y, const float* __restrict x, float c, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += c * x[i];
}

struct Scratch {
  float *S, *Q, *Kc, *W, *U, *gc, *beta, *o;
};

void run_chunk(const GdnProblem& p, const Scratch& s, int64_t t0, int64_t L, int64_t h) {
  const int64_t K = p.d.K, V = p.d.V;
  float* S = s.S;
  float g_sum = 0.0f;
  for (int64_t i = 0; i < L; ++i) {
    float g;
    load_token(p, t0 + i, 0, h, s.Q + i * K, s.Kc + i * K, s.U + i * V, &g, &s.beta[i]);
    g_sum += g;
    s.gc[i] = g_sum;
  }
  // A (row i, columns j < i), then forward substitution for W and U in place.
  for (int64_t i = 0; i < L; ++i) {
    float* Wi = s.W + i * K;
    const float bi = s.beta[i], ei = std::exp(s.gc[i]);
    for (int64_t c = 0; c < K; ++c) Wi[c] = bi * ei * s.Kc[i * K + c];
    float* Ui = s.U + i * V;
    for (int64_t c = 0; c < V; ++c) Ui[c] *= bi;
    for (int64_t j = 0; j < i; ++j) {
      const float aij = bi * dot(s.Kc + i * K, s.Kc + j * K, K) * std::exp(s.gc[i] - s.gc[j]);
      axpy_neg(Wi, s.W + j * K, aij, K);
      axpy_neg(Ui, s.U + j * V, aij, V);
    }
  }
  // Vn = U - W S (in U).
  for (int64_t i = 0; i < L; ++i)
    for (int64_t c = 0; c < K; ++c) axpy_neg(s.U + i * V, S + c * V, s.W[i * K + c], V);
  // Outputs, with S still the chunk's initial state.
  for (int64_t i = 0; i < L; ++i) {
    const float* Qi = s.Q + i * K;
    std::memset(s.o, 0, size_t(V) * 4);
    for (int64_t c = 0; c < K; ++c) axpy(s.o, S + c * V, Qi[c], V);
    const float ei = std::exp(s.gc[i]);
    for (int64_t c = 0; c < V; ++c) s.o[c] *= ei;
    for (int64_t j = 0; j <= i; ++j) {
      const float w = dot(Qi, s.Kc + j * K, K) * std::exp(s.gc[i] - s.gc[j]);
      axpy(s.o, s.U + j * V, w, V);
    }
    store_row(p.out.at(t0 + i, 0, h), p.out.dt, V, s.o);
  }
  // State to the end of the chunk.
  const float last = s.gc[L - 1], e_last = std::exp(last);
  for (int64_t c = 0; c < K * V; ++c) S[c] *= e_last;
  for (int64_t j = 0; j < L; ++j) {
    const float ej = std::exp(last - s.gc[j]);
    const float* Kj = s.Kc + j * K;
    for (int64_t c = 0; c < K; ++c) axpy(S + c * V, s.U + j * V, ej * Kj[c], V);
  }
}

}  // namespace

size_t prefill_scratch_floats(const LayerDims& d) {
  return Arena::need({d.K * d.V, kChunk * d.K, kChunk * d.K, kChunk * d.K, kChunk * d.V, kChunk,
                      kChunk, d.V});
}

void prefill(ThreadPool& pool, const GdnProblem& p, void* ws, size_t ws_bytes) {
  const int64_t N = p.num_seqs, HV = p.d.HV, K = p.d.K, V = p.d.V;
  const size_t per_thread = prefill_scratch_floats(p.d) * sizeof(float);
  (void)ws_bytes;
  pool.parallel_for(N * HV, 1, [&](int64_t begin, int64_t end, int32_t tid) {
    Arena arena(static_cast<char*>(ws) + size_t(tid) * per_thread, per_thread);
    Scratch s;
    s.S = arena.floats(K * V);
    s.Q = arena.floats(kChunk * K);
    s.Kc = arena.floats(kChunk * K);
    s.W = arena.floats(kChunk * K);
    s.U = arena.floats(kChunk * V);
    s.gc = arena.floats(kChunk);
    s.beta = arena.floats(kChunk);
    s.o = arena.floats(V);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / HV, h = task % HV;
      const int64_t start = p.cu_seqlens.idx(n), stop = p.cu_seqlens.idx(n + 1);
      const int64_t slot = load_index(p.slot_idx.at(n, 0), p.slot_idx.dt);
      if (!slot_ok(slot, p.state.num_slots)) {
        for (int64_t t = start; t < stop; ++t) zero_row(p.out.at(t, 0, h), p.out.dt, V);
        continue;
      }
      const bool initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
      if (initial)
        load_state(p.state, slot, h, K, V, s.S);
      else
        std::memset(s.S, 0, size_t(K * V) * 4);
      for (int64_t t0 = start; t0 < stop; t0 += kChunk) run_chunk(p, s, t0, stop - t0 < kChunk ? stop - t0 : kChunk, h);
      store_state(p.state, slot, h, K, V, s.S);
    }
  });
}

}  // namespace gdn::cpu
