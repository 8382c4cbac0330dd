// libgdn benchmark: time per op at Qwen3-Next shapes, bytes moved, the floor (bytes over the copy
// bandwidth measured in the same run) and time/floor. CPU backend; writes JSON with --json FILE.
//
//   gdn_bench [--threads N] [--iters N] [--json FILE] [--quick]
#include <gdn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const char* what, gdn_status st) {
  std::fprintf(stderr, "%s: %s\n  %s\n", what, gdn_status_string(st), gdn_last_error_message());
  std::exit(1);
}
#define CHECK(call)                                 \
  do {                                              \
    gdn_status st_ = (call);                        \
    if (st_ != GDN_SUCCESS) die(#call, st_);        \
  } while (0)

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median wall time of fn over iters runs (after one warm-up).
double median_time(int iters, const std::function<void(int)>& fn) {
  fn(0);
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const double t0 = now_s();
    fn(i + 1);
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Buffer {
  std::vector<unsigned char> mem;
  gdn_dtype dt;
  std::vector<int64_t> shape;
  Buffer(gdn_dtype d, std::vector<int64_t> s, uint64_t seed = 1) : dt(d), shape(std::move(s)) {
    size_t n = 1;
    for (int64_t x : shape) n *= size_t(x);
    mem.resize(n * gdn_dtype_size(dt) + 64);
    std::mt19937_64 rng(seed);
    // small random bf16/f32 values; indices stay zero for the caller to set
    if (dt == GDN_DTYPE_BF16)
      for (size_t i = 0; i < n; ++i) {
        float f = float(int(rng() % 2001) - 1000) / 1000.0f;
        uint32_t u;
        std::memcpy(&u, &f, 4);
        const uint16_t h = uint16_t(u >> 16);
        std::memcpy(&mem[2 * i], &h, 2);
      }
    if (dt == GDN_DTYPE_F32)
      for (size_t i = 0; i < n; ++i) {
        const float f = float(int(rng() % 2001) - 1000) / 4000.0f;
        std::memcpy(&mem[4 * i], &f, 4);
      }
  }
  size_t bytes() const { return mem.size() - 64; }
  gdn_tensor view() {
    gdn_tensor t{};
    t.data = mem.data();
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
  int32_t* i32() { return reinterpret_cast<int32_t*>(mem.data()); }
};

struct Row {
  std::string op, shape;
  double seconds, bytes, floor_s;
};

struct Bench {
  gdn_context ctx = nullptr;
  gdn_layer layer = nullptr;
  int iters = 20;
  double copy_bw = 0;  // bytes/s, read + write counted
  std::vector<Row> rows;
  int64_t HK = 16, HV = 32, K = 128, V = 128;

  void add(const std::string& op, const std::string& shape, double seconds, double bytes) {
    rows.push_back({op, shape, seconds, bytes, bytes / copy_bw});
    const Row& r = rows.back();
    std::printf("%-12s %-26s %12.1f us %10.2f MiB %10.1f us %8.2f\n", op.c_str(), shape.c_str(), r.seconds * 1e6,
                r.bytes / 1048576.0, r.floor_s * 1e6, r.seconds / r.floor_s);
    std::fflush(stdout);
  }

  void measure_copy() {
    const size_t n = size_t(512) << 20;
    std::vector<unsigned char> a(n, 1), b(n, 2);
    double best = 1e30;
    for (int i = 0; i < 5; ++i) {
      const double t0 = now_s();
      std::memcpy(b.data(), a.data(), n);
      best = std::min(best, now_s() - t0);
      std::swap(a, b);
    }
    copy_bw = 2.0 * double(n) / best;
    std::printf("memcpy bandwidth (read + write): %.2f GB/s\n", copy_bw / 1e9);
  }

  // Decode at batch B; slot sets rotate through a pool of at least 512 MiB so the state comes
  // from DRAM, as in serving.
  void decode(int64_t B) {
    const int64_t state_bytes = HV * K * V * 4;
    const int64_t sets = std::max<int64_t>(2, (int64_t(512) << 20) / (B * state_bytes));
    Buffer q(GDN_DTYPE_BF16, {B, 1, HK, K}), k(GDN_DTYPE_BF16, {B, 1, HK, K}), v(GDN_DTYPE_BF16, {B, 1, HV, V});
    Buffer a(GDN_DTYPE_BF16, {B, 1, HV}), b(GDN_DTYPE_BF16, {B, 1, HV}), A_log(GDN_DTYPE_F32, {HV}),
        dt_bias(GDN_DTYPE_F32, {HV});
    Buffer state(GDN_DTYPE_F32, {sets * B, HV, K, V}), out(GDN_DTYPE_BF16, {B, 1, HV, V});
    std::vector<Buffer> slots;
    for (int64_t s = 0; s < sets; ++s) {
      slots.emplace_back(GDN_DTYPE_I32, std::vector<int64_t>{B});
      for (int64_t i = 0; i < B; ++i) slots.back().i32()[i] = int32_t(s * B + i);
    }
    size_t ws_bytes = 0;
    CHECK(gdn_decode_workspace_size(layer, B, 1, &ws_bytes));
    std::vector<unsigned char> ws(ws_bytes);
    gdn_decode_args args{};
    args.struct_size = sizeof args;
    args.q = q.view(), args.k = k.view(), args.v = v.view(), args.a = a.view(), args.b = b.view();
    args.A_log = A_log.view(), args.dt_bias = dt_bias.view(), args.state = state.view(), args.out = out.view();
    const double t = median_time(iters, [&](int i) {
      args.slot_idx = slots[size_t(i % sets)].view();
      CHECK(gdn_decode(layer, &args, ws.data(), ws.size(), nullptr));
    });
    const double bytes = 2.0 * double(B * state_bytes) + double(q.bytes() + k.bytes() + v.bytes() + a.bytes() +
                                                              b.bytes() + out.bytes());
    add("decode", "B=" + std::to_string(B) + " HV=32 K=V=128", t, bytes);
  }

  void conv_update(int64_t B) {
    int64_t C = 0;
    CHECK(gdn_layer_conv_dim(layer, &C));
    Buffer x(GDN_DTYPE_BF16, {B, C}), out(GDN_DTYPE_BF16, {B, C}), w(GDN_DTYPE_BF16, {C, 4}),
        st(GDN_DTYPE_BF16, {B, C, 3}), slot(GDN_DTYPE_I32, {B});
    for (int64_t i = 0; i < B; ++i) slot.i32()[i] = int32_t(i);
    gdn_conv_update_args a{};
    a.struct_size = sizeof a;
    a.x = x.view(), a.out = out.view(), a.weight = w.view(), a.conv_state = st.view(), a.slot_idx = slot.view();
    const double t = median_time(iters, [&](int) { CHECK(gdn_conv_update(layer, &a, nullptr, 0, nullptr)); });
    add("conv_update", "B=" + std::to_string(B) + " C=8192", t,
        double(x.bytes() + out.bytes() + w.bytes() + 2 * st.bytes()));
  }

  void norm_fp8(int64_t T) {
    Buffer x(GDN_DTYPE_BF16, {T, HV, V}), z(GDN_DTYPE_BF16, {T, HV, V}), w(GDN_DTYPE_F32, {V});
    Buffer q8(GDN_DTYPE_F8_E4M3FN, {T, HV, V}), sc(GDN_DTYPE_F32, {T, HV * V / 128});
    size_t ws_bytes = 0;
    CHECK(gdn_norm_gated_workspace_size(layer, T, &ws_bytes));
    std::vector<unsigned char> ws(ws_bytes);
    gdn_norm_gated_args a{};
    a.struct_size = sizeof a;
    a.x = x.view(), a.z = z.view(), a.weight = w.view(), a.out = q8.view(), a.scales = sc.view();
    const double t =
        median_time(iters, [&](int) { CHECK(gdn_norm_gated_fp8_quant(layer, &a, ws.data(), ws.size(), nullptr)); });
    add("norm_fp8", "T=" + std::to_string(T), t, double(x.bytes() + z.bytes() + w.bytes() + q8.bytes() + sc.bytes()));
  }

  void prefill(int64_t T) {
    Buffer q(GDN_DTYPE_BF16, {T, HK, K}), k(GDN_DTYPE_BF16, {T, HK, K}), v(GDN_DTYPE_BF16, {T, HV, V});
    Buffer a(GDN_DTYPE_BF16, {T, HV}), b(GDN_DTYPE_BF16, {T, HV}), A_log(GDN_DTYPE_F32, {HV}),
        dt_bias(GDN_DTYPE_F32, {HV});
    Buffer state(GDN_DTYPE_F32, {1, HV, K, V}), out(GDN_DTYPE_BF16, {T, HV, V}), cu(GDN_DTYPE_I32, {2}),
        slot(GDN_DTYPE_I32, {1});
    cu.i32()[1] = int32_t(T);
    size_t ws_bytes = 0;
    CHECK(gdn_prefill_workspace_size(layer, T, 1, &ws_bytes));
    std::vector<unsigned char> ws(ws_bytes);
    gdn_prefill_args args{};
    args.struct_size = sizeof args;
    args.q = q.view(), args.k = k.view(), args.v = v.view(), args.a = a.view(), args.b = b.view();
    args.A_log = A_log.view(), args.dt_bias = dt_bias.view(), args.state = state.view(), args.out = out.view();
    args.cu_seqlens = cu.view(), args.slot_idx = slot.view();
    const double t = median_time(std::max(3, iters / 5),
                                 [&](int) { CHECK(gdn_prefill(layer, &args, ws.data(), ws.size(), nullptr)); });
    const double bytes = double(q.bytes() + k.bytes() + v.bytes() + a.bytes() + b.bytes() + out.bytes()) +
                         2.0 * double(state.bytes());
    add("prefill", "T=" + std::to_string(T) + " N=1", t, bytes);
    // The CPU prefill is compute bound: report its rate too.
    const double flops = double(T) * double(HV) * (6.0 * double(K * V) + 2.0 * 64.0 * double(K + V));
    std::printf("%-12s %-26s %.1f GFLOP/s, %.0f tokens/s\n", "", "", flops / t / 1e9, double(T) / t);
  }

  void write_json(const char* path, int threads) const {
    FILE* f = std::fopen(path, "w");
    if (!f) {
      std::perror(path);
      std::exit(1);
    }
    std::fprintf(f, "{\n  \"backend\": \"cpu\",\n  \"threads\": %d,\n  \"copy_bandwidth_GBps\": %.3f,\n  \"rows\": [\n",
                 threads, copy_bw / 1e9);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "    {\"op\": \"%s\", \"shape\": \"%s\", \"time_us\": %.3f, \"bytes\": %.0f, \"floor_us\": %.3f, "
                   "\"time_over_floor\": %.3f}%s\n",
                   r.op.c_str(), r.shape.c_str(), r.seconds * 1e6, r.bytes, r.floor_s * 1e6, r.seconds / r.floor_s,
                   i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  bool quick = false;
  const char* json = nullptr;
  Bench bench;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) bench.iters = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--iters N] [--json FILE] [--quick]\n", argv[0]);
      return 2;
    }
  }
  gdn_context_config cc;
  gdn_context_config_init(&cc);
  cc.backend = GDN_BACKEND_CPU;
  cc.num_threads = threads;
  CHECK(gdn_context_create(&cc, &bench.ctx));
  int32_t nthreads = 0;
  CHECK(gdn_context_num_threads(bench.ctx, &nthreads));
  gdn_layer_config cfg;
  gdn_layer_config_init(&cfg);
  CHECK(gdn_layer_create(bench.ctx, &cfg, &bench.layer));
  std::printf("libgdn %s, CPU backend, %d threads, Qwen3-Next shapes (HK=16 HV=32 K=V=128, bf16, fp32 state)\n",
              gdn_version_string(), nthreads);
  bench.measure_copy();
  std::printf("%-12s %-26s %15s %14s %13s %8s\n", "op", "shape", "time", "bytes", "floor", "t/floor");
  for (int64_t B : quick ? std::vector<int64_t>{1, 8} : std::vector<int64_t>{1, 8, 32}) bench.decode(B);
  for (int64_t B : quick ? std::vector<int64_t>{1, 32} : std::vector<int64_t>{1, 32, 128, 512}) bench.conv_update(B);
  for (int64_t T : quick ? std::vector<int64_t>{1, 128} : std::vector<int64_t>{1, 128, 1024}) bench.norm_fp8(T);
  bench.prefill(quick ? 256 : 1024);
  if (json) bench.write_json(json, nthreads);
  gdn_layer_destroy(bench.layer);
  gdn_context_destroy(bench.ctx);
  return 0;
}
