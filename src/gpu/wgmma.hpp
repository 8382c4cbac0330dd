// Hopper warpgroup products (sm_90a wgmma.mma_async m64n32k16, bf16 operands, fp32 accumulators):
// A (64 x 16 a k-step) from the registers of the warpgroup's 128 threads (mma.m16n8k16's A
// fragment, one 16-row slice a warp), B in shared memory in the no-swizzle K-major layout, the
// accumulators in registers.
//
// Tile layout of B ("core" layout): an R x C bf16 tile (C = the contraction index, a multiple of
// 16) is stored as 8 x 8 core matrices of 128 contiguous bytes (8 rows of 16 bytes), the core
// matrices of one row group consecutive along C: element (r, c) at core_at(r, c, C). In the
// descriptor: leading byte offset (next core matrix along K) 128, stride byte offset (next 8 rows)
// 16 C; B^T rows n (32), K-major.
// Accumulator fragment of thread (warp w of the warpgroup, g = lane / 4, t = lane % 4): d[i] is
// row 16 w + g + 8 ((i / 2) % 2), column 8 (i / 4) + 2 t + i % 2 -- mma.m16n8's C layout, four
// column blocks.
// Asynchrony: shared memory written by ordinary stores must be fenced (wgmma_proxy_fence) by the
// writing threads and published by a barrier before a product reads it; a warpgroup issues its
// products (wgmma_fence first, wgmma_commit after) and waits for them (wgmma_wait) before it reads
// the accumulators or overwrites an operand.
#pragma once

#include <cstdint>

#include "mma.hpp"

// Device code with the sm_90a instructions (or the simulator, which emulates them).
#if GDN_HAVE_MMA && (defined(GDN_GPU_SIM) || defined(__CUDA_ARCH_FEAT_SM90_ALL))
#define GDN_WGMMA 1
#else
#define GDN_WGMMA 0
#endif

namespace gdn::gpu {

__host__ __device__ constexpr int core_at(int r, int c, int C) {
  return ((r >> 3) * (C >> 3) + (c >> 3)) * 64 + (r & 7) * 8 + (c & 7);
}

#if GDN_WGMMA
// Shared-memory address of p (the simulator: offset in the dynamic shared memory).
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
#if defined(GDN_GPU_SIM)
  return uint32_t(static_cast<const char*>(p) - static_cast<const char*>(gdnsim::gdnsim_dynamic_smem()));
#else
  return uint32_t(__cvta_generic_to_shared(p));
#endif
}

// Descriptor of the 16-wide k-step at k0 of a core-layout tile with C columns, from row r0 (a
// multiple of 8).
__device__ __forceinline__ uint64_t wgmma_desc(const uint16_t* tile, int C, int r0, int k0) {
  const uint32_t a = smem_addr(tile + core_at(r0, k0, C));
  return uint64_t((a & 0x3ffffu) >> 4) | (uint64_t(128 >> 4) << 16) | (uint64_t((16 * C) >> 4) << 32);
}

__device__ __forceinline__ void wgmma_fence() {
#if !defined(GDN_GPU_SIM)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if !defined(GDN_GPU_SIM)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// bar.sync on named barrier ID (1 .. 15) of COUNT threads (whole warps); the simulator models
// its phases (a waiter runs on once COUNT threads have arrived).
template <int ID, int COUNT>
__device__ __forceinline__ void named_barrier_sync() {
#if defined(GDN_GPU_SIM)
  gdnsim::gdnsim_named_barrier(ID, COUNT, 1);
#else
  asm volatile("bar.sync %0, %1;\n" ::"n"(ID), "n"(COUNT) : "memory");
#endif
}
// bar.sync / bar.arrive on a named barrier chosen at run time (id 1 .. 15, COUNT threads, whole
// warps): bar.arrive counts toward the phase without waiting (a producer's side; its consumers
// bar.sync).
template <int COUNT>
__device__ __forceinline__ void named_barrier_sync(int id) {
#if defined(GDN_GPU_SIM)
  gdnsim::gdnsim_named_barrier(unsigned(id), COUNT, 1);
#else
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(COUNT) : "memory");
#endif
}
template <int COUNT>
__device__ __forceinline__ void named_barrier_arrive(int id) {
#if defined(GDN_GPU_SIM)
  gdnsim::gdnsim_named_barrier(unsigned(id), COUNT, 0);
#else
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(COUNT) : "memory");
#endif
}
// Ordinary shared-memory stores made visible to the products (the async proxy).
__device__ __forceinline__ void wgmma_proxy_fence() {
#if !defined(GDN_GPU_SIM)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

#if GDN_LDMATRIX
// Four 8 x 8 b16 matrices (fragments as ldmatrix_x4 loads them) stored as they are; lane l gives
// the address of row l % 8 of matrix l / 8 (16-byte aligned).
__device__ __forceinline__ void stmatrix_x4(uint16_t* row, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_addr(row)), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}
// Four 8 x 8 b16 matrices (fragments as ldmatrix_x4 loads them) stored transposed; lane l gives
// the address of row l % 8 of matrix l / 8 (16-byte aligned).
__device__ __forceinline__ void stmatrix_x4_trans(uint16_t* row, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_addr(row)),
               "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}
#endif

// d (+)= A B with A (64 x 16) from the warpgroup's registers: warp w's rows 16 w .. 16 w + 15 as
// mma.m16n8k16's A fragment, B^T 32 x 16 by descriptor.
__device__ __forceinline__ void wgmma_m64n32_rs(float (&d)[16], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
#if defined(GDN_GPU_SIM)
  gdnsim::wgmma_m64nk16_bf16_rs(d, 32, a, b, accumulate);
#else
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(int(accumulate)));
#endif
}

// d += A B over KS k-steps: A from registers (a[s]: k-step s), B^T rows 0 .. 31 of a core-layout
// tile with C columns, issued as one committed group (the caller waits for it; the registers of a
// stay unchanged until then).
template <int KS, int C>
__device__ __forceinline__ void wgmma_issue_m64n32_rs(float (&d)[16], const uint32_t (&a)[KS][4], const uint16_t* b) {
  const uint64_t db = wgmma_desc(b, C, 0, 0);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < KS; ++s) wgmma_m64n32_rs(d, a[s], db + uint64_t(16 * s), true);
  wgmma_commit();
}

// Waits until at most N of the warpgroup's committed groups are pending; d (an accumulator of
// the awaited products) is not read or moved across the wait.
template <int N>
__device__ __forceinline__ void wgmma_wait(float (&d)[16]) {
#if defined(GDN_GPU_SIM)
  (void)d;
#else
  asm volatile("wgmma.wait_group.sync.aligned %16;\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
               : "n"(N)
               : "memory");
#endif
}
#endif  // GDN_WGMMA

}  // namespace gdn::gpu
