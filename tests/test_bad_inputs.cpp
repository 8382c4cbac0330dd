// Every run call against bad inputs: each mutation of a valid call must fail with its status and
// a message, and leave every output (out, state pools, scales) byte-for-byte untouched.
#include <functional>

#include "gdn_case.hpp"
#include "small_ops.hpp"

using namespace gdnt;

namespace {

template <class Args>
struct Mutation {
  const char* name;
  gdn_status want;
  std::function<void(Args&, size_t& ws_bytes, void*& ws)> apply;
};

template <class Args>
struct Harness {
  std::function<gdn_status(const Args*, void*, size_t)> call;
  Args base;
  std::vector<Buf*> outputs;
  Workspace ws;

  void run(const std::vector<Mutation<Args>>& muts) {
    std::vector<std::vector<unsigned char>> before;
    for (Buf* b : outputs) before.push_back(b->bytes);
    for (const auto& m : muts) {
      Args a = base;
      size_t bytes = ws.size();
      void* w = ws.ptr();
      m.apply(a, bytes, w);
      const gdn_status st = call(&a, w, bytes);
      EXPECT_EQ(st, m.want) << m.name << ": " << gdn_last_error_message();
      EXPECT_STRNE(gdn_last_error_message(), "") << m.name;
      for (size_t i = 0; i < outputs.size(); ++i)
        EXPECT_TRUE(outputs[i]->bytes == before[i]) << m.name << ": output " << i << " was written";
    }
    // The unmutated call works, so each failure above came from its mutation.
    Args a = base;
    EXPECT_EQ(call(&a, ws.ptr(), ws.size()), GDN_SUCCESS) << gdn_last_error_message();
    EXPECT_STREQ(gdn_last_error_message(), "");
  }
};

// Mutations that apply to any args struct; `t` picks a required input, `o` the main output.
template <class Args>
std::vector<Mutation<Args>> common_mutations(gdn_tensor Args::*t, gdn_tensor Args::*o, bool needs_ws) {
  std::vector<Mutation<Args>> m = {
      {"struct_size 0", GDN_ERROR_BAD_VERSION, [](Args& a, size_t&, void*&) { a.struct_size = 0; }},
      {"struct_size short", GDN_ERROR_BAD_VERSION, [](Args& a, size_t&, void*&) { a.struct_size = sizeof(Args) - 8; }},
      {"input NULL", GDN_ERROR_NULL_POINTER, [t](Args& a, size_t&, void*&) { (a.*t).data = nullptr; }},
      {"output NULL", GDN_ERROR_NULL_POINTER, [o](Args& a, size_t&, void*&) { (a.*o).data = nullptr; }},
      {"input dtype", GDN_ERROR_BAD_DTYPE, [t](Args& a, size_t&, void*&) { (a.*t).dtype = GDN_DTYPE_I64; }},
      {"invalid dtype", GDN_ERROR_BAD_DTYPE, [o](Args& a, size_t&, void*&) { (a.*o).dtype = 99; }},
      {"input rank", GDN_ERROR_BAD_SHAPE, [t](Args& a, size_t&, void*&) { (a.*t).ndim += 1; (a.*t).shape[(a.*t).ndim - 1] = 1; }},
      {"ndim too big", GDN_ERROR_BAD_SHAPE, [t](Args& a, size_t&, void*&) { (a.*t).ndim = GDN_MAX_DIMS + 1; }},
      {"output size", GDN_ERROR_BAD_SHAPE,
       [o](Args& a, size_t&, void*&) { (a.*o).shape[(a.*o).ndim - 1] += 1; }},
      {"negative size", GDN_ERROR_BAD_SHAPE, [o](Args& a, size_t&, void*&) { (a.*o).shape[0] = -1; }},
      {"negative stride", GDN_ERROR_BAD_STRIDE, [t](Args& a, size_t&, void*&) { (a.*t).strides[0] = -1; }},
      {"inner stride", GDN_ERROR_BAD_STRIDE,
       [o](Args& a, size_t&, void*&) { (a.*o).strides[(a.*o).ndim - 1] = 2; (a.*o).strides[0] *= 2; }},
      {"misaligned", GDN_ERROR_MISALIGNED,
       [t](Args& a, size_t&, void*&) { (a.*t).data = static_cast<char*>((a.*t).data) + 1; }},
      {"overflowing stride", GDN_ERROR_SIZE_OVERFLOW,
       [t](Args& a, size_t&, void*&) { (a.*t).strides[0] = int64_t(1) << 61; }},
      {"overflowing size", GDN_ERROR_SIZE_OVERFLOW,
       [t](Args& a, size_t&, void*&) {
         for (int i = 0; i < (a.*t).ndim; ++i) (a.*t).shape[i] = int64_t(1) << 40;
       }},
      {"output overlaps itself", GDN_ERROR_BAD_STRIDE,
       [o](Args& a, size_t&, void*&) { (a.*o).strides[0] = 0; if ((a.*o).shape[0] < 2) (a.*o).strides[0] = -1; }},
      {"output aliases input", GDN_ERROR_ALIASING,
       [t, o](Args& a, size_t&, void*&) {
         gdn_tensor& out = a.*o;
         const gdn_tensor& in = a.*t;
         out.data = in.data;  // same bytes, dtype and shape kept: only the address changes
         (void)in;
       }},
  };
  if (needs_ws) {
    m.push_back({"workspace too small", GDN_ERROR_WORKSPACE_TOO_SMALL, [](Args&, size_t& b, void*&) { b -= 1; }});
    m.push_back({"workspace NULL", GDN_ERROR_NULL_POINTER, [](Args&, size_t&, void*& w) { w = nullptr; }});
  }
  return m;
}

// ---- decode
TEST(BadInputs, Decode) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 16, 16, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  GdnCase c(cfg, {3, 2}, 4, 1);
  Buf slot(GDN_DTYPE_I32, {3}), g(GDN_DTYPE_F32, {3, 2, 4}), acc(GDN_DTYPE_I32, {3});
  for (int i = 0; i < 3; ++i) slot.set(i, i);
  Harness<gdn_decode_args> h;
  h.base = make_args<gdn_decode_args>();
  c.fill_args(h.base);
  h.base.slot_idx = slot.view();
  h.outputs = {&c.out, &c.state};
  size_t bytes = 0;
  ASSERT_EQ(gdn_decode_workspace_size(layer.layer, 3, 2, &bytes), GDN_SUCCESS);
  h.ws.resize(bytes);
  h.call = [&](const gdn_decode_args* a, void* w, size_t n) { return call(gdn_decode, layer.layer, a, w, n); };
  auto m = common_mutations<gdn_decode_args>(&gdn_decode_args::q, &gdn_decode_args::out, bytes > 0);
  using A = gdn_decode_args;
  m.push_back({"state dtype", GDN_ERROR_BAD_DTYPE, [](A& a, size_t&, void*&) { a.state.dtype = GDN_DTYPE_BF16; }});
  m.push_back({"state heads", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.state.shape[1] = 3; }});
  m.push_back({"k batch", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.k.shape[0] = 2; }});
  m.push_back({"v heads", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.v.shape[2] = 2; }});
  m.push_back({"slot dtype", GDN_ERROR_BAD_DTYPE, [](A& a, size_t&, void*&) { a.slot_idx.dtype = GDN_DTYPE_I64; }});
  m.push_back({"slot shape", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.slot_idx.shape[0] = 2; }});
  m.push_back({"both gates", GDN_ERROR_INVALID_ARGUMENT, [&](A& a, size_t&, void*&) { a.g = g.view(); a.beta = g.view(); }});
  m.push_back({"no gate", GDN_ERROR_NULL_POINTER,
               [](A& a, size_t&, void*&) { a.a = a.b = a.A_log = a.dt_bias = gdn_tensor{}; }});
  m.push_back({"half a gate", GDN_ERROR_NULL_POINTER, [](A& a, size_t&, void*&) { a.b = gdn_tensor{}; }});
  m.push_back({"A_log size", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.A_log.shape[0] = 3; }});
  m.push_back({"num_accepted with 1-D slots", GDN_ERROR_INVALID_ARGUMENT,
               [&](A& a, size_t&, void*&) { a.num_accepted = acc.view(); }});
  m.push_back({"out aliases state", GDN_ERROR_ALIASING, [](A& a, size_t&, void*&) { a.out.data = a.state.data; }});
  if (bytes > 0)
    m.push_back({"workspace aliases out", GDN_ERROR_ALIASING, [](A& a, size_t&, void*& w) { w = a.out.data; }});
  h.run(m);
}

// ---- prefill
TEST(BadInputs, Prefill) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(2, 4, 16, 16, GDN_DTYPE_F32);
  Layer layer(ctx.ctx, cfg);
  GdnCase c(cfg, {10}, 3, 2);
  Buf cu(GDN_DTYPE_I32, {3}), slot(GDN_DTYPE_I32, {2}), init(GDN_DTYPE_BOOL, {2}), bad_cu(GDN_DTYPE_I32, {3});
  cu.set(1, 4);
  cu.set(2, 10);
  slot.set(0, 0);
  slot.set(1, 2);
  Harness<gdn_prefill_args> h;
  h.base = make_args<gdn_prefill_args>();
  c.fill_args(h.base);
  h.base.cu_seqlens = cu.view();
  h.base.slot_idx = slot.view();
  h.base.has_initial_state = init.view();
  h.outputs = {&c.out, &c.state};
  size_t bytes = 0;
  ASSERT_EQ(gdn_prefill_workspace_size(layer.layer, 10, 2, &bytes), GDN_SUCCESS);
  h.ws.resize(bytes);
  h.call = [&](const gdn_prefill_args* a, void* w, size_t n) { return call(gdn_prefill, layer.layer, a, w, n); };
  auto m = common_mutations<gdn_prefill_args>(&gdn_prefill_args::k, &gdn_prefill_args::out, bytes > 0);
  using A = gdn_prefill_args;
  auto set_cu = [&](std::vector<double> v) {
    return [&bad_cu, v](A& a, size_t&, void*&) {
      for (size_t i = 0; i < v.size(); ++i) bad_cu.set(int64_t(i), v[i]);
      a.cu_seqlens = bad_cu.view();
    };
  };
  if (test_backend() == GDN_BACKEND_CPU) {  // GPU kernels clamp instead: the host never reads device data
    m.push_back({"cu_seqlens[0] != 0", GDN_ERROR_INVALID_ARGUMENT, set_cu({1, 4, 10})});
    m.push_back({"cu_seqlens decreasing", GDN_ERROR_INVALID_ARGUMENT, set_cu({0, 6, 5})});
    m.push_back({"cu_seqlens[N] != T", GDN_ERROR_INVALID_ARGUMENT, set_cu({0, 4, 9})});
  }
  m.push_back({"cu_seqlens dtype", GDN_ERROR_BAD_DTYPE, [](A& a, size_t&, void*&) { a.cu_seqlens.dtype = GDN_DTYPE_F32; }});
  m.push_back({"cu_seqlens empty", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.cu_seqlens.shape[0] = 0; }});
  m.push_back({"slot count", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.slot_idx.shape[0] = 3; }});
  m.push_back({"has_initial dtype", GDN_ERROR_BAD_DTYPE,
               [](A& a, size_t&, void*&) { a.has_initial_state.dtype = GDN_DTYPE_F32; }});
  m.push_back({"q tokens", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.v.shape[0] = 9; }});
  m.push_back({"state aliases q", GDN_ERROR_ALIASING, [](A& a, size_t&, void*&) { a.q.data = a.state.data; }});
  h.run(m);
}

// ---- conv
TEST(BadInputs, ConvUpdateAndPrefill) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 2, 8, 8, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  SmallConv b(4);
  const int64_t C = SmallConv::C;
  {
    Harness<gdn_conv_update_args> h;
    h.base = b.update_args(false);
    h.outputs = {&b.out, &b.st};
    h.call = [&](const gdn_conv_update_args* a, void* ws, size_t n) {
      return call(gdn_conv_update, layer.layer, a, ws, n);
    };
    using A = gdn_conv_update_args;
    auto m = common_mutations<A>(&A::x, &A::out, false);
    m.push_back({"x too narrow", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.x.shape[1] = C - 1; }});
    m.push_back({"weight width", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.weight.shape[1] = 3; }});
    m.push_back({"state window", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.conv_state.shape[2] = 4; }});
    m.push_back({"bias size", GDN_ERROR_BAD_SHAPE, [&](A& a, size_t&, void*&) { a.bias = b.slot.view(); a.bias.dtype = GDN_DTYPE_BF16; }});
    m.push_back({"out rows", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.out.shape[0] = 3; }});
    m.push_back({"state aliases x", GDN_ERROR_ALIASING, [](A& a, size_t&, void*&) { a.conv_state.data = a.x.data; }});
    h.run(m);
  }
  {
    Harness<gdn_conv_prefill_args> h;
    h.base = b.prefill_args(false);
    h.outputs = {&b.out, &b.st};
    h.call = [&](const gdn_conv_prefill_args* a, void* ws, size_t n) {
      return call(gdn_conv_prefill, layer.layer, a, ws, n);
    };
    using A = gdn_conv_prefill_args;
    auto m = common_mutations<A>(&A::x, &A::out, false);
    if (test_backend() == GDN_BACKEND_CPU)
      m.push_back({"cu_seqlens past T", GDN_ERROR_INVALID_ARGUMENT,
                   [](A& a, size_t&, void*&) { a.x.shape[0] = 3; a.out.shape[0] = 3; }});
    m.push_back({"slot count", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.slot_idx.shape[0] = 1; }});
    h.run(m);
  }
}

// ---- norm
TEST(BadInputs, NormAndFp8) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 2, 8, 128, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  SmallNorm b(5);
  size_t bytes = 0;
  ASSERT_EQ(gdn_norm_gated_workspace_size(layer.layer, 3, &bytes), GDN_SUCCESS);
  using A = gdn_norm_gated_args;
  for (bool fp8 : {false, true}) {
    Harness<A> h;
    h.base = b.args(fp8);
    h.outputs = {&b.out, &b.q, &b.sc};
    h.ws.resize(bytes);
    h.call = [&, fp8](const A* a, void* ws, size_t n) {
      return fp8 ? call(gdn_norm_gated_fp8_quant, layer.layer, a, ws, n) : call(gdn_norm_gated, layer.layer, a, ws, n);
    };
    auto m = common_mutations<A>(&A::z, &A::out, bytes > 0);
    m.push_back({"weight size", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.weight.shape[0] = 64; }});
    m.push_back({"x tokens vs z", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.z.shape[0] = 2; }});
    if (fp8) {
      m.push_back({"out not fp8", GDN_ERROR_BAD_DTYPE, [](A& a, size_t&, void*&) { a.out.dtype = GDN_DTYPE_F8_E4M3FNUZ; }});
      m.push_back({"scales missing", GDN_ERROR_NULL_POINTER, [](A& a, size_t&, void*&) { a.scales = gdn_tensor{}; }});
      m.push_back({"scales groups", GDN_ERROR_BAD_SHAPE, [](A& a, size_t&, void*&) { a.scales.shape[1] = 1; }});
      m.push_back({"scales aliases out", GDN_ERROR_ALIASING, [](A& a, size_t&, void*&) { a.scales.data = a.out.data; }});
    } else {
      m.push_back({"scales given", GDN_ERROR_INVALID_ARGUMENT, [&](A& a, size_t&, void*&) { a.scales = b.sc.view(); }});
    }
    h.run(m);
  }
}

// Malformed cu_seqlens contents: the CPU backend rejects them; a GPU backend cannot read them on
// the host, so its kernels clamp them to [0, T] -- the call succeeds with unspecified outputs,
// and every access stays inside the views (the simulator's ASan build and compute-sanitizer's
// memcheck see any that does not; session 29's fuzzing found the conv's final windows reading
// past x before the clamp).
TEST(BadInputs, MalformedCuSeqlens) {
  Ctx ctx;
  const bool cpu = test_backend() == GDN_BACKEND_CPU;
  const std::vector<std::vector<double>> bad = {{0, 9, 1000}, {0, -7, 4}, {-3, 2, 6}, {5, 1, 6}, {0, 6, 5}};
  {
    gdn_layer_config cfg = small_config(1, 2, 8, 8, GDN_DTYPE_BF16);
    Layer layer(ctx.ctx, cfg);
    const int64_t C = 2 * 8 + 16;
    std::mt19937_64 rng(6);
    Buf x(GDN_DTYPE_BF16, {6, C}), out(GDN_DTYPE_BF16, {6, C}), w(GDN_DTYPE_BF16, {C, 4}), st(GDN_DTYPE_BF16, {3, C, 3});
    Buf cu(GDN_DTYPE_I32, {3}), slot(GDN_DTYPE_I32, {2});
    x.fill_uniform(rng, -1, 1), w.fill_uniform(rng, -1, 1), st.fill_uniform(rng, -1, 1);
    slot.set(0, 0), slot.set(1, 2);
    for (const auto& v : bad) {
      for (size_t i = 0; i < v.size(); ++i) cu.set(int64_t(i), v[i]);
      auto a = make_args<gdn_conv_prefill_args>();
      a.x = x.view(), a.out = out.view(), a.weight = w.view(), a.conv_state = st.view();
      a.cu_seqlens = cu.view(), a.slot_idx = slot.view();
      EXPECT_EQ(call(gdn_conv_prefill, layer.layer, &a, nullptr, 0), cpu ? GDN_ERROR_INVALID_ARGUMENT : GDN_SUCCESS)
          << "conv_prefill, cu_seqlens " << v[0] << " " << v[1] << " " << v[2] << ": " << gdn_last_error_message();
    }
  }
  {
    gdn_layer_config cfg = small_config(2, 4, 16, 16, GDN_DTYPE_BF16);
    Layer layer(ctx.ctx, cfg);
    GdnCase c(cfg, {6}, 3, 3);
    Buf cu(GDN_DTYPE_I64, {3}), slot(GDN_DTYPE_I32, {2});
    slot.set(0, 0), slot.set(1, 2);
    size_t bytes = 0;
    ASSERT_EQ(gdn_prefill_workspace_size(layer.layer, 6, 2, &bytes), GDN_SUCCESS);
    Workspace ws;
    ws.resize(bytes);
    for (const auto& v : bad) {
      for (size_t i = 0; i < v.size(); ++i) cu.set(int64_t(i), v[i]);
      auto a = make_args<gdn_prefill_args>();
      c.fill_args(a);
      a.cu_seqlens = cu.view(), a.slot_idx = slot.view();
      EXPECT_EQ(call(gdn_prefill, layer.layer, &a, ws.ptr(), ws.size()), cpu ? GDN_ERROR_INVALID_ARGUMENT : GDN_SUCCESS)
          << "prefill, cu_seqlens " << v[0] << " " << v[1] << " " << v[2] << ": " << gdn_last_error_message();
    }
  }
}

TEST(BadInputs, NullLayerAndArgs) {
  Ctx ctx;
  gdn_layer_config cfg = small_config(1, 1, 8, 8);
  Layer layer(ctx.ctx, cfg);
  auto d = make_args<gdn_decode_args>();
  auto p = make_args<gdn_prefill_args>();
  auto cu = make_args<gdn_conv_update_args>();
  auto cp = make_args<gdn_conv_prefill_args>();
  auto n = make_args<gdn_norm_gated_args>();
  EXPECT_EQ(gdn_decode(nullptr, &d, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_decode(layer.layer, nullptr, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_prefill(nullptr, &p, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_prefill(layer.layer, nullptr, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_conv_update(nullptr, &cu, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_conv_update(layer.layer, nullptr, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_conv_prefill(nullptr, &cp, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_conv_prefill(layer.layer, nullptr, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_norm_gated(nullptr, &n, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_norm_gated_fp8_quant(layer.layer, nullptr, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  // Empty args: the first required tensor is missing.
  EXPECT_EQ(gdn_decode(layer.layer, &d, nullptr, 0, nullptr), GDN_ERROR_NULL_POINTER);
  size_t bytes;
  EXPECT_EQ(gdn_decode_workspace_size(layer.layer, -1, 1, &bytes), GDN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(gdn_prefill_workspace_size(layer.layer, int64_t(1) << 50, 1, &bytes), GDN_ERROR_SIZE_OVERFLOW);
  EXPECT_EQ(gdn_norm_gated_workspace_size(layer.layer, 1, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_conv_update_workspace_size(nullptr, 1, 1, &bytes), GDN_ERROR_NULL_POINTER);
}

}  // namespace
