// The small layer that lets one kernel source build with nvcc (CUDA) and hipcc (HIP).
// Kernels never assume a warp of 32: cross-thread sums go through shared memory or through
// shuffles inside explicit 32-lane subgroups, which fit in a warp of 32 (NVIDIA, gfx1030) and in a
// wavefront of 64 (gfx90a, gfx940) alike.
#pragma once

#if defined(__HIPCC__) || defined(GDN_WITH_HIP)
#include <hip/hip_runtime.h>
#define gpuError_t hipError_t
#define gpuSuccess hipSuccess
#define gpuStream_t hipStream_t
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuGetDevice hipGetDevice
#define gpuSetDevice hipSetDevice
#define gpuDeviceProp hipDeviceProp_t
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuFuncSetAttribute(f, a, v) hipFuncSetAttribute(reinterpret_cast<const void*>(f), a, v)
#define gpuFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define gpuOccupancyMaxActiveBlocksPerMultiprocessor(n, f, t, s) \
  hipOccupancyMaxActiveBlocksPerMultiprocessor(n, reinterpret_cast<const void*>(f), t, s)
#else
#include <cuda_runtime.h>
#define gpuError_t cudaError_t
#define gpuSuccess cudaSuccess
#define gpuStream_t cudaStream_t
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuGetDevice cudaGetDevice
#define gpuSetDevice cudaSetDevice
#define gpuDeviceProp cudaDeviceProp
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuFuncSetAttribute(f, a, v) cudaFuncSetAttribute(f, a, v)
#define gpuFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define gpuOccupancyMaxActiveBlocksPerMultiprocessor cudaOccupancyMaxActiveBlocksPerMultiprocessor
#endif

#include "../core/error.hpp"

// The AMD code paths (no tensor-core mma, thread-block clusters or PDL; LDS without an opt-in):
// HIP builds, and gpusim builds that model an AMD device (GDN_SIM_HIP).
#if defined(__HIPCC__) || defined(GDN_WITH_HIP) || defined(GDN_SIM_HIP)
#define GDN_AMD_PATHS 1
#endif

// GDN_GPU_SIM: a test build that runs these kernels on the CPU (tests/gpusim: the CUDA runtime and
// device built-ins as host code); it takes the CUDA paths below except where noted.
#if defined(GDN_GPU_SIM)
#define GDN_DYNAMIC_SMEM(type, name) type* const name = static_cast<type*>(gdnsim::gdnsim_dynamic_smem())
#else
// The block's dynamic shared memory as `type name[]`.
#define GDN_DYNAMIC_SMEM(type, name) extern __shared__ __align__(16) type name[]
#endif

namespace gdn::gpu {

// Throws GDN_ERROR_DEVICE with the runtime's message (launch errors included).
inline void check(gpuError_t e, const char* what) {
  if (e != gpuSuccess) fail(GDN_ERROR_DEVICE, "%s: %s", what, gpuGetErrorString(e));
}
inline void check_launch(const char* kernel) { check(gpuGetLastError(), kernel); }

// XOR shuffle inside a subgroup of 32 lanes: valid on 32- and 64-wide hardware alike, as long as
// all 32 lanes of the subgroup take part.
__device__ inline float shfl_xor32(float v, int mask) {
#if defined(__HIPCC__) || defined(GDN_WITH_HIP)
  return __shfl_xor(v, mask, 32);
#else
  return __shfl_xor_sync(0xffffffffu, v, mask, 32);
#endif
}
// Value of lane `src` (0..31) of this 32-lane subgroup; all 32 lanes take part.
__device__ inline float shfl32(float v, int src) {
#if defined(__HIPCC__) || defined(GDN_WITH_HIP)
  return __shfl(v, src, 32);
#else
  return __shfl_sync(0xffffffffu, v, src, 32);
#endif
}
__device__ inline float subgroup32_sum(float v) {
  for (int m = 16; m > 0; m >>= 1) v += shfl_xor32(v, m);
  return v;
}
__device__ inline float subgroup32_max(float v) {
  for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, shfl_xor32(v, m));
  return v;
}

// Two sums over the block in one pass: 32-lane shuffles, then one barrier through `smem`
// (2 * blockDim.x / 32 floats). blockDim.x must be a multiple of 32.
__device__ inline void block_sum2(float& a, float& b, float* smem) {
  a = subgroup32_sum(a);
  b = subgroup32_sum(b);
  const unsigned groups = blockDim.x / 32, g = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) {
    smem[g] = a;
    smem[groups + g] = b;
  }
  __syncthreads();
  a = b = 0.0f;
  for (unsigned i = 0; i < groups; ++i) {
    a += smem[i];
    b += smem[groups + i];
  }
}

// 16-byte global -> shared copies that complete in the background (cp.async on sm_80+; a plain
// copy elsewhere), grouped by async_commit() and awaited by async_wait<N>() (all but the newest N
// groups of this thread complete). Other threads' copies are visible after a barrier.
__device__ __forceinline__ void async_copy16(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(__HIPCC__)
  const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem) : "memory");
#elif defined(GDN_GPU_SIM) && !defined(GDN_SIM_HIP)
  gdnsim::gdnsim_async_copy(smem, gmem, 16);  // lands at the latest moment allowed: the wait
#else
  *static_cast<uint4*>(smem) = *static_cast<const uint4*>(gmem);
#endif
}
// The same for 8 bytes (cp.async.ca: the L2-only .cg form copies 16 bytes only).
__device__ __forceinline__ void async_copy8(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(__HIPCC__)
  const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(gmem) : "memory");
#elif defined(GDN_GPU_SIM) && !defined(GDN_SIM_HIP)
  gdnsim::gdnsim_async_copy(smem, gmem, 8);
#else
  *static_cast<uint2*>(smem) = *static_cast<const uint2*>(gmem);
#endif
}
__device__ __forceinline__ void async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(__HIPCC__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif defined(GDN_GPU_SIM) && !defined(GDN_SIM_HIP)
  gdnsim::gdnsim_async_commit();
#endif
}
template <int N>
__device__ __forceinline__ void async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(__HIPCC__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#elif defined(GDN_GPU_SIM) && !defined(GDN_SIM_HIP)
  gdnsim::gdnsim_async_wait(N);
#endif
}

// 2^x by the hardware approximation (ex2.approx.ftz on NVIDIA: ~2 ulp, 0 below 2^-126, none of
// __expf's denormal fix-ups; exp2f elsewhere).
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(__CUDA_ARCH__) && !defined(__HIPCC__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);
#endif
}

// silu's portable fast form: __expf and __fdividef (what fast_silu computes off NVIDIA, and the
// form tests/cvt_check.cu holds fast_silu to on NVIDIA).
__device__ __forceinline__ float silu_expf(float z) { return z * __fdividef(1.0f, 1.0f + __expf(-z)); }

// silu through the hardware exp2 and reciprocal (a few ulp from z / (1 + expf(-z)); exact
// where the sigmoid rounds to 1). For z -> -inf, exp overflows and the reciprocal gives 0. On
// NVIDIA: e^-z is __expf's own product with log2(e) through ex2.approx.ftz, without __expf's four
// denormal fix-up instructions, and 1 / (1 + e^-z) is rcp.approx.ftz, without __fdividef's range
// fix-ups -- the same bits as the portable form (tests/cvt_check.cu compares all 2^32 floats):
// where the exps differ (e^-z < 2^-126) 1 + e^-z rounds to 1 either way, and where the
// reciprocals would (1 + e^-z >= 2^126) both give 0.
__device__ __forceinline__ float fast_silu(float z) {
#if defined(__CUDA_ARCH__) && !defined(__HIPCC__)
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + fast_exp2(z * -1.4426950408889634f)));
  return z * r;
#else
  return silu_expf(z);
#endif
}

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

// 16- and 8-byte stores that stream past the caches (evict-first; the recurrent state is written
// once a step and not read again soon). A distinct instruction on NVIDIA, which also keeps the
// compiler from splitting them into scalar stores.
__device__ __forceinline__ void store_stream(float4* p, float4 v) {
#if defined(__HIPCC__) || defined(GDN_WITH_HIP)
  *p = v;
#else
  __stcs(p, v);
#endif
}
__device__ __forceinline__ void store_stream(uint2* p, uint2 v) {
#if defined(__HIPCC__) || defined(GDN_WITH_HIP)
  *p = v;
#else
  __stcs(p, v);
#endif
}

// Kernel parameters live in a constant bank, and the first use of each of its lines misses and
// stalls the warp (ncu: `imc`), one line after another as the code reaches them. A kernel that takes
// its parameter block as `const GDN_GRID_CONST P p` may call prefetch_params(p) first: thread i <
// sizeof(P) / 32 loads word 0 of the block's 32-byte line i (one indexed constant load, the lines
// fetched together instead of one at a time), and sink_params(v) after pdl_wait keeps the load (a
// store that waits for it there: sinking it at the kernel's end measured slower). H100: the norm
// rows kernel -4 to -12 % at T <= 128; 64-byte lines gained less; the decode (26 lines) and the
// conv update measured 2-10 % slower with it, so they go without. No-ops off NVIDIA devices.
#if defined(__CUDACC__) && !defined(__HIPCC__) && !defined(GDN_GPU_SIM)
#define GDN_GRID_CONST __grid_constant__
#else
#define GDN_GRID_CONST
#endif
template <class P>
__device__ __forceinline__ uint32_t prefetch_params(const P& p) {
#if defined(__CUDA_ARCH__) && !defined(__HIPCC__)
  constexpr unsigned kLineWords = 8, kLines = (sizeof(P) + 4 * kLineWords - 1) / (4 * kLineWords);
  static_assert(kLines <= 32, "the lines of one warp");
  return threadIdx.x < kLines ? reinterpret_cast<const uint32_t*>(&p)[threadIdx.x * kLineWords] : 0u;
#else
  (void)p;
  return 0;
#endif
}
__device__ __forceinline__ void sink_params(uint32_t v) {
#if defined(__CUDA_ARCH__) && !defined(__HIPCC__)
  volatile __shared__ uint32_t sink[32];  // volatile: the store, and so the load, stays
  if (threadIdx.x < 32) sink[threadIdx.x] = v;
#else
  (void)v;
#endif
}

// Programmatic dependent launch (NVIDIA sm_90): a kernel launched by launch_pdl may start while
// the previous kernel of the stream is still running, so its launch latency overlaps that
// kernel's tail. Such a kernel calls pdl_wait() before its first global memory access (it returns
// once the previous grid has completed and its writes are visible) and pdl_release() to let the
// next kernel start launching. Both are no-ops elsewhere and in kernels launched normally.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(__HIPCC__)
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(__HIPCC__)
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
#if !defined(__HIPCC__) && !defined(GDN_WITH_HIP)
// cudaLaunchKernelEx with the programmatic-serialization attribute when `pdl` and clusters of
// `cluster` consecutive blocks when cluster > 1.
template <class... KArgs, class... Args>
void launch_ex(bool pdl, unsigned cluster, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
               gpuStream_t stream, Args... args) {
#if defined(GDN_GPU_SIM)
  (void)pdl;
  check(gdnsim::launch(kernel, grid, block, dim3(cluster > 1 ? cluster : 1u, 1, 1), smem, stream, args...),
        "kernel launch");
#else
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (cluster > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster;
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = n;
  check(cudaLaunchKernelEx(&cfg, kernel, args...), "kernel launch");
#endif
}
#endif

// kernel<<<grid, block, smem, stream>>>(args...); errors surface through check_launch().
template <class... KArgs, class... Args>
void launch_plain(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, gpuStream_t stream, Args... args) {
#if defined(GDN_GPU_SIM)
  (void)gdnsim::launch(kernel, grid, block, dim3(1, 1, 1), smem, stream, args...);
#else
  kernel<<<grid, block, smem, stream>>>(args...);
#endif
}

// launch_plain with the programmatic-serialization attribute when `pdl` (the caller passes true
// only on sm_90+ NVIDIA devices).
template <class... KArgs, class... Args>
void launch_pdl(bool pdl, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, gpuStream_t stream,
                Args... args) {
#if !defined(GDN_AMD_PATHS)
  if (pdl) return launch_ex(true, 1, kernel, grid, block, smem, stream, args...);
#endif
  (void)pdl;
  launch_plain(kernel, grid, block, smem, stream, args...);
}

#if !defined(GDN_AMD_PATHS)
// Thread block clusters (NVIDIA sm_90): launch_cluster starts `grid` blocks in clusters of
// `cluster` consecutive blocks (launch_pdl's attribute too when `pdl`); in the kernel,
// cluster_arrive[_relaxed]() then cluster_wait() is a barrier over the cluster's blocks (below),
// and cluster_peer(p, r) the address of p in the shared memory of the cluster's block r.
#define GDN_HAVE_CLUSTERS 1
template <class... KArgs, class... Args>
void launch_cluster(bool pdl, unsigned cluster, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                    gpuStream_t stream, Args... args) {
  launch_ex(pdl, cluster, kernel, grid, block, smem, stream, args...);
}
#if defined(GDN_GPU_SIM)
#define GDN_DEVICE_CLUSTERS 1
inline void cluster_arrive() { gdnsim::gdnsim_sync_cluster(); }  // the whole barrier at the arrive
inline void cluster_arrive_relaxed() { gdnsim::gdnsim_sync_cluster(); }
inline void cluster_wait() {}
inline const float* cluster_peer(const float* p, unsigned rank) {
  return static_cast<const float*>(gdnsim::gdnsim_cluster_peer(p, rank));
}
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// Device code of kernels that use clusters is compiled where this is defined.
#define GDN_DEVICE_CLUSTERS 1
// A cluster barrier in two halves: arrive -- releasing this thread's shared-memory writes to the
// cluster, or relaxed: only "my reads of peers are done" (the release waits for this thread's
// outstanding global accesses too: a MEMBAR) --, other work, then wait for every thread of the
// cluster to have arrived (acquiring what the releasing arrivals published).
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory"); }
__device__ __forceinline__ const float* cluster_peer(const float* p, unsigned rank) {
  uint64_t out;
  asm volatile("mapa.u64 %0, %1, %2;\n" : "=l"(out) : "l"(reinterpret_cast<uint64_t>(p)), "r"(rank));
  return reinterpret_cast<const float*>(out);
}
#endif
#endif

}  // namespace gdn::gpu
