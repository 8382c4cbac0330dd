// Runs an op on the backend under test. GDN_TEST_BACKEND=cuda (in a CUDA build) runs every
// test against the CUDA backend: the host tensors of a call are mirrored to device memory
// (aliasing and alignment modulo 256 preserved), the call runs, and everything comes back, so
// the CPU tests' oracles, poisoning and "outputs untouched on error" checks apply unchanged.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gdn.h"

#if defined(GDN_TEST_CUDA)
#include <cuda_runtime.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace gdnt {

inline gdn_backend test_backend() {
  const char* env = std::getenv("GDN_TEST_BACKEND");
  if (env && std::string(env) == "cuda") return GDN_BACKEND_CUDA;
  return GDN_BACKEND_CPU;
}

inline std::vector<gdn_tensor*> tensors_of(gdn_decode_args& a) {
  return {&a.q, &a.k, &a.v, &a.a, &a.b, &a.A_log, &a.dt_bias, &a.g, &a.beta, &a.state, &a.slot_idx, &a.num_accepted, &a.out};
}
inline std::vector<gdn_tensor*> tensors_of(gdn_prefill_args& a) {
  return {&a.q, &a.k, &a.v, &a.a, &a.b, &a.A_log, &a.dt_bias, &a.g, &a.beta, &a.state, &a.cu_seqlens, &a.slot_idx,
          &a.has_initial_state, &a.out};
}
inline std::vector<gdn_tensor*> tensors_of(gdn_conv_update_args& a) {
  return {&a.x, &a.weight, &a.bias, &a.conv_state, &a.slot_idx, &a.out};
}
inline std::vector<gdn_tensor*> tensors_of(gdn_conv_prefill_args& a) {
  return {&a.x, &a.weight, &a.bias, &a.conv_state, &a.cu_seqlens, &a.slot_idx, &a.has_initial_state, &a.out};
}
inline std::vector<gdn_tensor*> tensors_of(gdn_norm_gated_args& a) { return {&a.x, &a.z, &a.weight, &a.out, &a.scales}; }
inline std::vector<gdn_tensor*> tensors_of(gdn_decode_step_args& a) {
  return {&a.x,     &a.conv_weight, &a.conv_bias, &a.conv_state, &a.z,           &a.a,   &a.b,
          &a.A_log, &a.dt_bias,     &a.state,     &a.slot_idx,   &a.norm_weight, &a.out, &a.scales};
}

#if defined(GDN_TEST_CUDA)
// Host byte range of a view, or false when the view is not one the library could accept.
inline bool host_range(const gdn_tensor& t, uintptr_t* lo, uintptr_t* hi) {
  const size_t es = gdn_dtype_size(gdn_dtype(t.dtype));
  if (!t.data || es == 0 || t.ndim < 1 || t.ndim > GDN_MAX_DIMS) return false;
  int64_t last = 0;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] <= 0 || t.strides[i] < 0 || t.shape[i] > (int64_t(1) << 30) || t.strides[i] > (int64_t(1) << 30))
      return false;
    last += (t.shape[i] - 1) * t.strides[i];
  }
  if (last > (int64_t(1) << 32)) return false;
  *lo = reinterpret_cast<uintptr_t>(t.data);
  *hi = *lo + uintptr_t(last + 1) * es;
#if defined(__SANITIZE_ADDRESS__)
  // A rejected view may reach past its host buffer: mirror only the addressable part.
  if (void* bad = __asan_region_is_poisoned(t.data, *hi - *lo)) *hi = reinterpret_cast<uintptr_t>(bad);
  if (*hi <= *lo) return false;
#endif
  return true;
}

template <class Args>
gdn_status call_mirrored(gdn_status (*fn)(gdn_layer, const Args*, void*, size_t, void*), gdn_layer layer,
                         const Args* args, void* ws, size_t ws_bytes) {
  if (!args) return fn(layer, args, ws, ws_bytes, nullptr);
  Args a = *args;
  std::vector<gdn_tensor*> ts = tensors_of(a);
  struct Range { uintptr_t lo, hi; };
  std::vector<Range> ranges;
  for (gdn_tensor* t : ts) {
    Range r;
    if (host_range(*t, &r.lo, &r.hi)) ranges.push_back(r);
  }
  if (ws && ws_bytes > 0 && ws_bytes < (size_t(1) << 32))
    ranges.push_back({reinterpret_cast<uintptr_t>(ws), reinterpret_cast<uintptr_t>(ws) + ws_bytes});
  std::sort(ranges.begin(), ranges.end(), [](const Range& x, const Range& y) { return x.lo < y.lo; });
  std::vector<Range> merged;
  for (const Range& r : ranges) {
    if (!merged.empty() && r.lo < merged.back().hi)
      merged.back().hi = std::max(merged.back().hi, r.hi);
    else
      merged.push_back(r);
  }
  std::vector<char*> dev(merged.size());
  std::vector<std::vector<char>> before(merged.size());
  auto to_dev = [&](uintptr_t p) -> void* {
    for (size_t i = 0; i < merged.size(); ++i)
      if (p >= merged[i].lo && p < merged[i].hi) return dev[i] + merged[i].lo % 256 + (p - merged[i].lo);
    return reinterpret_cast<void*>(p);
  };
  for (size_t i = 0; i < merged.size(); ++i) {
    const size_t n = merged[i].hi - merged[i].lo;
    before[i].assign(reinterpret_cast<const char*>(merged[i].lo), reinterpret_cast<const char*>(merged[i].hi));
    if (cudaMalloc(&dev[i], merged[i].lo % 256 + n) != cudaSuccess) std::abort();
    cudaMemcpy(dev[i] + merged[i].lo % 256, before[i].data(), n, cudaMemcpyHostToDevice);
#if defined(GDN_GPU_SIM_ACTIVE) && defined(__SANITIZE_ADDRESS__)
    // The simulator's device memory is host memory: the bytes in front of the views (kept for
    // their alignment modulo 256) are reported when a kernel reads them, as those past the end are.
    ASAN_POISON_MEMORY_REGION(dev[i], merged[i].lo % 256);
#endif
  }
  for (gdn_tensor* t : ts)
    if (t->data) t->data = to_dev(reinterpret_cast<uintptr_t>(t->data));
  void* dws = ws ? to_dev(reinterpret_cast<uintptr_t>(ws)) : nullptr;
  const gdn_status st = fn(layer, &a, dws, ws_bytes, nullptr);
  if (cudaDeviceSynchronize() != cudaSuccess || cudaGetLastError() != cudaSuccess) {
    std::fprintf(stderr, "CUDA error after the call\n");
    std::abort();
  }
  // Copy back only the bytes the device changed: a rejected (mutated) view may reach past its
  // host buffer, and must not be written there.
  for (size_t i = 0; i < merged.size(); ++i) {
    std::vector<char> after(before[i].size());
    cudaMemcpy(after.data(), dev[i] + merged[i].lo % 256, after.size(), cudaMemcpyDeviceToHost);
#if defined(GDN_GPU_SIM_ACTIVE) && defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(dev[i], merged[i].lo % 256);
#endif
    char* host = reinterpret_cast<char*>(merged[i].lo);
    for (size_t j = 0; j < after.size(); ++j)
      if (after[j] != before[i][j]) host[j] = after[j];
    cudaFree(dev[i]);
  }
  return st;
}
#endif

// The op call every test makes: straight through on the CPU backend, mirrored on a GPU one.
template <class Args>
gdn_status call(gdn_status (*fn)(gdn_layer, const Args*, void*, size_t, void*), gdn_layer layer, const Args* args,
                void* ws, size_t ws_bytes) {
#if defined(GDN_TEST_CUDA)
  if (test_backend() == GDN_BACKEND_CUDA) return call_mirrored(fn, layer, args, ws, ws_bytes);
#endif
  return fn(layer, args, ws, ws_bytes, nullptr);
}

}  // namespace gdnt
