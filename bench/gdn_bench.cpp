// libgdn benchmark: time per op at Qwen3-Next shapes, bytes moved, the floor (bytes over the copy
// bandwidth measured in the same run) and time/floor; writes JSON with --json FILE.
// CPU: median wall time per call. CUDA (--backend cuda, in a CUDA build): each measurement
// captures a CUDA graph of at least 32 calls (4 for prefill; rotating over state slots, so states
// stream from memory as in serving) and reports the median of CUDA-event-timed replays over calls
// per graph.
//
//   gdn_bench [--backend cpu|cuda] [--threads N] [--iters N] [--json FILE] [--quick] [--only OP,OP] [--size N]
#include <gdn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#if defined(GDN_BENCH_CUDA)
#include <cuda_runtime.h>

#include "launch_floor.h"
#endif

namespace {

[[noreturn]] void die(const char* what, const char* detail) {
  std::fprintf(stderr, "%s: %s\n", what, detail);
  std::exit(1);
}
#define CHECK(call)                                                                                 \
  do {                                                                                              \
    gdn_status st_ = (call);                                                                        \
    if (st_ != GDN_SUCCESS) die(#call, (std::string(gdn_status_string(st_)) + ": " + gdn_last_error_message()).c_str()); \
  } while (0)
#if defined(GDN_BENCH_CUDA)
#define CU(call)                                                \
  do {                                                          \
    cudaError_t e_ = (call);                                    \
    if (e_ != cudaSuccess) die(#call, cudaGetErrorString(e_));  \
  } while (0)
#endif

bool g_gpu = false;

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// A tensor filled with small random values, on the host or the device.
struct Buffer {
  gdn_dtype dt;
  std::vector<int64_t> shape;
  size_t bytes = 0;
  void* ptr = nullptr;
  Buffer(gdn_dtype d, std::vector<int64_t> s, std::vector<int32_t> ints = {}) : dt(d), shape(std::move(s)) {
    size_t n = 1;
    for (int64_t x : shape) n *= size_t(x);
    bytes = n * gdn_dtype_size(dt);
    // The first 2^20 elements drawn, the rest repeats of them (GiB-sized state pools fill in a
    // fraction of a second; the values only need to be ordinary numbers); on the GPU the repeats
    // are device-to-device copies, so the host holds only the drawn block (or the integers).
    const size_t drawn = std::min(n, size_t(1) << 20), block = drawn * gdn_dtype_size(dt);
    const size_t head = std::min(bytes, std::max(block, ints.size() * 4));
    std::vector<unsigned char> host(g_gpu ? head : bytes);
    std::mt19937_64 rng(n * 31 + 7);
    for (size_t i = 0; i < drawn; ++i) {
      const float f = float(int(rng() % 2001) - 1000) / 1000.0f;
      uint32_t u;
      std::memcpy(&u, &f, 4);
      if (dt == GDN_DTYPE_BF16 || dt == GDN_DTYPE_F16) {
        const uint16_t h = uint16_t(u >> 16);  // bf16 bits; as f16 a harmless small value too
        std::memcpy(&host[2 * i], &h, 2);
      } else if (dt == GDN_DTYPE_F32) {
        const float g = f / 4.0f;
        std::memcpy(&host[4 * i], &g, 4);
      }
    }
    const bool floats = dt == GDN_DTYPE_BF16 || dt == GDN_DTYPE_F16 || dt == GDN_DTYPE_F32;
    if (!ints.empty()) std::memcpy(host.data(), ints.data(), std::min(bytes, ints.size() * 4));
#if defined(GDN_BENCH_CUDA)
    if (g_gpu) {
      CU(cudaMalloc(&ptr, bytes ? bytes : 1));
      CU(cudaMemset(ptr, 0, bytes));
      CU(cudaMemcpy(ptr, host.data(), head, cudaMemcpyHostToDevice));
      char* dst = static_cast<char*>(ptr);
      if (floats)
        for (size_t at = head; at < bytes; at += std::min(at, bytes - at))
          CU(cudaMemcpy(dst + at, dst, std::min(at, bytes - at), cudaMemcpyDeviceToDevice));
      return;
    }
#endif
    if (floats)
      for (size_t at = block; at < bytes; at += block) std::memcpy(&host[at], host.data(), std::min(block, bytes - at));
    ptr = std::malloc(bytes ? bytes : 1);
    std::memcpy(ptr, host.data(), bytes);
  }
  ~Buffer() {
#if defined(GDN_BENCH_CUDA)
    if (g_gpu) {
      cudaFree(ptr);
      return;
    }
#endif
    std::free(ptr);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  gdn_tensor view() const {
    gdn_tensor t{};
    t.data = ptr;
    t.dtype = dt;
    t.ndim = int32_t(shape.size());
    int64_t s = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      t.shape[i] = shape[size_t(i)];
      t.strides[i] = s;
      s *= shape[size_t(i)];
    }
    return t;
  }
};

struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit Workspace(size_t n) : bytes(n) {
    if (n == 0) return;
#if defined(GDN_BENCH_CUDA)
    if (g_gpu) {
      CU(cudaMalloc(&ptr, n));
      return;
    }
#endif
    ptr = std::malloc(n);
  }
  ~Workspace() {
#if defined(GDN_BENCH_CUDA)
    if (g_gpu) {
      cudaFree(ptr);
      return;
    }
#endif
    std::free(ptr);
  }
};

struct Row {
  std::string op, shape;
  double seconds, bytes, floor_s;
};

// The whole of a text file (dies if it cannot be opened).
std::string read_file(const char* path) {
  FILE* f = std::fopen(path, "r");
  if (!f) die(path, "cannot open");
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  std::fclose(f);
  return text;
}

struct Bench {
  gdn_context ctx = nullptr;
  gdn_layer layer = nullptr, layer_bf16_state = nullptr, layer_bf16_products = nullptr;
  int iters = 20;
  double copy_bw = 0;  // bytes/s, read + write counted
  std::vector<Row> rows;
  const int64_t HK = 16, HV = 32, K = 128, V = 128;
#if defined(GDN_BENCH_CUDA)
  cudaStream_t stream_ = nullptr;
#endif

  // Time per call of call(i) for i in [0, reps): on the GPU, graphs of at least min_calls calls
  // (i rotating over [0, reps)), so that the graph's own launch is spread thin as in an engine's
  // graph of a whole forward pass; single calls on the CPU (rotating i too).
  double time_calls(int reps, const std::function<void(int, void*)>& call, int min_calls = 32) {
#if defined(GDN_BENCH_CUDA)
    if (g_gpu) {
      const int calls = (std::max(reps, min_calls) + reps - 1) / reps * reps;
      for (int i = 0; i < reps; ++i) call(i, stream_);  // warm-up, eager
      CU(cudaStreamSynchronize(stream_));
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      CU(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal));
      for (int i = 0; i < calls; ++i) call(i % reps, stream_);
      CU(cudaStreamEndCapture(stream_, &graph));
      CU(cudaGraphInstantiate(&exec, graph, 0));
      cudaEvent_t e0, e1;
      CU(cudaEventCreate(&e0));
      CU(cudaEventCreate(&e1));
      CU(cudaGraphLaunch(exec, stream_));
      std::vector<double> t;
      for (int it = 0; it < iters; ++it) {
        CU(cudaEventRecord(e0, stream_));
        CU(cudaGraphLaunch(exec, stream_));
        CU(cudaEventRecord(e1, stream_));
        CU(cudaEventSynchronize(e1));
        float ms = 0;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(double(ms) * 1e-3 / calls);
      }
      CU(cudaEventDestroy(e0));
      CU(cudaEventDestroy(e1));
      CU(cudaGraphExecDestroy(exec));
      CU(cudaGraphDestroy(graph));
      std::sort(t.begin(), t.end());
      return t[t.size() / 2];
    }
#endif
    call(0, nullptr);
    std::vector<double> t;
    for (int it = 0; it < iters; ++it) {
      const double t0 = now_s();
      call(it % reps, nullptr);
      t.push_back(now_s() - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }

  void add(const std::string& op, const std::string& shape, double seconds, double bytes) {
    rows.push_back({op, shape, seconds, bytes, bytes / copy_bw});
    const Row& r = rows.back();
    if (bytes > 0)
      std::printf("%-12s %-28s %12.2f us %10.2f MiB %10.2f us %8.2f\n", op.c_str(), shape.c_str(), r.seconds * 1e6,
                  r.bytes / 1048576.0, r.floor_s * 1e6, r.seconds / r.floor_s);
    else
      std::printf("%-12s %-28s %12.2f us %14s %13s %8s\n", op.c_str(), shape.c_str(), r.seconds * 1e6, "-", "-", "-");
    std::fflush(stdout);
  }

#if defined(GDN_BENCH_CUDA)
  // The method's own floor at small sizes (bench/launch_floor.cu): an empty kernel, and a kernel of
  // two dependent DRAM round trips, each a graph of back-to-back calls launched as libgdn's are.
  void launch_floor() {
    int dev = 0, major = 0;
    CU(cudaGetDevice(&dev));
    CU(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    const bool pdl = major >= 9;
    const int64_t set_bytes = launch_floor_chain_bytes_per_call(), sets = 256;  // 64 MiB: past the L2
    std::vector<int32_t> order(static_cast<size_t>(sets));
    for (int64_t i = 0; i < sets; ++i) order[size_t(i)] = int32_t(i);
    Buffer index(GDN_DTYPE_I32, {sets}, order);
    Workspace src{size_t(sets * set_bytes)}, dst{size_t(set_bytes)};
    CU(cudaMemset(src.ptr, 0, size_t(sets * set_bytes)));
    const int32_t* idx = static_cast<const int32_t*>(index.ptr);
    add("launch", "empty kernel", time_calls(1, [&](int, void* s) {
          CU(launch_floor_call(LaunchFloorKind::kEmpty, pdl, nullptr, nullptr, nullptr, cudaStream_t(s)));
        }), 0);
    add("launch", "index -> 16 B a thread", time_calls(int(sets), [&](int i, void* s) {
          CU(launch_floor_call(LaunchFloorKind::kChain, pdl, idx + i, src.ptr, dst.ptr, cudaStream_t(s)));
        }), double(2 * set_bytes + 4));
    if (major >= 9)
      add("launch", "the same, clusters of 8 + barrier", time_calls(int(sets), [&](int i, void* s) {
            CU(launch_floor_call(LaunchFloorKind::kChainClusters, pdl, idx + i, src.ptr, dst.ptr, cudaStream_t(s)));
          }), double(2 * set_bytes + 4));
    // A decode's memory at B = 1 without its arithmetic: sets of 2 MiB rotating over 512 MiB.
    const int64_t tile_bytes = launch_floor_tile_set_bytes(), tile_sets = 256;
    Workspace tiles{size_t(tile_sets * tile_bytes)};
    CU(cudaMemset(tiles.ptr, 0, size_t(tile_sets * tile_bytes)));
    add("launch", "index -> 2 MiB tiles in place", time_calls(int(tile_sets), [&](int i, void* s) {
          CU(launch_floor_call(LaunchFloorKind::kTile, pdl, idx + i, nullptr, tiles.ptr, cudaStream_t(s)));
        }), double(2 * tile_bytes + 4));
    // The same memory moved other ways (sm90: Hopper's copy engines).
    struct Way {
      LaunchFloorKind kind;
      const char* name;
      bool sm90;
    };
    const Way ways[] = {{LaunchFloorKind::kTileColumnWarps, "warps of 8 columns", false},
                        {LaunchFloorKind::kTile16, "16-column tiles", false},
                        {LaunchFloorKind::kTileSplit8, "128 blocks of 16 KB", false},
                        {LaunchFloorKind::kTileSplit4, "256 blocks of 8 KB", false},
                        {LaunchFloorKind::kTileSplit2, "512 blocks of 4 KB", false},
                        {LaunchFloorKind::kTileAsync, "loads by cp.async", false},
                        {LaunchFloorKind::kTile256, "256 threads a tile", false},
                        {LaunchFloorKind::kTileTma, "a tensor copy a tile", true},
                        {LaunchFloorKind::kTileTmaStore, "tensor copy + store", true},
                        {LaunchFloorKind::kTileTma4, "a tensor copy a warp", true},
                        {LaunchFloorKind::kTileTma4Store, "a warp's copy + store", true},
                        {LaunchFloorKind::kTileBulk, "loads by bulk copies", true}};
    for (const Way& w : ways)
      if (!w.sm90 || major >= 9)
        add("launch", std::string("the same, ") + w.name, time_calls(int(tile_sets), [&](int i, void* s) {
              CU(launch_floor_call(w.kind, pdl, idx + i, nullptr, tiles.ptr, cudaStream_t(s)));
            }), double(2 * tile_bytes + 4));
    // norm_fp8's memory at T = 128 without its arithmetic (from the L2, as the norm_fp8 rows).
    const int64_t norm_in = int64_t(kLaunchFloorNormRows) * 128 * 2 * 2, norm_out = int64_t(kLaunchFloorNormRows) * (128 + 4);
    Workspace norm_src{size_t(norm_in)}, norm_dst{size_t(norm_out)};
    CU(cudaMemset(norm_src.ptr, 0, size_t(norm_in)));
    add("launch", "norm_fp8's memory at T=128", time_calls(4, [&](int, void* s) {
          CU(launch_floor_call(LaunchFloorKind::kNormRows, pdl, nullptr, norm_src.ptr, norm_dst.ptr, cudaStream_t(s)));
        }), double(norm_in + norm_out));
    // What the prefill state kernels copy from the L2 at T = 16384, without their arithmetic; the
    // bytes column: what lands in shared memory in all.
    if (major >= 9) {
      const int64_t feed_in = launch_floor_feed_input_bytes();
      Workspace feed{size_t(feed_in)};
      CU(cudaMemset(feed.ptr, 0, size_t(feed_in)));
      add("launch", "state feed, T=16384", time_calls(1, [&](int, void* s) {
            CU(launch_floor_call(LaunchFloorKind::kStateFeed, pdl, nullptr, feed.ptr, nullptr, cudaStream_t(s)));
          }), double(launch_floor_feed_bytes(false)));
      add("launch", "the same, shared rows' share", time_calls(1, [&](int, void* s) {
            CU(launch_floor_call(LaunchFloorKind::kStateFeedShare, pdl, nullptr, feed.ptr, nullptr, cudaStream_t(s)));
          }), double(launch_floor_feed_bytes(true)));
      add("launch", "the same, by cluster multicast", time_calls(1, [&](int, void* s) {
            CU(launch_floor_call(LaunchFloorKind::kStateFeedMulticast, pdl, nullptr, feed.ptr, nullptr, cudaStream_t(s)));
          }), double(launch_floor_feed_bytes(false)));
    }
  }
#endif

  void measure_copy() {
    const size_t n = size_t(g_gpu ? 1024 : 512) << 20;
    Workspace a(n), b(n);
    double best = 1e30;
#if defined(GDN_BENCH_CUDA)
    if (g_gpu) {
      cudaEvent_t e0, e1;
      CU(cudaEventCreate(&e0));
      CU(cudaEventCreate(&e1));
      std::vector<double> t;
      for (int i = 0; i < 11; ++i) {
        CU(cudaEventRecord(e0, stream_));
        CU(cudaMemcpyAsync(b.ptr, a.ptr, n, cudaMemcpyDeviceToDevice, stream_));
        CU(cudaEventRecord(e1, stream_));
        CU(cudaEventSynchronize(e1));
        float ms = 0;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        if (i > 0) t.push_back(double(ms) * 1e-3);
      }
      std::sort(t.begin(), t.end());
      best = t[t.size() / 2];
      CU(cudaEventDestroy(e0));
      CU(cudaEventDestroy(e1));
    } else
#endif
    {
      std::memset(a.ptr, 1, n);
      std::memset(b.ptr, 2, n);
      for (int i = 0; i < 5; ++i) {
        const double t0 = now_s();
        std::memcpy(b.ptr, a.ptr, n);
        best = std::min(best, now_s() - t0);
      }
    }
    copy_bw = 2.0 * double(n) / best;
    std::printf("copy bandwidth (read + write): %.1f GB/s\n", copy_bw / 1e9);
  }

  // Slot sets rotating through a pool of >= 512 MiB (CPU) / 1 GiB (GPU): no state stays cached.
  // Row i of a [sets, B] int32 slot table, as the [B] slot_idx of call i.
  static gdn_tensor slot_row(const Buffer& slots, int i, int64_t B) {
    gdn_tensor s = slots.view();
    s.ndim = 1, s.shape[0] = B, s.strides[0] = 1;
    s.data = static_cast<int32_t*>(slots.ptr) + int64_t(i) * B;
    return s;
  }

  int64_t slot_sets(int64_t per_set_bytes) const {
    const int64_t pool = int64_t(g_gpu ? 1024 : 512) << 20;
    return std::max<int64_t>(2, std::min<int64_t>(64, (pool + per_set_bytes - 1) / per_set_bytes));
  }

  void decode(int64_t B, gdn_dtype state_dt = GDN_DTYPE_F32) {
    const gdn_layer lay = state_dt == GDN_DTYPE_F32 ? layer : layer_bf16_state;
    const int64_t state_bytes = HV * K * V * (state_dt == GDN_DTYPE_F32 ? 4 : 2), sets = slot_sets(B * state_bytes);
    Buffer q(GDN_DTYPE_BF16, {B, 1, HK, K}), k(GDN_DTYPE_BF16, {B, 1, HK, K}), v(GDN_DTYPE_BF16, {B, 1, HV, V});
    Buffer a(GDN_DTYPE_BF16, {B, 1, HV}), b(GDN_DTYPE_BF16, {B, 1, HV}), A_log(GDN_DTYPE_F32, {HV}),
        dt_bias(GDN_DTYPE_F32, {HV});
    Buffer state(state_dt, {sets * B, HV, K, V}), out(GDN_DTYPE_BF16, {B, 1, HV, V});
    std::vector<int32_t> all(size_t(sets * B));
    for (size_t i = 0; i < all.size(); ++i) all[i] = int32_t(i);
    Buffer slots(GDN_DTYPE_I32, {sets, B}, all);
    size_t ws_bytes = 0;
    CHECK(gdn_decode_workspace_size(lay, B, 1, &ws_bytes));
    Workspace ws(ws_bytes);
    gdn_decode_args args{};
    args.struct_size = sizeof args;
    args.q = q.view(), args.k = k.view(), args.v = v.view(), args.a = a.view(), args.b = b.view();
    args.A_log = A_log.view(), args.dt_bias = dt_bias.view(), args.state = state.view(), args.out = out.view();
    const double t = time_calls(int(sets), [&](int i, void* stream) {
      args.slot_idx = slot_row(slots, i, B);
      CHECK(gdn_decode(lay, &args, ws.ptr, ws.bytes, stream));
    });
    const double bytes = 2.0 * double(B * state_bytes) +
                         double(q.bytes + k.bytes + v.bytes + a.bytes + b.bytes + out.bytes + 4 * B);
    add(state_dt == GDN_DTYPE_F32 ? "decode" : "decode_bf16s", "B=" + std::to_string(B), t, bytes);
  }

  // The whole-layer decode step (conv update -> decode -> norm + FP8) at the default (grouped)
  // layout: x is the qkvz projection, z/a/b separate tensors.
  void decode_step(int64_t B) {
    int64_t C = 0;
    CHECK(gdn_layer_conv_dim(layer, &C));
    const int64_t width = 2 * HK * K + 2 * HV * V, state_bytes = HV * K * V * 4, conv_bytes = C * 3 * 2;
    const int64_t sets = slot_sets(B * (state_bytes + conv_bytes));
    Buffer x(GDN_DTYPE_BF16, {B, width}), z(GDN_DTYPE_BF16, {B, HV, V}), a(GDN_DTYPE_BF16, {B, HV}),
        b(GDN_DTYPE_BF16, {B, HV}), A_log(GDN_DTYPE_F32, {HV}), dt_bias(GDN_DTYPE_F32, {HV}),
        w(GDN_DTYPE_BF16, {C, 4}), cst(GDN_DTYPE_BF16, {sets * B, C, 3}), state(GDN_DTYPE_F32, {sets * B, HV, K, V}),
        nw(GDN_DTYPE_F32, {V}), q8(GDN_DTYPE_F8_E4M3FN, {B, HV, V}), sc(GDN_DTYPE_F32, {B, HV * V / 128});
    std::vector<int32_t> all(size_t(sets * B));
    for (size_t i = 0; i < all.size(); ++i) all[i] = int32_t(i);
    Buffer slots(GDN_DTYPE_I32, {sets, B}, all);
    size_t ws_bytes = 0;
    CHECK(gdn_decode_step_workspace_size(layer, B, &ws_bytes));
    Workspace ws(ws_bytes);
    gdn_decode_step_args args{};
    args.struct_size = sizeof args;
    args.x = x.view(), args.conv_weight = w.view(), args.conv_state = cst.view(), args.z = z.view();
    args.a = a.view(), args.b = b.view(), args.A_log = A_log.view(), args.dt_bias = dt_bias.view();
    args.state = state.view(), args.norm_weight = nw.view(), args.out = q8.view(), args.scales = sc.view();
    const double t = time_calls(int(sets), [&](int i, void* stream) {
      args.slot_idx = slot_row(slots, i, B);
      CHECK(gdn_decode_step(layer, &args, ws.ptr, ws.bytes, stream));
    });
    // Reads: the conv channels of x, z, a, b; states in and out; writes: codes and scales.
    const double bytes = double(B * C * 2 + z.bytes + a.bytes + b.bytes + w.bytes + q8.bytes + sc.bytes + 4 * B) +
                         2.0 * double(B * (state_bytes + conv_bytes));
    add("decode_step", "B=" + std::to_string(B), t, bytes);

    // The same step as the three public ops (conv_update -> decode -> norm_gated_fp8_quant) through
    // intermediates in device memory: what the fused kernel has to beat (row "decode_step3", same
    // bytes and floor as the fused row).
    Buffer mixed(GDN_DTYPE_BF16, {B, C}), core(GDN_DTYPE_BF16, {B, 1, HV, V});
    gdn_conv_update_args ca{};
    ca.struct_size = sizeof ca;
    ca.x = x.view(), ca.x.shape[1] = C;  // the conv channels of each row (plain layout: the first C)
    ca.out = mixed.view(), ca.weight = w.view(), ca.conv_state = cst.view();
    gdn_decode_args da{};
    da.struct_size = sizeof da;
    auto head_view = [&](int64_t offset, int64_t heads, int64_t dim) {  // [B, 1, heads, dim] inside mixed
      gdn_tensor hv = mixed.view();
      hv.data = static_cast<uint16_t*>(mixed.ptr) + offset;
      hv.ndim = 4, hv.shape[0] = B, hv.shape[1] = 1, hv.shape[2] = heads, hv.shape[3] = dim;
      hv.strides[0] = C, hv.strides[1] = C, hv.strides[2] = dim, hv.strides[3] = 1;
      return hv;
    };
    da.q = head_view(0, HK, K), da.k = head_view(HK * K, HK, K), da.v = head_view(2 * HK * K, HV, V);
    auto per_token = [&](const Buffer& g) {  // [B, HV] as [B, 1, HV]
      gdn_tensor pt = g.view();
      pt.ndim = 3, pt.shape[1] = 1, pt.shape[2] = HV, pt.strides[0] = HV, pt.strides[1] = HV, pt.strides[2] = 1;
      return pt;
    };
    da.a = per_token(a), da.b = per_token(b), da.A_log = A_log.view(), da.dt_bias = dt_bias.view();
    da.state = state.view(), da.out = core.view();
    gdn_norm_gated_args na{};
    na.struct_size = sizeof na;
    na.x = core.view(), na.x.ndim = 3, na.x.shape[1] = HV, na.x.shape[2] = V;
    na.x.strides[0] = HV * V, na.x.strides[1] = V, na.x.strides[2] = 1;
    na.z = z.view(), na.weight = nw.view(), na.out = q8.view(), na.scales = sc.view();
    size_t dws_bytes = 0, nws_bytes = 0;
    CHECK(gdn_decode_workspace_size(layer, B, 1, &dws_bytes));
    CHECK(gdn_norm_gated_workspace_size(layer, B, &nws_bytes));
    Workspace dws(dws_bytes), nws(nws_bytes);
    const double t3 = time_calls(int(sets), [&](int i, void* stream) {
      ca.slot_idx = da.slot_idx = slot_row(slots, i, B);
      CHECK(gdn_conv_update(layer, &ca, nullptr, 0, stream));
      CHECK(gdn_decode(layer, &da, dws.ptr, dws.bytes, stream));
      CHECK(gdn_norm_gated_fp8_quant(layer, &na, nws.ptr, nws.bytes, stream));
    });
    add("decode_step3", "B=" + std::to_string(B) + " (3 ops)", t3, bytes);
  }

  void conv_update(int64_t B) {
    int64_t C = 0;
    CHECK(gdn_layer_conv_dim(layer, &C));
    const int64_t sets = slot_sets(B * C * 3 * 2);
    Buffer x(GDN_DTYPE_BF16, {B, C}), out(GDN_DTYPE_BF16, {B, C}), w(GDN_DTYPE_BF16, {C, 4}),
        st(GDN_DTYPE_BF16, {sets * B, C, 3});
    std::vector<int32_t> all(size_t(sets * B));
    for (size_t i = 0; i < all.size(); ++i) all[i] = int32_t(i);
    Buffer slots(GDN_DTYPE_I32, {sets, B}, all);
    gdn_conv_update_args a{};
    a.struct_size = sizeof a;
    a.x = x.view(), a.out = out.view(), a.weight = w.view(), a.conv_state = st.view();
    const double t = time_calls(int(std::min<int64_t>(sets, 16)), [&](int i, void* stream) {
      a.slot_idx = slot_row(slots, i, B);
      CHECK(gdn_conv_update(layer, &a, nullptr, 0, stream));
    });
    add("conv_update", "B=" + std::to_string(B) + " C=8192", t,
        double(x.bytes + out.bytes + w.bytes) + 2.0 * double(B * C * 3 * 2) + 4.0 * double(B));
  }

  // weight_dt: the norm weight's dtype, fp32 (row "norm_fp8") or bf16 as checkpoints store it
  // ("norm_fp8_bf16w").
  void norm_fp8(int64_t T, gdn_dtype weight_dt = GDN_DTYPE_F32) {
    Buffer x(GDN_DTYPE_BF16, {T, HV, V}), z(GDN_DTYPE_BF16, {T, HV, V}), w(weight_dt, {V});
    Buffer q8(GDN_DTYPE_F8_E4M3FN, {T, HV, V}), sc(GDN_DTYPE_F32, {T, HV * V / 128});
    size_t ws_bytes = 0;
    CHECK(gdn_norm_gated_workspace_size(layer, T, &ws_bytes));
    Workspace ws(ws_bytes);
    gdn_norm_gated_args a{};
    a.struct_size = sizeof a;
    a.x = x.view(), a.z = z.view(), a.weight = w.view(), a.out = q8.view(), a.scales = sc.view();
    const double t =
        time_calls(4, [&](int, void* stream) { CHECK(gdn_norm_gated_fp8_quant(layer, &a, ws.ptr, ws.bytes, stream)); });
    add(weight_dt == GDN_DTYPE_F32 ? "norm_fp8" : "norm_fp8_bf16w", "T=" + std::to_string(T), t,
        double(x.bytes + z.bytes + w.bytes + q8.bytes + sc.bytes));
  }

  // bf16: the layer with GDN_PRECISION_BF16 prefill products (row "prefill_bf16p").
  void prefill(int64_t N, int64_t len, bool bf16 = false) {
    const gdn_layer lay = bf16 ? layer_bf16_products : layer;
    const int64_t T = N * len;
    Buffer q(GDN_DTYPE_BF16, {T, HK, K}), k(GDN_DTYPE_BF16, {T, HK, K}), v(GDN_DTYPE_BF16, {T, HV, V});
    Buffer a(GDN_DTYPE_BF16, {T, HV}), b(GDN_DTYPE_BF16, {T, HV}), A_log(GDN_DTYPE_F32, {HV}),
        dt_bias(GDN_DTYPE_F32, {HV});
    std::vector<int32_t> cu(static_cast<size_t>(N + 1)), slots(static_cast<size_t>(N));
    for (int64_t n = 0; n <= N; ++n) cu[size_t(n)] = int32_t(n * len);
    for (int64_t n = 0; n < N; ++n) slots[size_t(n)] = int32_t(n);
    Buffer state(GDN_DTYPE_F32, {N, HV, K, V}), out(GDN_DTYPE_BF16, {T, HV, V}), cub(GDN_DTYPE_I32, {N + 1}, cu),
        slot(GDN_DTYPE_I32, {N}, slots);
    size_t ws_bytes = 0;
    CHECK(gdn_prefill_workspace_size(lay, T, N, &ws_bytes));
    Workspace ws(ws_bytes);
    gdn_prefill_args args{};
    args.struct_size = sizeof args;
    args.q = q.view(), args.k = k.view(), args.v = v.view(), args.a = a.view(), args.b = b.view();
    args.A_log = A_log.view(), args.dt_bias = dt_bias.view(), args.state = state.view(), args.out = out.view();
    args.cu_seqlens = cub.view(), args.slot_idx = slot.view();
    const int saved = iters;
    iters = std::max(3, iters / 4);
    auto call = [&](int, void* stream) { CHECK(gdn_prefill(lay, &args, ws.ptr, ws.bytes, stream)); };
    const double t = time_calls(1, call, 4);
    iters = saved;
    const double bytes = double(q.bytes + k.bytes + v.bytes + a.bytes + b.bytes + out.bytes) + 2.0 * double(state.bytes);
    add(bf16 ? "prefill_bf16p" : "prefill", (N == 1 ? "T=" + std::to_string(T) : std::to_string(N) + "x" + std::to_string(len)),
        t, bytes);
    const double flops = double(T) * double(HV) * (6.0 * double(K * V) + 2.0 * 64.0 * double(K + V));
    std::printf("%-12s %-28s %.1f GFLOP/s (chunked form, ~%.0f kFLOP per token and head), %.0f tokens/s\n", "", "",
                flops / t / 1e9, flops / double(T * HV) / 1e3, double(T) / t);
  }

  // Side by side with a reference's times: a JSON file in this bench's format (rows with "op",
  // "shape", "time_us"), e.g. docs/bench-h100-triton.json. A reference row matches a row of ours
  // with the same op, or the op plus one "_label" (decode_triton -> decode), and the same first
  // word of the shape; our "<op>_bf16p" rows (bf16 products: the reference's accuracy) match its
  // "<op>_<label>" rows too.
  void print_reference(const char* path, const std::string& text) const {
    auto field = [](const std::string& row, const char* key) {  // the value after "key": (string or number)
      const std::string k = std::string("\"") + key + "\":";
      size_t at = row.find(k);
      if (at == std::string::npos) return std::string();
      at += k.size();
      while (at < row.size() && row[at] == ' ') ++at;
      if (at < row.size() && row[at] == '"') {
        const size_t end = row.find('"', at + 1);
        return end == std::string::npos ? std::string() : row.substr(at + 1, end - at - 1);
      }
      const size_t end = row.find_first_of(",}", at);
      return row.substr(at, end == std::string::npos ? std::string::npos : end - at);
    };
    auto first_word = [](const std::string& s) { return s.substr(0, s.find(' ')); };
    std::printf("\nside by side with %s (reference time / ours: > 1 means ours is faster)\n", path);
    std::printf("%-12s %-14s %12s %12s %8s  %s\n", "op", "shape", "ours", "reference", "ref/ours", "reference op");
    int matched = 0;
    for (size_t at = text.find("\"rows\""); at != std::string::npos;) {
      const size_t open = text.find('{', at), close = open == std::string::npos ? open : text.find('}', open);
      if (close == std::string::npos) break;
      const std::string row = text.substr(open, close - open + 1);
      at = close + 1;
      const std::string op = field(row, "op"), shape = field(row, "shape"), t = field(row, "time_us");
      if (op.empty() || t.empty()) continue;
      const double ref_us = std::atof(t.c_str());
      for (const Row& r : rows) {
        const std::string base = r.op.size() > 6 && r.op.compare(r.op.size() - 6, 6, "_bf16p") == 0
                                     ? r.op.substr(0, r.op.size() - 6) : r.op;
        const bool same_op = op == r.op || (op.size() > base.size() + 1 && op.compare(0, base.size(), base) == 0 &&
                                            op[base.size()] == '_' && op.find('_', base.size() + 1) == std::string::npos);
        if (!same_op || first_word(shape) != first_word(r.shape) || ref_us <= 0) continue;
        std::printf("%-12s %-14s %9.2f us %9.2f us %8.2f  %s\n", r.op.c_str(), first_word(r.shape).c_str(),
                    r.seconds * 1e6, ref_us, ref_us / (r.seconds * 1e6), op.c_str());
        ++matched;
      }
    }
    if (!matched) std::printf("(no row of the reference matches a measured row)\n");
  }

  void write_json(const char* path, const char* backend, int threads) const {
    FILE* f = std::fopen(path, "w");
    if (!f) die(path, "cannot open");
    std::fprintf(f, "{\n  \"backend\": \"%s\",\n  \"threads\": %d,\n  \"copy_bandwidth_GBps\": %.3f,\n  \"rows\": [\n",
                 backend, threads, copy_bw / 1e9);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "    {\"op\": \"%s\", \"shape\": \"%s\", \"time_us\": %.3f, \"bytes\": %.0f, \"floor_us\": %.3f, "
                   "\"time_over_floor\": %.3f}%s\n",
                   r.op.c_str(), r.shape.c_str(), r.seconds * 1e6, r.bytes, r.floor_s * 1e6,
                   r.floor_s > 0 ? r.seconds / r.floor_s : 0.0, i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  bool quick = false;
  std::string only;      // comma-separated op names; empty: all
  int64_t only_size = 0;  // > 0: only this batch / token count (prefill: one sequence of N tokens)
  const char* json = nullptr;
  const char* reference = nullptr;
  std::string backend = "cpu";
  Bench bench;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) bench.iters = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
    else if (!std::strcmp(argv[i], "--reference") && i + 1 < argc) reference = argv[++i];
    else if (!std::strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--size") && i + 1 < argc) only_size = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--backend cpu|cuda] [--threads N] [--iters N] [--json FILE] [--reference FILE] [--quick] [--only OP,OP] [--size N]\n", argv[0]);
      return 2;
    }
  }
  const std::string reference_text = reference ? read_file(reference) : std::string();  // before measuring
  gdn_context_config cc;
  gdn_context_config_init(&cc);
  if (backend == "cuda") {
#if defined(GDN_BENCH_CUDA)
    g_gpu = true;
    cc.backend = GDN_BACKEND_CUDA;
    CU(cudaStreamCreateWithFlags(&bench.stream_, cudaStreamNonBlocking));
#else
    die("--backend cuda", "this gdn_bench was built without CUDA");
#endif
  } else if (backend == "cpu") {
    cc.backend = GDN_BACKEND_CPU;
  } else {
    die("--backend", "expected cpu or cuda");
  }
  cc.num_threads = threads;
  CHECK(gdn_context_create(&cc, &bench.ctx));
  int32_t nthreads = 0;
  CHECK(gdn_context_num_threads(bench.ctx, &nthreads));
  gdn_layer_config cfg;
  gdn_layer_config_init(&cfg);
  CHECK(gdn_layer_create(bench.ctx, &cfg, &bench.layer));
  cfg.state_dtype = GDN_DTYPE_BF16;
  CHECK(gdn_layer_create(bench.ctx, &cfg, &bench.layer_bf16_state));
  cfg.state_dtype = GDN_DTYPE_F32;
  cfg.prefill_precision = GDN_PRECISION_BF16;
  CHECK(gdn_layer_create(bench.ctx, &cfg, &bench.layer_bf16_products));
  std::printf("libgdn %s, %s backend%s, Qwen3-Next shapes (HK=16 HV=32 K=V=128, bf16 activations, fp32 state)\n",
              gdn_version_string(), backend.c_str(),
              g_gpu ? "" : (", " + std::to_string(nthreads) + " threads").c_str());
  bench.measure_copy();
  std::printf("%-12s %-28s %15s %14s %13s %8s\n", "op", "shape", "time", "bytes", "floor", "t/floor");
  const bool big = g_gpu && !quick;
  auto want = [&](const char* op) { return only.empty() || ("," + only + ",").find("," + std::string(op) + ",") != std::string::npos; };
  // The sizes of one op: the full list on the GPU, a short one otherwise, or just --size N.
  auto sizes = [&](std::vector<int64_t> full, std::vector<int64_t> short_list) {
    std::vector<int64_t> r = big ? full : short_list;
    if (only_size > 0) r.assign(1, only_size);
    return r;
  };
#if defined(GDN_BENCH_CUDA)
  if (g_gpu && want("launch")) bench.launch_floor();
#endif
  if (want("decode"))
    for (int64_t B : sizes({1, 8, 32, 128, 512}, {1, 8, 32})) bench.decode(B);
  if (want("decode_bf16s"))
    for (int64_t B : sizes({1, 32, 128, 512}, {1, 32})) bench.decode(B, GDN_DTYPE_BF16);
  if (want("decode_step"))
    for (int64_t B : sizes({1, 8, 32, 128, 512}, {1, 32})) bench.decode_step(B);
  if (want("conv_update"))
    for (int64_t B : sizes({1, 8, 32, 128, 512}, {1, 32, 128})) bench.conv_update(B);
  if (want("norm_fp8"))
    for (int64_t T : sizes({1, 32, 128, 1024, 8192}, {1, 128, 1024})) bench.norm_fp8(T);
  if (want("norm_fp8_bf16w"))
    for (int64_t T : sizes({1, 128, 1024}, {1, 128})) bench.norm_fp8(T, GDN_DTYPE_BF16);
  for (bool bf16 : {false, true}) {
    if (!want(bf16 ? "prefill_bf16p" : "prefill")) {
    } else if (only_size > 0) {
      bench.prefill(1, only_size, bf16);
    } else if (big) {
      bench.prefill(1, 4096, bf16);
      bench.prefill(1, 16384, bf16);
      bench.prefill(16, 2048, bf16);
    } else {
      bench.prefill(1, quick ? 256 : 1024, bf16);
    }
  }
  if (json) bench.write_json(json, backend.c_str(), nthreads);
  if (reference) bench.print_reference(reference, reference_text);
  gdn_layer_destroy(bench.layer);
  gdn_layer_destroy(bench.layer_bf16_state);
  gdn_layer_destroy(bench.layer_bf16_products);
  gdn_context_destroy(bench.ctx);
  return 0;
}
