// Shared test helpers: host tensors of any dtype, random fills, poisoning, float64 oracles.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gdn.h"
#include "../src/core/views.hpp"
#include "backend_call.hpp"

namespace gdnt {

// A dense host tensor (row-major) of any gdn dtype.
struct Buf {
  gdn_dtype dt = GDN_DTYPE_F32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  Buf() = default;
  Buf(gdn_dtype d, std::vector<int64_t> s) : dt(d), shape(std::move(s)) {
    bytes.assign(size_t(numel()) * gdn_dtype_size(dt) + 64, 0);
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  void* data() { return bytes.data(); }
  const void* data() const { return bytes.data(); }
  gdn_tensor view() const {
    gdn_tensor t{};
    t.data = const_cast<unsigned char*>(bytes.data());
    t.dtype = dt;
    t.ndim = int32_t(shape.size());
    int64_t stride = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      t.shape[i] = shape[size_t(i)];
      t.strides[i] = stride;
      stride *= shape[size_t(i)];
    }
    return t;
  }
  double get(int64_t i) const {
    const unsigned char* p = bytes.data() + size_t(i) * gdn_dtype_size(dt);
    if (dt == GDN_DTYPE_I32 || dt == GDN_DTYPE_I64 || dt == GDN_DTYPE_BOOL) return double(gdn::load_index(p, dt));
    return double(gdn::load_float(p, dt));
  }
  void set(int64_t i, double v) {
    unsigned char* p = bytes.data() + size_t(i) * gdn_dtype_size(dt);
    switch (dt) {
      case GDN_DTYPE_I32: *reinterpret_cast<int32_t*>(p) = int32_t(v); break;
      case GDN_DTYPE_I64: *reinterpret_cast<int64_t*>(p) = int64_t(v); break;
      case GDN_DTYPE_BOOL: *p = v != 0.0; break;
      default: gdn::store_float(p, dt, float(v));
    }
  }
  std::vector<double> values() const {
    std::vector<double> out(static_cast<size_t>(numel()));
    for (int64_t i = 0; i < numel(); ++i) out[size_t(i)] = get(i);
    return out;
  }
  void fill_uniform(std::mt19937_64& rng, double lo, double hi) {
    std::uniform_real_distribution<double> u(lo, hi);
    for (int64_t i = 0; i < numel(); ++i) set(i, u(rng));
  }
  void poison() { std::memset(bytes.data(), 0xff, bytes.size()); }  // NaN for floats, -1 for ints
};

template <class T>
T make_args() {
  T a{};
  a.struct_size = sizeof(T);
  return a;
}

// |got - want| <= atol + rtol * |want| everywhere; reports the worst element.
inline ::testing::AssertionResult close(const std::vector<double>& got, const std::vector<double>& want, double atol,
                                        double rtol, const char* what = "") {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << what << ": size mismatch";
  size_t worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]), lim = atol + rtol * std::fabs(want[i]);
    if (!(err <= lim)) {  // NaN fails too
      const double excess = std::isnan(err) ? 1e300 : err - lim;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
    }
  }
  if (worst_excess < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": element " << worst << " got " << got[worst] << " want "
                                       << want[worst] << " (atol " << atol << ", rtol " << rtol << ")";
}

inline double tol_for(gdn_dtype dt) {
  switch (dt) {
    case GDN_DTYPE_F32: return 2e-4;
    case GDN_DTYPE_F16: return 2e-3;
    default: return 1.2e-2;
  }
}

// ---- float64 oracles (DESIGN.md section 3)
inline double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double silu(double x) { return x / (1.0 + std::exp(-x)); }

// One token of the recurrent gated delta rule on a dense K x V double state.
inline void delta_rule_step(std::vector<double>& S, int64_t K, int64_t V, std::vector<double> q, std::vector<double> k,
                            const double* v, double g, double beta, bool l2norm, double scale, double* o) {
  if (l2norm) {
    for (auto* x : {&q, &k}) {
      double ss = 0;
      for (double e : *x) ss += e * e;
      const double inv = 1.0 / std::sqrt(ss + 1e-6);
      for (double& e : *x) e *= inv;
    }
  }
  for (double& e : q) e *= scale;
  const double decay = std::exp(g);
  for (double& s : S) s *= decay;
  std::vector<double> u(size_t(V), 0.0);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < V; ++j) u[size_t(j)] += S[size_t(i * V + j)] * k[size_t(i)];
  for (int64_t j = 0; j < V; ++j) u[size_t(j)] = beta * (v[j] - u[size_t(j)]);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < V; ++j) S[size_t(i * V + j)] += k[size_t(i)] * u[size_t(j)];
  for (int64_t j = 0; j < V; ++j) {
    double acc = 0;
    for (int64_t i = 0; i < K; ++i) acc += S[size_t(i * V + j)] * q[size_t(i)];
    o[j] = acc;
  }
}

struct Ctx {
  gdn_context ctx = nullptr;
  explicit Ctx(gdn_backend backend = test_backend(), int threads = 2) {
    gdn_context_config c;
    gdn_context_config_init(&c);
    c.backend = backend;
    c.num_threads = threads;
    EXPECT_EQ(gdn_context_create(&c, &ctx), GDN_SUCCESS) << gdn_last_error_message();
  }
  ~Ctx() { gdn_context_destroy(ctx); }
};

struct Layer {
  gdn_layer layer = nullptr;
  gdn_layer_config cfg;
  Layer(gdn_context ctx, const gdn_layer_config& c) : cfg(c) {
    EXPECT_EQ(gdn_layer_create(ctx, &cfg, &layer), GDN_SUCCESS) << gdn_last_error_message();
  }
  ~Layer() { gdn_layer_destroy(layer); }
};

// A GPU backend refuses shapes its device cannot hold (GDN_ERROR_UNSUPPORTED with a message, e.g.
// K = 256 with the 64 KB of LDS of AMD GPUs); a test of such a shape skips there. The CPU backend
// takes every valid shape, so it never skips.
inline bool gpu_refuses(gdn_context ctx, const gdn_layer_config& cfg) {
  if (test_backend() == GDN_BACKEND_CPU) return false;
  gdn_layer layer = nullptr;
  const gdn_status st = gdn_layer_create(ctx, &cfg, &layer);
  gdn_layer_destroy(layer);
  return st == GDN_ERROR_UNSUPPORTED;
}

inline gdn_layer_config small_config(int hk, int hv, int k, int v, gdn_dtype act = GDN_DTYPE_BF16,
                                     gdn_dtype state = GDN_DTYPE_F32) {
  gdn_layer_config c;
  gdn_layer_config_init(&c);
  c.num_k_heads = hk;
  c.num_v_heads = hv;
  c.head_k_dim = k;
  c.head_v_dim = v;
  c.act_dtype = act;
  c.state_dtype = state;
  c.fp8_group_size = int32_t((int64_t(hv) * v) % 128 == 0 ? 128 : v);
  return c;
}

// Workspace sized by the library's own query.
struct Workspace {
  std::vector<unsigned char> mem;
  void* ptr() { return mem.empty() ? nullptr : mem.data(); }
  size_t size() const { return mem.size(); }
  void resize(size_t n) { mem.assign(n, 0xcd); }
};

}  // namespace gdnt
