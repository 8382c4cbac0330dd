// Random bad calls (tests/test_fuzz.cpp, and the fused step's in test_decode_step.cpp): valid
// calls with one to three random changes to their tensors (shapes, strides, ranks, dtypes,
// addresses, swapped or dropped tensors, index contents, the workspace's size). Whatever the
// library answers, it must not crash (the sanitizer builds run these), must not write anything
// the caller owns when it fails (and must say why), and must not write any input's bytes when it
// succeeds. Calls whose views reach past the caller's own buffers are not made: the library
// cannot know a buffer's size, so such a call is the caller's error, not one it can report.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "test_util.hpp"

namespace gdnt {

struct ByteRange {
  uintptr_t lo = 0, hi = 0;
};

// The bytes a view addresses, or false when it addresses none the library could reach (absent,
// an unknown dtype, a rank out of range, an empty shape).
inline bool view_range(const gdn_tensor& t, ByteRange* r) {
  const size_t es = gdn_dtype_size(gdn_dtype(t.dtype));
  if (!t.data || es == 0 || t.ndim < 1 || t.ndim > GDN_MAX_DIMS) return false;
  __int128 lo = 0, hi = 0;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] <= 0) return false;
    const __int128 span = __int128(t.shape[i] - 1) * t.strides[i];
    (span < 0 ? lo : hi) += span;
  }
  const __int128 base = __int128(reinterpret_cast<uintptr_t>(t.data));
  r->lo = uintptr_t(base + lo * __int128(es));
  r->hi = uintptr_t(base + (hi + 1) * __int128(es));
  return base + lo * __int128(es) >= 0 && base + (hi + 1) * __int128(es) < (__int128(1) << 63);
}

template <class Args>
struct Fuzz {
  gdn_status (*fn)(gdn_layer, const Args*, void*, size_t, void*) = nullptr;
  gdn_layer layer = nullptr;
  Args base{};
  std::vector<Buf*> bufs;            // every buffer a view of base may point into
  std::vector<gdn_tensor Args::*> outs;  // the op's outputs (written on success)
  std::vector<Buf*> index_bufs;      // slot / cu_seqlens / num_accepted buffers: contents fuzzed too
  Workspace ws;
  int made = 0, failed = 0, skipped = 0;

  bool inside_buffers(Args& a, size_t ws_bytes, void* w) {
    for (gdn_tensor* t : tensors_of(a)) {
      ByteRange r;
      if (!view_range(*t, &r)) continue;
      bool in = false;
      for (Buf* b : bufs) {
        const uintptr_t lo = reinterpret_cast<uintptr_t>(b->data());
        if (r.lo >= lo && r.hi <= lo + size_t(b->numel()) * gdn_dtype_size(b->dt)) in = true;
      }
      if (!in) return false;
    }
    const uintptr_t wlo = reinterpret_cast<uintptr_t>(w), blo = reinterpret_cast<uintptr_t>(ws.ptr());
    return !w || ws_bytes == 0 || (wlo >= blo && wlo + ws_bytes <= blo + ws.size());
  }

  void mutate_tensor(Args& a, std::mt19937_64& rng) {
    std::vector<gdn_tensor*> ts = tensors_of(a);
    gdn_tensor& t = *ts[rng() % ts.size()];
    auto pick = [&](std::initializer_list<int64_t> v) { return *(v.begin() + rng() % v.size()); };
    const int d = t.ndim > 0 && t.ndim <= GDN_MAX_DIMS ? int(rng() % uint64_t(t.ndim)) : 0;
    switch (rng() % 9) {
      case 0: {
        const int64_t s = t.shape[d];
        t.shape[d] = pick({0, 1, s - 1, s + 1, 2 * s, -1, int64_t(1) << 40, s / 2});
        break;
      }
      case 1: {
        const int64_t s = t.strides[d];
        t.strides[d] = pick({0, -1, 1, 2, s + 1, s - 1, 2 * s, -s, int64_t(1) << 50});
        break;
      }
      case 2:
        if (rng() % 2 && t.ndim >= 0 && t.ndim < GDN_MAX_DIMS) {
          t.shape[t.ndim] = 1, t.strides[t.ndim] = 1, ++t.ndim;
        } else {
          t.ndim = int32_t(pick({0, -1, t.ndim - 1, GDN_MAX_DIMS + 1}));
        }
        break;
      case 3: t.dtype = int32_t(rng() % 14); break;
      case 4: {
        const size_t es = std::max<size_t>(1, gdn_dtype_size(gdn_dtype(t.dtype)));
        t.data = t.data ? static_cast<char*>(t.data) + pick({1, 2, int64_t(es), -int64_t(es), 4, 8}) : nullptr;
        break;
      }
      case 5: t = gdn_tensor{}; break;
      case 6: t = *ts[rng() % ts.size()]; break;  // another tensor's view (or absent)
      case 7: t.data = ts[rng() % ts.size()]->data; break;  // another tensor's bytes
      default: {  // a dense view of some buffer in place of this tensor
        Buf* b = bufs[rng() % bufs.size()];
        t = b->view();
        break;
      }
    }
  }

  void mutate_indices(std::mt19937_64& rng) {
    if (index_bufs.empty()) return;
    Buf* b = index_bufs[rng() % index_bufs.size()];
    const int64_t n = b->numel();
    const int64_t i = int64_t(rng() % uint64_t(n));
    const int64_t v = int64_t(b->get(i));
    const int64_t choices[] = {-2, -1, 0, 1, v + 1, v - 1, 1000, -1000, int64_t(1) << 31, 2 * v};
    b->set(i, double(choices[rng() % 10]));
  }

  void run(int trials, uint64_t seed, const char* what) {
    std::mt19937_64 rng(seed);
    std::vector<std::vector<unsigned char>> snap;
    for (Buf* b : bufs) snap.push_back(b->bytes);
    for (int trial = 0; trial < trials; ++trial) {
      Args a = base;
      size_t bytes = ws.size();
      void* w = ws.ptr();
      const int changes = 1 + int(rng() % 3);
      for (int c = 0; c < changes; ++c) {
        const uint64_t kind = rng() % 10;
        if (kind == 0)
          mutate_indices(rng);
        else if (kind == 1)
          bytes = size_t(rng() % 2 ? bytes / 2 : (bytes > 0 ? bytes - 1 : 0));
        else
          mutate_tensor(a, rng);
      }
      if (!inside_buffers(a, bytes, w)) {
        ++skipped;
        for (size_t i = 0; i < bufs.size(); ++i) bufs[i]->bytes = snap[i];
        continue;
      }
      // The input views' bytes before the call (an output view may point into an input's buffer:
      // what must stay is what the call reads).
      std::vector<gdn_tensor*> ts = tensors_of(a);
      std::vector<std::pair<ByteRange, std::vector<unsigned char>>> inputs;
      for (gdn_tensor* t : ts) {
        bool is_out = false;
        for (auto o : outs) is_out |= t == &(a.*o);
        ByteRange r;
        if (!is_out && view_range(*t, &r))
          inputs.push_back({r, std::vector<unsigned char>(reinterpret_cast<unsigned char*>(r.lo),
                                                          reinterpret_cast<unsigned char*>(r.hi))});
      }
      std::vector<std::vector<unsigned char>> before;
      for (Buf* b : bufs) before.push_back(b->bytes);
      ++made;
      const gdn_status st = call(fn, layer, &a, w, bytes);
      if (st != GDN_SUCCESS) {
        ++failed;
        EXPECT_STRNE(gdn_last_error_message(), "") << what << " trial " << trial << ": status " << st;
        for (size_t i = 0; i < bufs.size(); ++i)
          EXPECT_TRUE(bufs[i]->bytes == before[i])
              << what << " trial " << trial << ": failed with " << gdn_status_string(st) << " and wrote buffer " << i;
      } else {
        EXPECT_STREQ(gdn_last_error_message(), "") << what << " trial " << trial;
        for (const auto& in : inputs)
          EXPECT_TRUE(std::memcmp(reinterpret_cast<void*>(in.first.lo), in.second.data(), in.second.size()) == 0)
              << what << " trial " << trial << ": succeeded and wrote an input's bytes";
      }
      if (::testing::Test::HasFailure()) return;  // the first failing trial is the one to read
      for (size_t i = 0; i < bufs.size(); ++i) bufs[i]->bytes = snap[i];
    }
    // The unchanged call still works, and most changed calls were made.
    Args a = base;
    EXPECT_EQ(call(fn, layer, &a, ws.ptr(), ws.size()), GDN_SUCCESS) << what << ": " << gdn_last_error_message();
    EXPECT_GT(made, trials / 4) << what << ": too few calls inside the buffers";
    EXPECT_GT(failed, made / 2) << what;
    if (std::getenv("GDN_FUZZ_TRIALS"))
      std::printf("%s: %d calls (%d failed), %d outside the buffers\n", what, made, failed, skipped);
  }
};

// GDN_FUZZ_TRIALS=N for a longer search; GDN_FUZZ_SEED=S for other trials.
inline int fuzz_trials() {
  const char* env = std::getenv("GDN_FUZZ_TRIALS");
  if (env && std::atoi(env) > 0) return std::atoi(env);
  return test_backend() == GDN_BACKEND_CPU ? 400 : 150;
}
inline uint64_t fuzz_seed(uint64_t s) {
  const char* env = std::getenv("GDN_FUZZ_SEED");
  return env ? s + 1000 * std::strtoull(env, nullptr, 10) : s;
}

}  // namespace gdnt
