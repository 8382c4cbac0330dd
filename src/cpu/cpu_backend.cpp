// The CPU backend: a thread pool and the loops of kernels.hpp. Workspaces hold one scratch
// arena per pool thread.
#include <cstdlib>
#include <memory>
#include <thread>

#include "../core/backend.hpp"
#include "kernels.hpp"

namespace gdn {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int32_t threads) : pool_(threads) {}
  gdn_backend kind() const override { return GDN_BACKEND_CPU; }
  int32_t num_threads() const override { return pool_.size(); }

  size_t conv_workspace(const LayerDims&, int64_t, int64_t) const override { return 0; }
  void conv_update(const ConvProblem& p, void*, size_t, void*) override { cpu::conv_update(pool_, p); }
  void conv_prefill(const ConvProblem& p, void*, size_t, void*) override { cpu::conv_prefill(pool_, p); }

  size_t decode_workspace(const LayerDims& d, int64_t, int64_t) const override {
    return per_thread(cpu::decode_scratch_floats(d));
  }
  void decode(const GdnProblem& p, void* ws, size_t bytes, void*) override { cpu::decode(pool_, p, ws, bytes); }
  size_t prefill_workspace(const LayerDims& d, int64_t, int64_t) const override {
    return per_thread(cpu::prefill_scratch_floats(d));
  }
  void prefill(const GdnProblem& p, void* ws, size_t bytes, void*) override { cpu::prefill(pool_, p, ws, bytes); }

  size_t norm_workspace(const LayerDims& d, int64_t) const override { return per_thread(cpu::norm_scratch_floats(d)); }
  void norm_gated(const NormProblem& p, bool fp8, void* ws, size_t bytes, void*) override {
    cpu::norm_gated(pool_, p, fp8, ws, bytes);
  }

 private:
  size_t per_thread(size_t floats) const { return floats * sizeof(float) * size_t(pool_.size()); }
  ThreadPool pool_;
};

}  // namespace

Backend* make_cpu_backend(int32_t num_threads) {
  if (num_threads <= 0) {
    const char* env = std::getenv("GDN_NUM_THREADS");
    num_threads = env ? std::atoi(env) : 0;
  }
  if (num_threads <= 0) num_threads = int32_t(std::thread::hardware_concurrency());
  if (num_threads <= 0) num_threads = 1;
  if (num_threads > 256) num_threads = 256;
  return new CpuBackend(num_threads);
}

}  // namespace gdn
