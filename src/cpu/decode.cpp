// Recurrent gated delta rule, a few tokens per sequence, state in place in the slot pool.
#include <cmath>
#include <cstring>

#include "token_inputs.hpp"

namespace gdn::cpu {

size_t decode_scratch_floats(const LayerDims& d) { return Arena::need({d.K * d.V, d.K, d.K, d.V, d.V, d.V}); }

namespace {

// One token: S = S*exp(g); u = beta*(v - S^T k); S += k u^T; o = S^T q. Two passes over S.
void delta_step(float* __restrict S, int64_t K, int64_t V, const float* __restrict q, const float* __restrict k,
                const float* __restrict v, float g, float beta, float* __restrict u, float* __restrict o) {
  const float decay = std::exp(g);
  std::memset(u, 0, size_t(V) * 4);
  for (int64_t i = 0; i < K; ++i) {
    float* __restrict row = S + i * V;
    const float ki = k[i];
    for (int64_t j = 0; j < V; ++j) {
      const float s = row[j] * decay;
      row[j] = s;
      u[j] += s * ki;
    }
  }
  for (int64_t j = 0; j < V; ++j) u[j] = beta * (v[j] - u[j]);
  std::memset(o, 0, size_t(V) * 4);
  for (int64_t i = 0; i < K; ++i) {
    float* __restrict row = S + i * V;
    const float ki = k[i], qi = q[i];
    for (int64_t j = 0; j < V; ++j) {
      const float s = row[j] + ki * u[j];
      row[j] = s;
      o[j] += s * qi;
    }
  }
}

}  // namespace

void decode(ThreadPool& pool, const GdnProblem& p, void* ws, size_t ws_bytes) {
  const int64_t B = p.num_seqs, Tn = p.tokens_per_seq, HV = p.d.HV, K = p.d.K, V = p.d.V;
  const size_t per_thread = decode_scratch_floats(p.d) * sizeof(float);
  const bool spec = p.per_token_slots;
  pool.parallel_for(B * HV, 1, [&](int64_t begin, int64_t end, int32_t tid) {
    Arena arena(static_cast<char*>(ws) + size_t(tid) * per_thread, per_thread);
    float *S = arena.floats(K * V), *q = arena.floats(K), *k = arena.floats(K);
    float *v = arena.floats(V), *u = arena.floats(V), *o = arena.floats(V);
    (void)ws_bytes;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / HV, h = task % HV;
      int64_t read_slot;
      if (!spec) {
        read_slot = load_index(p.slot_idx.at(b, 0), p.slot_idx.dt);
      } else {
        const int64_t acc = p.num_accepted.present() ? p.num_accepted.idx(b) : 1;
        read_slot = (acc >= 1 && acc <= Tn) ? load_index(p.slot_idx.at(b, acc - 1), p.slot_idx.dt) : -1;
      }
      if (!slot_ok(read_slot, p.state.num_slots)) {
        for (int64_t t = 0; t < Tn; ++t) zero_row(p.out.at(b, t, h), p.out.dt, V);
        continue;
      }
      load_state(p.state, read_slot, h, K, V, S);
      for (int64_t t = 0; t < Tn; ++t) {
        float g, beta;
        load_token(p, b, t, h, q, k, v, &g, &beta);
        delta_step(S, K, V, q, k, v, g, beta, u, o);
        store_row(p.out.at(b, t, h), p.out.dt, V, o);
        if (spec) {
          const int64_t write_slot = load_index(p.slot_idx.at(b, t), p.slot_idx.dt);
          if (slot_ok(write_slot, p.state.num_slots)) store_state(p.state, write_slot, h, K, V, S);
        }
      }
      if (!spec) store_state(p.state, read_slot, h, K, V, S);
    }
  });
}

}  // namespace gdn::cpu
