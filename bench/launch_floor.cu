// The benchmark method's own floor for small calls (gdn_bench rows "launch"): what a kernel costs
// per call in a CUDA graph of back-to-back calls when it does (almost) nothing, launched as
// libgdn launches its kernels (programmatic dependent launch on sm_90, griddepcontrol.wait first).
//   empty: one block, no memory access -- the graph node alone.
//   chain: 128 blocks of 128 threads; each thread loads an index, then 16 bytes at that index
//          (a different 256 KiB set each call, so from DRAM), and stores 16 bytes: the two
//          dependent round trips that a decode at batch 1 cannot avoid (slot index -> state).
// No op of libgdn can beat "chain" at small sizes; time / floor there says more against it than
// against the bytes floor.
#include <cuda_runtime.h>

#include <cstdint>

#include "launch_floor.h"

namespace {

__device__ __forceinline__ void wait_previous() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__global__ void empty_kernel() { wait_previous(); }

__global__ void chain_kernel(const int32_t* index, const float4* in, float4* out) {
  wait_previous();
  const int64_t base = int64_t(index[0]) * gridDim.x * blockDim.x;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  out[i] = in[base + i];
}

template <class... KArgs, class... Args>
cudaError_t launch(bool pdl, void (*kernel)(KArgs...), unsigned grid, unsigned block, cudaStream_t s, Args... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

}  // namespace

int64_t launch_floor_chain_bytes_per_call() { return int64_t(kLaunchFloorChainThreads) * 16; }

cudaError_t launch_floor_call(bool chain, bool pdl, const int32_t* index, const void* in, void* out,
                              cudaStream_t stream) {
  if (!chain) return launch(pdl, empty_kernel, 1, 32, stream);
  return launch(pdl, chain_kernel, kLaunchFloorChainThreads / 128, 128, stream, index,
                static_cast<const float4*>(in), static_cast<float4*>(out));
}
