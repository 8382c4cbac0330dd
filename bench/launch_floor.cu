// The benchmark method's own floor for small calls (gdn_bench rows "launch"): what a kernel costs
// per call in a CUDA graph of back-to-back calls when it does (almost) nothing, launched as
// libgdn launches its kernels (programmatic dependent launch on sm_90, griddepcontrol.wait first).
//   empty: one block, no memory access -- the graph node alone.
//   chain: 128 blocks of 128 threads; each thread loads an index, then 16 bytes at that index
//          (a different 256 KiB set each call, so from DRAM), and stores 16 bytes: the two
//          dependent round trips that a decode at batch 1 cannot avoid (slot index -> state).
//   chain in clusters: the same in clusters of 8 blocks with a cluster barrier between the load
//          and the store (what the cluster launch and one barrier add, as the fused decode step
//          would use them).
//   tile:  the memory of a decode at batch 1 (HV = 32, K = V = 128, fp32 state) without its
//          arithmetic: 128 blocks of 128 threads, each block a 128 x 32 tile of a 2 MiB state set
//          named by an index (a different set each call), read and written back in place, 8 rows
//          x 16 bytes a thread. ROW_WARPS: a warp reads 4 rows x 128 bytes (the decode's layout);
//          else 16 rows x 32 bytes (a warp owning 8 whole columns).
//   16-column tiles: the tile kernel on 256 blocks of 64 threads (still 8 rows x 16 bytes a thread).
//   split: the same set in contiguous pieces over 128 / 256 / 512 blocks of 128 threads (8 / 4 / 2
//          x 16 bytes a thread).
//   bulk:  the tile kernel with its loads by the bulk copy engine (sm_90; one copy a row).
//   cp.async: the tile kernel's 8 pieces a thread copied into shared memory by cp.async, then read
//          back and stored (session 26: 2.78 us against 3.20 for loads into registers).
//   256 threads a tile: the tile on 256 threads, 4 pieces a thread (2.68 us).
//   tensor copies (sm_90): the tile by one 2-D tensor copy (TMA) a block or one a warp (32 rows),
//          completion on an mbarrier, stores from registers or by a tensor store back (3.06 / 3.18
//          / 2.91 / 3.03 us).
//   norm rows: the memory of norm_fp8 at T = 128 (HV = 32, V = 128: 4096 rows) without its
//          arithmetic, laid out as its fast path (16 lanes a row, a row a half-warp, 256 blocks of
//          256 threads): 8 bf16 of x and of z a lane (two 8-byte loads each), 8 fp8 codes out (two
//          4-byte stores) and a 4-byte scale a row. The same buffers every call, as the norm_fp8
//          rows of gdn_bench (so from the L2).
//   state feed: what the tensor-core prefill state kernels copy from the L2 into shared memory at
//          T = 16384 (HK = 16, HV = 32, K = V = 128, bf16 products), without their arithmetic:
//          128 blocks (value head x 32-column tile), each walking 256 chunks of 64 tokens and
//          copying a chunk's q and k rows (its key head's: 8 blocks read the same), Tb and Pm rows
//          (hi halves, bf16: 4 blocks the same) and its v columns by 64 threads' 16-byte cp.async
//          into a double buffer, then waiting for them and a block barrier (52 KB a block and chunk).
//          SHARE: each block copies only its share of the rows 8 (q, k) or 4 (Tb, Pm) blocks have
//          in common -- the L2 traffic a cluster multicast would leave (6.5 KB + v).
//   state feed by multicast: the same 52 KB a block and chunk landing in shared memory, in
//          clusters of a key head's 8 blocks: each block's one warp issues its share of the common
//          rows as bulk copies multicast to the blocks that need them (q / k to all 8, Tb / Pm to
//          the value head's 4) and its own v rows, completion on an mbarrier a buffer, and a
//          cluster barrier a chunk before a buffer is refilled (what a state kernel fed this way
//          would pay at least).
//          These three rows wait for a chunk's copies before issuing the next chunk's (no
//          lookahead; the multicast row one chunk), so they time a copy's round trip a chunk, not
//          the L2's rate: session 25 measured 376 / 592 / 962 us, and the state kernel with all
//          its copies removed only ~9 % faster (docs/perf-notes.md).
// No op of libgdn can beat "chain" at small sizes; time / floor there says more against it than
// against the bytes floor.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "launch_floor.h"

namespace {

__device__ __forceinline__ void wait_previous() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Every thread of the cluster (sm_90) arrives, then waits for the others.
__device__ __forceinline__ void cluster_barrier() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}

// A 16-byte background copy global -> shared (sm_80+; the bench does not include the library's
// internal headers, whose async_copy16 is the same instruction), and the wait for all of them.
__device__ __forceinline__ void copy16_async(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(uint32_t(__cvta_generic_to_shared(smem))),
               "l"(gmem)
               : "memory");
#endif
}
__device__ __forceinline__ void copies_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
#endif
}

// An mbarrier (shared-memory address bar) for one arriving thread, visible to the async proxy;
// and the wait for phase `parity` of one (sm_90, where the kernels that use them compile).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void mbar_init(uint32_t bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\nfence.mbarrier_init.release.cluster;\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t ready = 0;
  while (!ready)
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(ready)
                 : "r"(bar), "r"(parity)
                 : "memory");
}
#endif

__global__ void empty_kernel() { wait_previous(); }

template <bool CLUSTER>
__global__ void chain_kernel(const int32_t* index, const float4* in, float4* out) {
  wait_previous();
  const int64_t base = int64_t(index[0]) * gridDim.x * blockDim.x;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const float4 v = in[base + i];
  if (CLUSTER) cluster_barrier();
  out[i] = v;
}

template <bool ROW_WARPS, int COLS = 32>
__global__ void tile_kernel(const int32_t* index, float4* state) {
  wait_previous();
  constexpr int kRows = 128, kCols4 = 128 / 4, kT = COLS / 4;  // a head's state row: 32 float4
  static_assert(ROW_WARPS || COLS == 32, "column warps: 32-column tiles of 128 threads");
  const int tx = ROW_WARPS ? threadIdx.x % kT : threadIdx.x / 16, ty = ROW_WARPS ? threadIdx.x / kT : threadIdx.x % 16;
  const int64_t head = blockIdx.x / (128 / COLS), col4 = (blockIdx.x % (128 / COLS)) * kT + tx;
  float4* p = state + int64_t(index[0]) * kLaunchFloorTileBlocks / 4 * kRows * kCols4 + head * kRows * kCols4 + col4;
  float4 v[kRows / 16];
#pragma unroll
  for (int r = 0; r < kRows / 16; ++r) v[r] = p[(ty + 16 * r) * kCols4];
#pragma unroll
  for (int r = 0; r < kRows / 16; ++r) {
    v[r].x += 1.0f;
    p[(ty + 16 * r) * kCols4] = v[r];
  }
}

// The same 2 MiB set over `gridDim.x` blocks of 128 threads, R float4 a thread (R = 8: 128 blocks,
// as tile_kernel; 4, 2: 256, 512 blocks), each block a contiguous piece: whether more threads with
// fewer bytes each move a decode's memory at B = 1 faster.
template <int R>
__global__ void split_kernel(const int32_t* index, float4* state) {
  wait_previous();
  constexpr int kSetFloat4 = kLaunchFloorTileBlocks * 128 * 32 / 4;
  float4* p = state + int64_t(index[0]) * kSetFloat4 + int64_t(blockIdx.x) * 128 * R + threadIdx.x;
  float4 v[R];
#pragma unroll
  for (int r = 0; r < R; ++r) v[r] = p[r * 128];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    v[r].x += 1.0f;
    p[r * 128] = v[r];
  }
}

// The decode's tile (as tile_kernel<true>) read by the bulk copy engine: one warp issues a
// 128-byte cp.async.bulk a row into shared memory (completion on an mbarrier), then every thread
// takes its 8 rows x 16 bytes from there and stores them as tile_kernel does: whether copies that
// cost the threads one instruction a row move a decode's memory faster than 8 loads a thread.
__global__ void bulk_tile_kernel(const int32_t* index, float4* state) {
  wait_previous();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int kRows = 128, kCols4 = 128 / 4, kT = 8;
  __shared__ alignas(128) float4 tile[kRows * kT];
  __shared__ alignas(8) uint64_t bar;
  const int tx = threadIdx.x % kT, ty = threadIdx.x / kT;
  const int64_t head = blockIdx.x / 4, col4 = (blockIdx.x % 4) * kT;
  float4* p = state + int64_t(index[0]) * kLaunchFloorTileBlocks / 4 * kRows * kCols4 + head * kRows * kCols4 + col4;
  const uint32_t bar_a = uint32_t(__cvta_generic_to_shared(&bar));
  if (threadIdx.x == 0) mbar_init(bar_a);
  __syncthreads();
  if (threadIdx.x < 32) {
    if (threadIdx.x == 0)
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar_a), "r"(kRows * kT * 16) : "memory");
    __syncwarp();
    for (int r = threadIdx.x; r < kRows; r += 32)
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 128, [%2];\n" ::"r"(
                       uint32_t(__cvta_generic_to_shared(tile + r * kT))),
                   "l"(p + r * kCols4), "r"(bar_a)
                   : "memory");
  }
  mbar_wait(bar_a, 0);
  float4 v[kRows / 16];
#pragma unroll
  for (int r = 0; r < kRows / 16; ++r) v[r] = tile[(ty + 16 * r) * kT + tx];
#pragma unroll
  for (int r = 0; r < kRows / 16; ++r) {
    v[r].x += 1.0f;
    p[(ty + 16 * r) * kCols4 + tx] = v[r];
  }
#endif
}

// The decode's tile (as tile_kernel<true>) by 16-byte cp.async a piece into shared memory (8 a
// thread, not held in registers while in flight), then read back and stored as tile_kernel does.
__global__ void async_tile_kernel(const int32_t* index, float4* state) {
  wait_previous();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kRows = 128, kCols4 = 128 / 4, kT = 8;
  __shared__ alignas(128) float4 tile[kRows * kT];
  const int tx = threadIdx.x % kT, ty = threadIdx.x / kT;
  const int64_t head = blockIdx.x / 4, col4 = (blockIdx.x % 4) * kT + tx;
  float4* p = state + int64_t(index[0]) * kLaunchFloorTileBlocks / 4 * kRows * kCols4 + head * kRows * kCols4 + col4;
#pragma unroll
  for (int r = 0; r < kRows / 16; ++r) copy16_async(tile + (ty + 16 * r) * kT + tx, p + (ty + 16 * r) * kCols4);
  copies_wait_all();
#pragma unroll
  for (int r = 0; r < kRows / 16; ++r) {
    float4 v = tile[(ty + 16 * r) * kT + tx];
    v.x += 1.0f;
    p[(ty + 16 * r) * kCols4] = v;
  }
#endif
}

// The decode's tile on 256 threads: 32 row groups of 4 rows (4 x 16 bytes a thread), as session
// 13's 256-thread decode tile.
__global__ void tile256_kernel(const int32_t* index, float4* state) {
  wait_previous();
  constexpr int kRows = 128, kCols4 = 128 / 4, kT = 8;
  const int tx = threadIdx.x % kT, ty = threadIdx.x / kT;
  const int64_t head = blockIdx.x / 4, col4 = (blockIdx.x % 4) * kT + tx;
  float4* p = state + int64_t(index[0]) * kLaunchFloorTileBlocks / 4 * kRows * kCols4 + head * kRows * kCols4 + col4;
  float4 v[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) v[r] = p[(ty + 32 * r) * kCols4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    v[r].x += 1.0f;
    p[(ty + 32 * r) * kCols4] = v[r];
  }
}

// The decode's tile (as tile_kernel<true>) by the tensor copy engine (sm_90): the 128 x 32 fp32
// tile named by the index lands in shared memory by one 2-D tensor copy (TMA; a tensor map over
// the whole state buffer, built on the host), completion on an mbarrier; the threads take their 8
// rows x 16 bytes from there and store them straight to global memory (STORE_TMA: back into
// shared memory and out by one tensor store). BOXES: the tile as that many boxes of rows, each
// warp issuing and waiting for its own (BOXES = 4; a warp's rows then are 32 contiguous ones).
template <bool STORE_TMA, int BOXES>
__global__ void tma_tile_kernel(const __grid_constant__ CUtensorMap map, const int32_t* index, float4* state) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int kRows = 128, kT = 8, kBoxRows = kRows / BOXES;
  __shared__ alignas(128) float4 tile[kRows * kT];
  __shared__ alignas(8) uint64_t bars[BOXES];
  const uint64_t map_a = reinterpret_cast<uint64_t>(&map);
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(map_a) : "memory");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int box = BOXES == 1 ? 0 : warp;
  const uint32_t bar_a = uint32_t(__cvta_generic_to_shared(&bars[box]));
  if (BOXES == 1 ? threadIdx.x == 0 : lane == 0) mbar_init(bar_a);
  if (BOXES == 1) __syncthreads(); else __syncwarp();
  wait_previous();
  const int head = blockIdx.x / 4, c0 = (blockIdx.x % 4) * 32;
  const int row0 = (index[0] * kLaunchFloorTileBlocks / 4 + head) * kRows;
  if (BOXES == 1 ? threadIdx.x == 0 : lane == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar_a), "r"(kBoxRows * kT * 16) : "memory");
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
                     uint32_t(__cvta_generic_to_shared(tile + box * kBoxRows * kT))),
                 "l"(map_a), "r"(c0), "r"(row0 + box * kBoxRows), "r"(bar_a)
                 : "memory");
  }
  mbar_wait(bar_a, 0);
  // rows of this thread: BOXES == 1: ty + 16 r (ty = threadIdx.x / 8); else 32 warp + lane / 8 + 4 r.
  const int tx = lane % kT;
  auto row = [&](int r) { return BOXES == 1 ? int(threadIdx.x / kT) + 16 * r : 32 * warp + lane / kT + 4 * r; };
  float4 v[kRows / 16];
#pragma unroll
  for (int r = 0; r < kRows / 16; ++r) v[r] = tile[row(r) * kT + tx];
  if (STORE_TMA) {
#pragma unroll
    for (int r = 0; r < kRows / 16; ++r) {
      v[r].x += 1.0f;
      tile[row(r) * kT + tx] = v[r];
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    if (BOXES == 1) __syncthreads(); else __syncwarp();
    if (BOXES == 1 ? threadIdx.x == 0 : lane == 0) {
      asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n"
                   "cp.async.bulk.commit_group;\ncp.async.bulk.wait_group.read 0;\n" ::"l"(map_a),
                   "r"(c0), "r"(row0 + box * kBoxRows), "r"(uint32_t(__cvta_generic_to_shared(tile + box * kBoxRows * kT)))
                   : "memory");
    }
  } else {
    float4* p = state + int64_t(row0) * 32 + c0 / 4 + tx;
#pragma unroll
    for (int r = 0; r < kRows / 16; ++r) {
      v[r].x += 1.0f;
      p[row(r) * 32] = v[r];
    }
  }
#else
  (void)map;
  (void)index;
  (void)state;
#endif
}

__global__ void norm_rows_kernel(const uint2* x, const uint2* z, uint32_t* out, float* scales) {
  wait_previous();
  const int lane = threadIdx.x % 16, row = blockIdx.x * 16 + threadIdx.x / 16;  // 32 x 8-byte words a row
  const uint2 x0 = x[row * 32 + 2 * lane], x1 = x[row * 32 + 2 * lane + 1];
  const uint2 z0 = z[row * 32 + 2 * lane], z1 = z[row * 32 + 2 * lane + 1];
  out[row * 32 + 2 * lane] = x0.x ^ x0.y ^ z0.x ^ z0.y;
  out[row * 32 + 2 * lane + 1] = x1.x ^ x1.y ^ z1.x ^ z1.y;
  if (lane == 0) scales[row] = __uint_as_float(x0.x & 0x3fffffffu);
}

constexpr int kFeedT = 16384, kFeedHK = 16, kFeedHV = 32, kFeedBT = 64, kFeedThreads = 64;
constexpr int64_t kFeedQK = int64_t(kFeedT) * kFeedHK * 128 * 2, kFeedMats = int64_t(kFeedT) * kFeedHV * 512,
                  kFeedV = int64_t(kFeedT) * kFeedHV * 128 * 2;
constexpr int kFeedSmem = 2 * (2 * kFeedBT * 256 + 2 * kFeedBT * 128 + kFeedBT * 64);

template <bool SHARE>
__global__ void __launch_bounds__(kFeedThreads) state_feed_kernel(const char* in) {
  wait_previous();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) char feed_sm[];
  const int h = blockIdx.x / 4, tile = blockIdx.x % 4, hk = h / 2, t = threadIdx.x;
  const int qk_share = SHARE ? 8 : 1, mat_share = SHARE ? 4 : 1;  // rows a block copies: 1 / share
  const int qk_part = (h % 2) * 4 + tile, mat_part = tile;
  const char *q = in, *k = in + kFeedQK, *mats = in + 2 * kFeedQK, *v = in + 2 * kFeedQK + kFeedMats;
  for (int c = 0; c < kFeedT / kFeedBT; ++c) {
    char* buf = feed_sm + (c % 2) * (kFeedSmem / 2);
    const int64_t t0 = int64_t(c) * kFeedBT;
    // q and k: 64 rows x 16 pieces; a block's share: rows r with r % share == part.
    for (int e = t; e < kFeedBT * 16; e += kFeedThreads) {
      const int r = e / 16, x = e % 16;
      if (r % qk_share != qk_part % qk_share) continue;
      const int64_t row = ((t0 + r) * kFeedHK + hk) * 256 + 16 * x;
      copy16_async(buf + e * 16, q + row);
      copy16_async(buf + kFeedBT * 256 + e * 16, k + row);
    }
    // Tb and Pm hi halves: 64 rows x 8 pieces each.
    for (int e = t; e < kFeedBT * 8; e += kFeedThreads) {
      const int r = e / 8, x = e % 8;
      if (r % mat_share != mat_part % mat_share) continue;
      const int64_t row = ((t0 + r) * kFeedHV + h) * 512 + 16 * x;
      copy16_async(buf + 2 * kFeedBT * 256 + e * 16, mats + row);
      copy16_async(buf + 2 * kFeedBT * 256 + kFeedBT * 128 + e * 16, mats + row + 256);
    }
    // v: 64 rows x 4 pieces of the block's 32 columns.
    for (int e = t; e < kFeedBT * 4; e += kFeedThreads) {
      const int r = e / 4, x = e % 4;
      copy16_async(buf + 2 * kFeedBT * 256 + 2 * kFeedBT * 128 + e * 16,
                   v + ((t0 + r) * kFeedHV + h) * 256 + tile * 64 + 16 * x);
    }
    copies_wait_all();
    __syncthreads();
  }
#endif
}

// The state feed by cluster multicast (sm_90): blockIdx.x = 8 hk + 4 (h % 2) + tile, clusters of 8.
__global__ void __launch_bounds__(kFeedThreads) state_feed_multicast_kernel(const char* in) {
  wait_previous();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) char feed_sm[];
  __shared__ alignas(8) uint64_t bars[2];
  const int h = blockIdx.x / 4, tile = blockIdx.x % 4, hk = h / 2, rank = blockIdx.x % 8, t = threadIdx.x;
  const char *q = in, *k = in + kFeedQK, *mats = in + 2 * kFeedQK, *v = in + 2 * kFeedQK + kFeedMats;
  const uint32_t bar0 = uint32_t(__cvta_generic_to_shared(&bars[0])), sm0 = uint32_t(__cvta_generic_to_shared(feed_sm));
  if (t == 0) mbar_init(bar0), mbar_init(bar0 + 8);
  cluster_barrier();
  constexpr int kChunks = kFeedT / kFeedBT;
  // Chunk c's copies into buffer c % 2 by warp 0: q / k rows 8 j + rank to all 8 blocks, Tb / Pm
  // rows 4 j + tile to the value head's 4, the block's own v rows.
  auto issue = [&](int c) {
    if (t >= 32) return;
    const uint32_t buf = sm0 + (c % 2) * (kFeedSmem / 2), bar = bar0 + 8 * (c % 2);
    const int64_t t0 = int64_t(c) * kFeedBT;
    if (t == 0) asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(kFeedSmem / 2) : "memory");
    __syncwarp();
    const uint16_t all = 0xff, head = uint16_t(0xf << (4 * (rank / 4)));
    auto copy = [&](uint32_t dst, const char* src, int bytes, uint16_t mask) {
      if (mask)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
                     " [%0], [%1], %2, [%3], %4;\n" ::"r"(dst), "l"(src), "r"(bytes), "r"(bar), "h"(mask)
                     : "memory");
      else
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
                     "l"(src), "r"(bytes), "r"(bar)
                     : "memory");
    };
    for (int e = t; e < 2 * 8; e += 32) {  // q, k: 8 rows each
      const int r = 8 * (e % 8) + rank, which = e / 8;
      copy(buf + which * kFeedBT * 256 + r * 256, (which ? k : q) + ((t0 + r) * kFeedHK + hk) * 256, 256, all);
    }
    for (int e = t; e < 2 * 16; e += 32) {  // Tb, Pm: 16 rows each
      const int r = 4 * (e % 16) + tile, which = e / 16;
      copy(buf + 2 * kFeedBT * 256 + which * kFeedBT * 128 + r * 128, mats + ((t0 + r) * kFeedHV + h) * 512 + 256 * which,
           128, head);
    }
    for (int r = t; r < kFeedBT; r += 32)  // v: the block's 64 rows
      copy(buf + 2 * kFeedBT * 256 + 2 * kFeedBT * 128 + r * 64, v + ((t0 + r) * kFeedHV + h) * 256 + tile * 64, 64, 0);
  };
  issue(0);
  for (int c = 0; c < kChunks; ++c) {
    if (c + 1 < kChunks) issue(c + 1);  // buffer (c + 1) % 2: every block was done with it (last barrier)
    mbar_wait(bar0 + 8 * (c % 2), (c / 2) % 2);
    cluster_barrier();  // every block of the cluster has chunk c (and is done with c - 1's buffer)
  }
#else
  (void)in;
#endif
}

// One launch as libgdn's: pdl, clusters of `cluster` blocks (> 1), `smem` bytes of dynamic shared memory.
template <class... KArgs, class... Args>
cudaError_t launch_smem(bool pdl, unsigned cluster, size_t smem, void (*kernel)(KArgs...), unsigned grid, unsigned block,
                        cudaStream_t s, Args... args) {
  cudaLaunchAttribute attr[2];
  cudaLaunchConfig_t cfg = {};
  cfg.attrs = attr;
  if (pdl) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[cfg.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 1) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attr[cfg.numAttrs++].val.clusterDim = {cluster, 1, 1};
  }
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}
template <class... KArgs, class... Args>
cudaError_t launch(bool pdl, unsigned cluster, void (*kernel)(KArgs...), unsigned grid, unsigned block, cudaStream_t s,
                   Args... args) {
  return launch_smem(pdl, cluster, 0, kernel, grid, block, s, args...);
}

}  // namespace

// A tensor map over the tile kernels' state sets (tile_sets x 32 heads x 128 rows of 128 fp32),
// boxes of 128 / boxes rows x 32 columns; built once for a buffer (the bench keeps one).
const CUtensorMap* tile_tensor_map(void* base, int boxes) {
  static void* built_for[2] = {nullptr, nullptr};
  static CUtensorMap maps[2];
  const int which = boxes == 1 ? 0 : 1;
  if (built_for[which] == base) return &maps[which];
  static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (!encode) {
    cudaDriverEntryPointQueryResult q;
    void* fn = nullptr;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      return nullptr;
    encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }
  const cuuint64_t dims[2] = {128, cuuint64_t(256) * 32 * 128}, strides[1] = {128 * 4};
  const cuuint32_t box[2] = {32, cuuint32_t(128 / boxes)}, elem[2] = {1, 1};
  if (encode(&maps[which], CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, base, dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
             CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
    return nullptr;
  built_for[which] = base;
  return &maps[which];
}

int64_t launch_floor_feed_input_bytes() { return 2 * kFeedQK + kFeedMats + kFeedV; }
int64_t launch_floor_feed_bytes(bool share) {  // what the blocks copy into shared memory in all
  const int64_t per_chunk = share ? 2 * kFeedBT / 8 * 256 + 2 * kFeedBT / 4 * 128 + kFeedBT * 64 : kFeedSmem / 2;
  return per_chunk * 128 * (kFeedT / kFeedBT);
}

int64_t launch_floor_chain_bytes_per_call() { return int64_t(kLaunchFloorChainThreads) * 16; }
int64_t launch_floor_tile_set_bytes() { return int64_t(kLaunchFloorTileBlocks) * 128 * 32 * 4; }

cudaError_t launch_floor_call(LaunchFloorKind kind, bool pdl, const int32_t* index, const void* in, void* out,
                              cudaStream_t stream) {
  const auto src = static_cast<const float4*>(in);
  const auto dst = static_cast<float4*>(out);
  const unsigned blocks = kLaunchFloorChainThreads / 128;
  switch (kind) {
    case LaunchFloorKind::kEmpty: return launch(pdl, 1, empty_kernel, 1, 32, stream);
    case LaunchFloorKind::kChain: return launch(pdl, 1, chain_kernel<false>, blocks, 128, stream, index, src, dst);
    case LaunchFloorKind::kTile:
      return launch(pdl, 1, tile_kernel<true>, kLaunchFloorTileBlocks, 128, stream, index, dst);
    case LaunchFloorKind::kTileColumnWarps:
      return launch(pdl, 1, tile_kernel<false>, kLaunchFloorTileBlocks, 128, stream, index, dst);
    case LaunchFloorKind::kTile16:
      return launch(pdl, 1, tile_kernel<true, 16>, kLaunchFloorTileBlocks * 2, 64, stream, index, dst);
    case LaunchFloorKind::kTileSplit8:
      return launch(pdl, 1, split_kernel<8>, kLaunchFloorTileBlocks, 128, stream, index, dst);
    case LaunchFloorKind::kTileSplit4:
      return launch(pdl, 1, split_kernel<4>, kLaunchFloorTileBlocks * 2, 128, stream, index, dst);
    case LaunchFloorKind::kTileSplit2:
      return launch(pdl, 1, split_kernel<2>, kLaunchFloorTileBlocks * 4, 128, stream, index, dst);
    case LaunchFloorKind::kTileBulk:
      return launch(pdl, 1, bulk_tile_kernel, kLaunchFloorTileBlocks, 128, stream, index, dst);
    case LaunchFloorKind::kTileAsync:
      return launch(pdl, 1, async_tile_kernel, kLaunchFloorTileBlocks, 128, stream, index, dst);
    case LaunchFloorKind::kTile256:
      return launch(pdl, 1, tile256_kernel, kLaunchFloorTileBlocks, 256, stream, index, dst);
    case LaunchFloorKind::kTileTma:
    case LaunchFloorKind::kTileTmaStore:
    case LaunchFloorKind::kTileTma4:
    case LaunchFloorKind::kTileTma4Store: {
      const bool four = kind == LaunchFloorKind::kTileTma4 || kind == LaunchFloorKind::kTileTma4Store;
      const bool store = kind == LaunchFloorKind::kTileTmaStore || kind == LaunchFloorKind::kTileTma4Store;
      const CUtensorMap* map = tile_tensor_map(out, four ? 4 : 1);
      if (!map) return cudaErrorNotSupported;
      void (*kernels[4])(const CUtensorMap, const int32_t*, float4*) = {tma_tile_kernel<false, 1>, tma_tile_kernel<true, 1>,
                                                                        tma_tile_kernel<false, 4>, tma_tile_kernel<true, 4>};
      return launch(pdl, 1, kernels[(four ? 2 : 0) + (store ? 1 : 0)], kLaunchFloorTileBlocks, 128, stream, *map, index, dst);
    }
    case LaunchFloorKind::kNormRows: {
      const auto x = static_cast<const uint2*>(in);
      const int64_t words = int64_t(kLaunchFloorNormRows) * 32;  // 8-byte words of x (and of z)
      auto codes = static_cast<uint32_t*>(out);
      return launch(pdl, 1, norm_rows_kernel, kLaunchFloorNormRows / 16, 256, stream, x, x + words, codes,
                    reinterpret_cast<float*>(codes + words));
    }
    case LaunchFloorKind::kStateFeed:
    case LaunchFloorKind::kStateFeedShare:
    case LaunchFloorKind::kStateFeedMulticast: {
      const int which = kind == LaunchFloorKind::kStateFeed ? 0 : kind == LaunchFloorKind::kStateFeedShare ? 1 : 2;
      void (*kernels[3])(const char*) = {state_feed_kernel<false>, state_feed_kernel<true>, state_feed_multicast_kernel};
      auto kernel = kernels[which];
      static bool smem_set[3] = {false, false, false};  // once, before any graph capture (the eager warm-up)
      if (!smem_set[which]) {
        const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kFeedSmem);
        if (e != cudaSuccess) return e;
        smem_set[which] = true;
      }
      return launch_smem(pdl, which == 2 ? 8 : 1, kFeedSmem, kernel, 128, kFeedThreads, stream, static_cast<const char*>(in));
    }
    default: return launch(pdl, 8, chain_kernel<true>, blocks, 128, stream, index, src, dst);
  }
}
