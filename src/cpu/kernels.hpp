// CPU implementations of the ops, one file each; cpu_backend.cpp sizes their workspaces.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../core/views.hpp"
#include "thread_pool.hpp"

namespace gdn::cpu {

// Bump allocator over the caller's workspace; 64-byte aligned pieces.
class Arena {
 public:
  Arena(void* base, size_t bytes) : p_(static_cast<char*>(base)), end_(p_ + bytes) {}
  float* floats(int64_t n) { return static_cast<float*>(take(size_t(n) * sizeof(float))); }
  void* take(size_t bytes) {
    uintptr_t at = (reinterpret_cast<uintptr_t>(p_) + 63) & ~uintptr_t(63);
    char* out = reinterpret_cast<char*>(at);
    p_ = out + bytes;
    return p_ <= end_ ? out : nullptr;
  }
  // Bytes an arena needs for pieces of these float counts (alignment slack included).
  static size_t need(std::initializer_list<int64_t> float_counts) {
    size_t total = 64;
    for (int64_t n : float_counts) total += ((size_t(n) * sizeof(float) + 63) & ~size_t(63)) + 64;
    return total;
  }

 private:
  char* p_;
  char* end_;
};

// silu(x) = x / (1 + e^-x) for whole rows, with a branch-free e^-x the compiler vectorises
// (2^n by exponent bits, 2^f on [-0.5, 0.5] by a degree-6 polynomial; relative error ~1e-6 for
// |x| < 16, below 1e-5 to the clamp at |x| = 87): one libm call a channel was most of the CPU conv
// and norm time.
inline float exp_neg(float x) {
  float t = -x * 1.44269504f;
  // Clamped by selects (std::fmax / fmin stay libm calls and block vectorising); a NaN x lands
  // on -126, so the integer conversion below stays defined (and x / (1 + ...) is NaN anyway).
  t = t > -126.0f ? t : -126.0f;
  t = t < 126.0f ? t : 126.0f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest
  const float f = t - n;
  float q = 1.53533597e-4f;
  q = q * f + 1.33989446e-3f;
  q = q * f + 9.61844508e-3f;
  q = q * f + 5.55034647e-2f;
  q = q * f + 2.40226507e-1f;
  q = q * f + 6.93147182e-1f;
  q = q * f + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return q * scale;
}
inline void silu_row(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + exp_neg(x[i]));
}

// Row helpers: convert n elements of a runtime dtype to/from float.
void load_row(const void* src, int32_t dt, int64_t n, float* dst);
void store_row(void* dst, int32_t dt, int64_t n, const float* src);
void zero_row(void* dst, int32_t dt, int64_t n);
// dst[i] = src[cols[i]]
void gather_row(const void* src, int32_t dt, const int64_t* cols, int64_t n, float* dst);

size_t decode_scratch_floats(const LayerDims& d);
size_t prefill_scratch_floats(const LayerDims& d);
size_t norm_scratch_floats(const LayerDims& d);

void conv_update(ThreadPool& pool, const ConvProblem& p);
void conv_prefill(ThreadPool& pool, const ConvProblem& p);
void decode(ThreadPool& pool, const GdnProblem& p, void* ws, size_t ws_bytes);
void prefill(ThreadPool& pool, const GdnProblem& p, void* ws, size_t ws_bytes);
void norm_gated(ThreadPool& pool, const NormProblem& p, bool fp8, void* ws, size_t ws_bytes);

}  // namespace gdn::cpu
