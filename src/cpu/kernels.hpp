// CPU implementations of the ops, one file each; cpu_backend.cpp sizes their workspaces.
#pragma once

#include <cstddef>
#include <cstdint>

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
