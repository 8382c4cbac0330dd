// Host-side launchers of the GPU kernels, one source file per op (conv.cu, decode.cu,
// prefill.cu, norm.cu), shared by CUDA and HIP.
#pragma once

#include <cstddef>

#include "../core/views.hpp"

namespace gdn::gpu {

struct Device {
  int ordinal;
  int sm_count;
  size_t max_smem_optin;  // bytes of shared memory a block may opt into
  int arch;               // compute capability major * 10 + minor (NVIDIA); gfx major * 10 + minor (AMD)
  bool pdl() const;       // programmatic dependent launch (NVIDIA sm_90+)
};

void conv_update(const Device&, const ConvProblem&, void* stream);
void conv_prefill(const Device&, const ConvProblem&, void* stream);
void decode(const Device&, const GdnProblem&, void* stream);
size_t prefill_workspace(const Device&, const LayerDims&, int64_t tokens, int64_t seqs);
bool prefill_fits(const Device&, int64_t K);  // shared memory for the smallest chunk
void prefill(const Device&, const GdnProblem&, void* ws, size_t ws_bytes, void* stream);
void norm_gated(const Device&, const NormProblem&, bool fp8, void* stream);
bool norm_rows_fast_path(const NormProblem&, bool fp8);  // norm_gated's 16-lane row kernel applies
// The fused decode step (decode_step.cu) when the kernel takes these shapes; false (nothing
// launched) otherwise.
bool decode_step(const Device&, const ConvProblem&, const GdnProblem&, const NormProblem&, bool fp8, void* stream);

// Largest K, V and HV*V the kernels take.
constexpr int64_t kMaxHeadDim = 256;
constexpr int64_t kMaxNormRow = 12288;

}  // namespace gdn::gpu
