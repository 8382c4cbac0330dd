// What every backend implements. Problems arrive validated; a backend only checks what is
// specific to it (supported sizes on a GPU, say) and throws gdn::Error for that.
#pragma once

#include <cstddef>
#include <cstdint>

#include "views.hpp"

namespace gdn {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual gdn_backend kind() const = 0;
  virtual int32_t num_threads() const { return 1; }
  // Throws GDN_ERROR_UNSUPPORTED when this backend cannot run layers of these dimensions.
  virtual void check_layer(const LayerDims&, const gdn_layer_config&) const {}

  virtual size_t conv_workspace(const LayerDims&, int64_t rows, int64_t seqs) const = 0;
  virtual void conv_update(const ConvProblem&, void* ws, size_t ws_bytes, void* stream) = 0;
  virtual void conv_prefill(const ConvProblem&, void* ws, size_t ws_bytes, void* stream) = 0;

  virtual size_t decode_workspace(const LayerDims&, int64_t batch, int64_t tokens_per_seq) const = 0;
  virtual void decode(const GdnProblem&, void* ws, size_t ws_bytes, void* stream) = 0;
  virtual size_t prefill_workspace(const LayerDims&, int64_t tokens, int64_t seqs) const = 0;
  virtual void prefill(const GdnProblem&, void* ws, size_t ws_bytes, void* stream) = 0;

  virtual size_t norm_workspace(const LayerDims&, int64_t tokens) const = 0;
  virtual void norm_gated(const NormProblem&, bool fp8, void* ws, size_t ws_bytes, void* stream) = 0;

  // The decode step (conv update -> decode -> norm) as one fused launch, bit-identical to the three
  // ops; false when this backend has no fused kernel for these problems (the caller then runs the
  // three ops).
  virtual bool fused_decode_step(const ConvProblem&, const GdnProblem&, const NormProblem&, bool /*fp8*/,
                                 void* /*stream*/) {
    return false;
  }
};

Backend* make_cpu_backend(int32_t num_threads);
#if defined(GDN_WITH_GPU)
// Returns nullptr when no device is present (or the ordinal is out of range).
Backend* make_gpu_backend(int32_t device);
#endif

}  // namespace gdn
