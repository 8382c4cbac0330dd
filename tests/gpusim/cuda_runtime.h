// gpusim: the CUDA runtime and device built-ins that libgdn's GPU kernel sources use, run on the
// CPU. A test build (-DGDN_GPU_SIM=ON) compiles src/gpu/*.cu as C++ against this header instead of
// the CUDA toolkit's, so the kernels themselves -- index math, tiling, barriers, shuffles, clusters
// -- run in CI against the same oracles as on the device. Not a performance model.
//
// Execution: a grid's blocks run on a few host threads (a cluster's blocks on one host thread
// each, concurrently); inside a block every GPU thread is a coroutine with its own stack, switched
// at barriers (__syncthreads, 32-lane shuffles and __syncwarp, cluster barriers). Between two block
// barriers the 32-lane subgroups run in a random order, each as far as it gets before the next
// starts, and lanes in a random order between subgroup barriers: a missing barrier shows up as a
// wrong answer rather than passing by luck. A barrier some lanes never reach, a shuffle with a lane
// that exited, or a launch the hardware would refuse (block size, grid size, dynamic shared memory
// over the opted-in limit, cluster shape) stop the test with a message. Device allocations (exact
// sizes: AddressSanitizer sees overruns) and dynamic shared memory start as 0xff bytes (NaN as
// float); __shared__ variables are thread_local, so they keep an earlier block's values.
// mma.m16n8k16 (bf16) is emulated from the fragment layout, wgmma m64nNk16 (bf16, both operands in
// shared memory) from its descriptors, eagerly; cp.async copies land only when a
// wait_group lets them (the latest moment allowed); ldmatrix and the cvt instructions take the
// kernels' portable fallbacks; PDL is a no-op
// (launches run one after another); memory is sequentially consistent; HIP's 64-lane wavefronts
// are not modelled. What it checks is what the kernels compute, never how fast.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <utility>

#define GDN_GPU_SIM_ACTIVE 1

// ---- declaration specifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

// ---- vector types
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(8))) float2 { float x, y; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

// ---- runtime API (host)
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed };
constexpr unsigned cudaStreamNonBlocking = 1;
struct gdnsim_stream;
struct gdnsim_graph;
using cudaStream_t = gdnsim_stream*;
using cudaGraph_t = gdnsim_graph*;
using cudaGraphExec_t = gdnsim_graph*;
using cudaGraphNode_t = void*;
struct cudaDeviceProp {
  char name[256];
  int multiProcessorCount;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int major, minor;
  int warpSize;
};
#define GDNSIM_API extern "C" __attribute__((visibility("default")))
GDNSIM_API const char* cudaGetErrorString(cudaError_t);
GDNSIM_API cudaError_t cudaGetLastError();
GDNSIM_API cudaError_t cudaPeekAtLastError();
GDNSIM_API cudaError_t cudaGetDeviceCount(int*);
GDNSIM_API cudaError_t cudaGetDevice(int*);
GDNSIM_API cudaError_t cudaSetDevice(int);
GDNSIM_API cudaError_t cudaGetDeviceProperties(cudaDeviceProp*, int);
GDNSIM_API cudaError_t cudaMalloc(void**, size_t);
GDNSIM_API cudaError_t cudaFree(void*);
GDNSIM_API cudaError_t cudaMemcpy(void*, const void*, size_t, cudaMemcpyKind);
GDNSIM_API cudaError_t cudaMemset(void*, int, size_t);
GDNSIM_API cudaError_t cudaDeviceSynchronize();
GDNSIM_API cudaError_t cudaStreamCreateWithFlags(cudaStream_t*, unsigned);
GDNSIM_API cudaError_t cudaStreamCreate(cudaStream_t*);
GDNSIM_API cudaError_t cudaStreamDestroy(cudaStream_t);
GDNSIM_API cudaError_t cudaStreamSynchronize(cudaStream_t);
GDNSIM_API cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode);
GDNSIM_API cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t*);
GDNSIM_API cudaError_t cudaGraphGetNodes(cudaGraph_t, cudaGraphNode_t*, size_t*);
GDNSIM_API cudaError_t cudaGraphInstantiate(cudaGraphExec_t*, cudaGraph_t, unsigned long long);
GDNSIM_API cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
GDNSIM_API cudaError_t cudaGraphExecDestroy(cudaGraphExec_t);
GDNSIM_API cudaError_t cudaGraphDestroy(cudaGraph_t);

template <class T>
cudaError_t cudaMalloc(T** p, size_t n) {  // the runtime's C++ overload
  return cudaMalloc(reinterpret_cast<void**>(p), n);
}

namespace gdnsim {

// ---- the simulator's interface (gdnsim.cpp)
struct Thread {  // one GPU thread
  dim3 tid, bid, bdim, gdim;
  unsigned linear, lane, warp;
};
GDNSIM_API Thread* gdnsim_current();
GDNSIM_API void gdnsim_sync_block();
// bar.sync (wait = 1) / bar.arrive (wait = 0) on named barrier id (0 .. 15) of `count` threads: a
// phase completes when count threads have arrived; its waiters run on after that.
GDNSIM_API void gdnsim_named_barrier(unsigned id, unsigned count, int wait);
GDNSIM_API void gdnsim_sync_warp();
GDNSIM_API void gdnsim_sync_cluster();
// Puts bits into this lane's exchange slot, waits for the 32-lane subgroup, returns lane src's bits.
GDNSIM_API uint32_t gdnsim_exchange(uint32_t bits, unsigned src_lane);
// All 32 lanes of the subgroup put `words` (<= 8) words; each gets every lane's, lane-major.
GDNSIM_API void gdnsim_warp_gather(const uint32_t* mine, unsigned words, uint32_t* all);
// cp.async: a copy of `size` bytes (4, 8 or 16, both addresses aligned to it) whose source is read
// now and whose destination is written when this thread's wait_group lets it complete (the latest
// moment the hardware may), so a missing wait reads stale or never-written shared memory.
GDNSIM_API void gdnsim_async_copy(void* dst, const void* src, unsigned size);
GDNSIM_API void gdnsim_async_commit();
GDNSIM_API void gdnsim_async_wait(int newest_pending);
GDNSIM_API void* gdnsim_dynamic_smem();
// Address of p (shared memory of this block: dynamic, or a __shared__ variable, found at the same
// offset from the kernel module's thread_local anchor) in the cluster's block `rank`.
GDNSIM_API const void* gdnsim_cluster_peer(const void* p, unsigned rank);
struct Launch {
  const void* func;  // identifies the kernel (attributes, names)
  dim3 grid, block, cluster;
  size_t smem;
  void* (*tls_anchor)();  // the kernel module's __shared__ anchor (per host thread)
  std::function<void()> body;
};
GDNSIM_API cudaError_t gdnsim_launch(Launch* l, cudaStream_t stream);
GDNSIM_API cudaError_t gdnsim_set_max_dynamic_smem(const void* func, int bytes);
GDNSIM_API cudaError_t gdnsim_occupancy(int* blocks, const void* func, int threads, size_t smem);

// __shared__ variables are thread_local in the module that defines the kernels: their addresses
// on another host thread are found through an anchor of the same module.
inline void* tls_anchor() {
  static thread_local char anchor;
  return &anchor;
}

template <class... KArgs, class... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, dim3 cluster, size_t smem, cudaStream_t stream,
                   Args... args) {
  Launch l;
  l.func = reinterpret_cast<const void*>(kernel);
  l.grid = grid, l.block = block, l.cluster = cluster, l.smem = smem, l.tls_anchor = &tls_anchor;
  l.body = [kernel, params = std::tuple<KArgs...>(args...)]() { std::apply(kernel, params); };
  return gdnsim_launch(&l, stream);
}

}  // namespace gdnsim

template <class F>
cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return gdnsim::gdnsim_set_max_dynamic_smem(reinterpret_cast<const void*>(func), value);
}
template <class F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F* func, int threads, size_t smem) {
  return gdnsim::gdnsim_occupancy(blocks, reinterpret_cast<const void*>(func), threads, smem);
}

// ---- device built-ins
#define threadIdx (gdnsim::gdnsim_current()->tid)
#define blockIdx (gdnsim::gdnsim_current()->bid)
#define blockDim (gdnsim::gdnsim_current()->bdim)
#define gridDim (gdnsim::gdnsim_current()->gdim)
inline void __syncthreads() { gdnsim::gdnsim_sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { gdnsim::gdnsim_sync_warp(); }
inline float gdnsim_shfl(float v, unsigned src) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = gdnsim::gdnsim_exchange(u, src);
  std::memcpy(&v, &u, 4);
  return v;
}
inline float __shfl_xor_sync(unsigned, float v, int mask, int width = 32) {
  const unsigned lane = gdnsim::gdnsim_current()->lane, w = unsigned(width);
  return gdnsim_shfl(v, (lane & ~(w - 1)) | ((lane ^ unsigned(mask)) & (w - 1)));
}
inline float __shfl_sync(unsigned, float v, int src, int width = 32) {
  const unsigned lane = gdnsim::gdnsim_current()->lane, w = unsigned(width);
  return gdnsim_shfl(v, (lane & ~(w - 1)) | (unsigned(src) & (w - 1)));
}
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T>
inline void __stcs(T* p, T v) { *p = v; }

namespace gdnsim {
inline float bf16_at(uint32_t word, unsigned half) {
  const uint32_t u = (half ? word >> 16 : word & 0xffffu) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 d, a, b, d for the calling lane's fragments
// (g = lane / 4, t = lane % 4): A rows g, g + 8 / words t, t + 4; B^T row g / words t, t + 4; D
// entries (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). Products are exact in fp32; sums run
// in k order (the hardware's order is unspecified).
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]}, all[32 * 6];
  gdnsim_warp_gather(mine, 6, all);
  auto A = [&](int r, int k) {  // element (r, k) of the 16 x 16 A
    const int lane = 4 * (r % 8) + (k % 8) / 2, reg = (r / 8) + 2 * (k / 8);
    return bf16_at(all[lane * 6 + reg], unsigned(k % 2));
  };
  auto B = [&](int k, int n) {  // element (k, n) of the 16 x 8 B
    const int lane = 4 * n + (k % 8) / 2, reg = 4 + k / 8;
    return bf16_at(all[lane * 6 + reg], unsigned(k % 2));
  };
  const int lane = int(gdnsim_current()->lane), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int r = g + 8 * (i / 2), n = 2 * t + i % 2;
    float acc = d[i];
    for (int k = 0; k < 16; ++k) acc += A(r, k) * B(k, n);
    d[i] = acc;
  }
}
// Element (row, k) of a bf16 operand in shared memory by its descriptor (start address, leading
// byte offset, stride byte offset; no swizzle, K-major): core matrices of 8 rows x 8 k (16 bytes a
// row), leading byte offset = the next 8 k, stride byte offset = the next 8 rows.
inline float wgmma_operand_at(uint64_t desc, int row, int k) {
  const char* base = static_cast<const char*>(gdnsim_dynamic_smem());
  const uint64_t start = (desc & 0x3fffu) << 4, lbo = ((desc >> 16) & 0x3fffu) << 4, sbo = ((desc >> 32) & 0x3fffu) << 4;
  const uint64_t off = start + uint64_t(row / 8) * sbo + uint64_t(k / 8) * lbo + uint64_t(row % 8) * 16 + uint64_t(k % 8) * 2;
  uint16_t h;
  std::memcpy(&h, base + off, 2);
  return bf16_at(h, 0);
}
// wgmma.mma_async.m64nNk16.f32.bf16.bf16 with A (64 x 16) from the warpgroup's registers -- each
// warp's rows 16 w .. 16 w + 15 as mma.m16n8k16's A fragment (a[0]: row g, columns 2t, 2t + 1;
// a[1]: row g + 8; a[2], a[3]: the columns + 8) -- and B in shared memory by descriptor, for the
// calling thread's accumulator entries: thread (warp w of its warpgroup, g, t) holds
// d[i] = D(16 w + g + 8 ((i / 2) % 2), 8 (i / 4) + 2 t + i % 2). Computed at the issue (the
// products' asynchrony is not modelled).
inline void wgmma_m64nk16_bf16_rs(float* d, int N, const uint32_t (&a)[4], uint64_t db, bool accumulate) {
  uint32_t mine[4] = {a[0], a[1], a[2], a[3]}, all[32 * 4];
  gdnsim_warp_gather(mine, 4, all);
  auto A = [&](int r, int k) {  // element (r, k) of the warp's 16 x 16 rows
    const int lane = 4 * (r % 8) + (k % 8) / 2, reg = (r / 8) + 2 * (k / 8);
    return bf16_at(all[lane * 4 + reg], unsigned(k % 2));
  };
  const int lane = int(gdnsim_current()->lane), g = lane / 4, t = lane % 4;
  for (int i = 0; i < N / 2; ++i) {
    const int r = g + 8 * ((i / 2) % 2), n = 8 * (i / 4) + 2 * t + i % 2;
    float acc = accumulate ? d[i] : 0.0f;
    for (int k = 0; k < 16; ++k) acc += A(r, k) * wgmma_operand_at(db, n, k);
    d[i] = acc;
  }
}
}  // namespace gdnsim
