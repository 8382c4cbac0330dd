// gdn_bench's launch-floor kernels (launch_floor.cu; CUDA builds only).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

// Threads of the chain kernel (128 blocks of 128), each moving 16 bytes in and 16 out.
constexpr int kLaunchFloorChainThreads = 128 * 128;
int64_t launch_floor_chain_bytes_per_call();
// Blocks of the tile kernel (a decode's 32-column tiles at B = 1, HV = 32, K = V = 128) and the
// bytes of one state set (2 MiB).
constexpr int kLaunchFloorTileBlocks = 128;
int64_t launch_floor_tile_set_bytes();
// Rows of the norm-rows kernel (norm_fp8 at T = 128: HV = 32 rows of V = 128 a token).
constexpr int kLaunchFloorNormRows = 128 * 32;
enum class LaunchFloorKind { kEmpty, kChain, kChainClusters, kTile, kTileColumnWarps, kTile16, kTileSplit8, kTileSplit4, kTileSplit2, kTileBulk, kTileAsync, kTile256, kTileTma, kTileTmaStore, kTileTma4, kTileTma4Store, kNormRows, kStateFeed, kStateFeedShare, kStateFeedMulticast };
// The state-feed kernels (a prefill state kernel's copies at T = 16384): the bytes of their input
// (q, k, the workspace rows, v) and what they copy into shared memory in all (share: each block
// only its share of the rows that blocks have in common).
int64_t launch_floor_feed_input_bytes();
int64_t launch_floor_feed_bytes(bool share);
// Enqueues one call: the empty kernel, or the chain kernel (alone or in clusters of 8 with a
// cluster barrier) reading set index[0] of `in` (sets of launch_floor_chain_bytes_per_call() bytes)
// into `out`, or the tile kernel on set index[0] of `out` (sets of launch_floor_tile_set_bytes())
// in place, or the norm-rows kernel reading x and then z (kLaunchFloorNormRows rows of 128 bf16
// each, back to back) from `in` and writing codes and then scales to `out`; pdl: the
// programmatic-serialization attribute (meaningful on sm_90); or a state-feed kernel reading `in`
// (launch_floor_feed_input_bytes()).
cudaError_t launch_floor_call(LaunchFloorKind kind, bool pdl, const int32_t* index, const void* in, void* out,
                              cudaStream_t stream);
