// Per-token inputs of the gated delta rule, shared by the CPU decode and prefill loops:
// q and k (L2-normalised when asked, q scaled), v, and the gate (log-decay g, beta).
#pragma once

#include <cmath>

#include "kernels.hpp"

namespace gdn::cpu {

inline void l2_normalize(float* x, int64_t n) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss + kL2NormEps);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// Leading indices (i0, i1): decode (b, t), prefill (token, 0). h is the value head.
inline void load_token(const GdnProblem& p, int64_t i0, int64_t i1, int64_t h, float* q, float* k, float* v,
                       float* g, float* beta) {
  const int64_t K = p.d.K, V = p.d.V, hk = h / (p.d.HV / p.d.HK);
  load_row(p.q.at(i0, i1, hk), p.q.dt, K, q);
  load_row(p.k.at(i0, i1, hk), p.k.dt, K, k);
  load_row(p.v.at(i0, i1, h), p.v.dt, V, v);
  if (p.l2norm) {
    l2_normalize(q, K);
    l2_normalize(k, K);
  }
  for (int64_t i = 0; i < K; ++i) q[i] *= p.scale;
  if (p.raw_gate) {
    *g = gate_g(load_float(p.a.at(i0, i1, h), p.a.dt), p.A_log.f(h), p.dt_bias.f(h));
    *beta = sigmoid(load_float(p.b.at(i0, i1, h), p.b.dt));
  } else {
    *g = load_float(p.g.at(i0, i1, h), p.g.dt);
    *beta = load_float(p.beta.at(i0, i1, h), p.beta.dt);
  }
}

inline bool slot_ok(int64_t slot, int64_t num_slots) { return slot >= 0 && slot < num_slots; }

// State of (slot, head) <-> dense fp32 K x V scratch.
inline void load_state(const StateView& s, int64_t slot, int64_t h, int64_t K, int64_t V, float* S) {
  for (int64_t i = 0; i < K; ++i) load_row(s.at(slot, h, i), s.dt, V, S + i * V);
}
inline void store_state(const StateView& s, int64_t slot, int64_t h, int64_t K, int64_t V, const float* S) {
  for (int64_t i = 0; i < K; ++i) store_row(s.at(slot, h, i), s.dt, V, S + i * V);
}

}  // namespace gdn::cpu
