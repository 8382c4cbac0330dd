// Random gated-delta-rule problems (decode and prefill) and their float64 oracle.
#pragma once

#include <map>

#include "test_util.hpp"

namespace gdnt {

struct GdnCase {
  int64_t HK, HV, K, V;
  gdn_dtype act, state_dt;
  bool raw_gate = true, l2norm = true, grouped = false;
  double scale;
  int64_t T = 0;        // tokens (flat)
  int64_t slots = 0;
  Buf q, k, v, a, b, g, beta, A_log, dt_bias, state, out;
  std::vector<int64_t> lead;  // leading dims of token tensors: {T} or {B, Tn}

  GdnCase(const gdn_layer_config& c, std::vector<int64_t> lead_dims, int64_t num_slots, uint64_t seed, bool raw = true)
      : HK(c.num_k_heads), HV(c.num_v_heads), K(c.head_k_dim), V(c.head_v_dim), act(gdn_dtype(c.act_dtype)),
        state_dt(gdn_dtype(c.state_dtype)), raw_gate(raw), l2norm(c.use_qk_l2norm != 0),
        scale(c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(c.head_k_dim))), slots(num_slots), lead(lead_dims) {
    T = 1;
    for (int64_t s : lead) T *= s;
    std::mt19937_64 rng(seed);
    auto with = [&](std::vector<int64_t> tail) {
      std::vector<int64_t> s = lead;
      s.insert(s.end(), tail.begin(), tail.end());
      return s;
    };
    q = Buf(act, with({HK, K}));
    k = Buf(act, with({HK, K}));
    v = Buf(act, with({HV, V}));
    q.fill_uniform(rng, -1, 1);
    k.fill_uniform(rng, -1, 1);
    v.fill_uniform(rng, -1, 1);
    if (!l2norm) {  // keep the recurrence stable without normalisation
      for (Buf* x : {&q, &k})
        for (int64_t i = 0; i < x->numel(); ++i) x->set(i, x->get(i) / std::sqrt(double(K)));
    }
    if (raw_gate) {
      a = Buf(act, with({HV}));
      b = Buf(act, with({HV}));
      a.fill_uniform(rng, -3, 3);
      b.fill_uniform(rng, -3, 3);
      A_log = Buf(GDN_DTYPE_F32, {HV});
      dt_bias = Buf(GDN_DTYPE_F32, {HV});
      A_log.fill_uniform(rng, -2, 1);
      dt_bias.fill_uniform(rng, -1, 1);
    } else {
      g = Buf(GDN_DTYPE_F32, with({HV}));
      beta = Buf(act, with({HV}));
      g.fill_uniform(rng, -2, 0);
      beta.fill_uniform(rng, 0, 1);
    }
    state = Buf(state_dt, {slots, HV, K, V});
    state.fill_uniform(rng, -0.5, 0.5);
    out = Buf(act, with({HV, V}));
    out.poison();
  }

  // Gate of flat token t, value head h, in float64 from the stored inputs.
  void gate(int64_t t, int64_t h, double* gg, double* bb) const {
    if (raw_gate) {
      *gg = -std::exp(A_log.get(h)) * softplus(a.get(t * HV + h) + dt_bias.get(h));
      *bb = sigmoid(b.get(t * HV + h));
    } else {
      *gg = g.get(t * HV + h);
      *bb = beta.get(t * HV + h);
    }
  }
  std::vector<double> head_state(const std::vector<double>& pool, int64_t slot, int64_t h) const {
    auto first = pool.begin() + (slot * HV + h) * K * V;
    return std::vector<double>(first, first + K * V);
  }
  void put_head_state(std::vector<double>& pool, int64_t slot, int64_t h, const std::vector<double>& S) const {
    std::copy(S.begin(), S.end(), pool.begin() + (slot * HV + h) * K * V);
  }
  // Flat tokens [t0, t1) of one sequence on every head: each head's state from slot `read` of
  // pool0 (zero without `initial`), run, and put into slot `write` of pool (may be pool0).
  void run_sequence(const std::vector<double>& pool0, int64_t read, bool initial, int64_t t0, int64_t t1,
                    std::vector<double>& pool, int64_t write, std::vector<double>& o) const {
    for (int64_t h = 0; h < HV; ++h) {
      std::vector<double> S = initial ? head_state(pool0, read, h) : std::vector<double>(size_t(K * V), 0.0);
      run(S, t0, t1, h, o);
      put_head_state(pool, write, h, S);
    }
  }
  // Runs flat tokens [t0, t1) of head h from S; writes outputs into o (flat [T, HV, V]).
  void run(std::vector<double>& S, int64_t t0, int64_t t1, int64_t h, std::vector<double>& o) const {
    const int64_t hk = h / (HV / HK);
    for (int64_t t = t0; t < t1; ++t) {
      std::vector<double> qv(static_cast<size_t>(K)), kv(static_cast<size_t>(K)), vv(static_cast<size_t>(V));
      for (int64_t i = 0; i < K; ++i) {
        qv[size_t(i)] = q.get((t * HK + hk) * K + i);
        kv[size_t(i)] = k.get((t * HK + hk) * K + i);
      }
      for (int64_t j = 0; j < V; ++j) vv[size_t(j)] = v.get((t * HV + h) * V + j);
      double gg, bb;
      gate(t, h, &gg, &bb);
      delta_rule_step(S, K, V, qv, kv, vv.data(), gg, bb, l2norm, scale, o.data() + (t * HV + h) * V);
    }
  }

  // Head tensors as gdn views; `grouped` makes v/a/b/g/beta rank-grouped [.., HK, HV/HK, ..].
  gdn_tensor head(const Buf& buf) const {
    gdn_tensor t = buf.view();
    if (!grouped) return t;
    // split the HV dim (at index lead.size()) into [HK, HV/HK]
    const int at = int(lead.size());
    gdn_tensor s = t;
    s.ndim = t.ndim + 1;
    for (int i = 0; i < at; ++i) {
      s.shape[i] = t.shape[i];
      s.strides[i] = t.strides[i];
    }
    s.shape[at] = HK;
    s.strides[at] = t.strides[at] * (HV / HK);
    s.shape[at + 1] = HV / HK;
    s.strides[at + 1] = t.strides[at];
    for (int i = at + 1; i < t.ndim; ++i) {
      s.shape[i + 1] = t.shape[i];
      s.strides[i + 1] = t.strides[i];
    }
    return s;
  }

  template <class Args>
  void fill_args(Args& args) const {
    args.q = q.view();
    args.k = k.view();
    args.v = head(v);
    if (raw_gate) {
      args.a = head(a);
      args.b = head(b);
      args.A_log = A_log.view();
      args.dt_bias = dt_bias.view();
    } else {
      args.g = head(g);
      args.beta = head(beta);
    }
    args.state = state.view();
    args.out = out.view();
  }
};

inline double state_tol(gdn_dtype dt) { return dt == GDN_DTYPE_BF16 ? 1.2e-2 : 5e-5; }

}  // namespace gdnt
