// The GPU backend (CUDA or HIP, whichever this file is compiled for): device properties, the
// limits of the kernels, and the op dispatch. Run calls only enqueue work on the caller's
// stream: no allocation, no synchronisation, no device reads on the host.
#include "../core/backend.hpp"
#include "launch.hpp"
#include "portability.hpp"

namespace gdn {
namespace {

class GpuBackend final : public Backend {
 public:
  explicit GpuBackend(const gpu::Device& dev) : dev_(dev) {}
#if defined(GDN_WITH_HIP)
  gdn_backend kind() const override { return GDN_BACKEND_HIP; }
#else
  gdn_backend kind() const override { return GDN_BACKEND_CUDA; }
#endif

  void check_layer(const LayerDims& d, const gdn_layer_config&) const override {
    if (d.K > gpu::kMaxHeadDim || d.V > 4 * gpu::kMaxHeadDim)
      fail(GDN_ERROR_UNSUPPORTED, "GPU kernels take head_k_dim <= %lld and head_v_dim <= %lld (got %lld, %lld)",
           (long long)gpu::kMaxHeadDim, (long long)(4 * gpu::kMaxHeadDim), (long long)d.K, (long long)d.V);
    if (!gpu::prefill_fits(dev_, d.K))
      fail(GDN_ERROR_UNSUPPORTED, "head_k_dim = %lld needs more shared memory for prefill than this device has (%zu bytes)",
           (long long)d.K, dev_.max_smem_optin);
    if (d.HV * d.V > gpu::kMaxNormRow)
      fail(GDN_ERROR_UNSUPPORTED, "GPU norm kernels take num_v_heads*head_v_dim <= %lld (got %lld)",
           (long long)gpu::kMaxNormRow, (long long)(d.HV * d.V));
  }

  size_t conv_workspace(const LayerDims&, int64_t, int64_t) const override { return 0; }
  void conv_update(const ConvProblem& p, void*, size_t, void* stream) override {
    on_device();
    gpu::conv_update(dev_, p, stream);
  }
  void conv_prefill(const ConvProblem& p, void*, size_t, void* stream) override {
    on_device();
    gpu::conv_prefill(dev_, p, stream);
  }
  size_t decode_workspace(const LayerDims&, int64_t, int64_t) const override { return 0; }
  void decode(const GdnProblem& p, void*, size_t, void* stream) override {
    on_device();
    gpu::decode(dev_, p, stream);
  }
  size_t prefill_workspace(const LayerDims& d, int64_t tokens, int64_t seqs) const override {
    return gpu::prefill_workspace(dev_, d, tokens, seqs);
  }
  void prefill(const GdnProblem& p, void* ws, size_t bytes, void* stream) override {
    on_device();
    gpu::prefill(dev_, p, ws, bytes, stream);
  }
  size_t norm_workspace(const LayerDims&, int64_t) const override { return 0; }
  void norm_gated(const NormProblem& p, bool fp8, void*, size_t, void* stream) override {
    on_device();
    gpu::norm_gated(dev_, p, fp8, stream);
  }
  bool fused_decode_step(const ConvProblem& pc, const GdnProblem& pd, const NormProblem& pn, bool fp8,
                         void* stream) override {
    on_device();
    return gpu::decode_step(dev_, pc, pd, pn, fp8, stream);
  }

 private:
  // Kernels go to the context's device whatever device the calling thread has current.
  void on_device() const {
    int current = -1;
    gpu::check(gpuGetDevice(&current), "get device");
    if (current != dev_.ordinal) gpu::check(gpuSetDevice(dev_.ordinal), "set device");
  }
  gpu::Device dev_;
};

}  // namespace

bool gpu::Device::pdl() const {
#if defined(GDN_AMD_PATHS)
  return false;
#else
  return arch >= 90;
#endif
}

Backend* make_gpu_backend(int32_t device) {
  int count = 0;
  if (gpuGetDeviceCount(&count) != gpuSuccess || device >= count) {
    (void)gpuGetLastError();  // clear the sticky error of a failed query
    return nullptr;
  }
  gpuDeviceProp prop;
  gpu::check(gpuGetDeviceProperties(&prop, device), "device properties");
#if defined(GDN_AMD_PATHS)
  const size_t optin = size_t(prop.sharedMemPerBlock);  // LDS: no opt-in beyond it
#else
  const size_t optin = size_t(prop.sharedMemPerBlockOptin);
#endif
  gpu::Device dev{device, prop.multiProcessorCount, optin, prop.major * 10 + prop.minor};
  return new GpuBackend(dev);
}

}  // namespace gdn
