// CUDA-only tests: graph capture and replay of the decode step, streams, device limits.
#include <cuda_runtime.h>

#include "gdn_case.hpp"

using namespace gdnt;

namespace {

#define CU(x) ASSERT_EQ((x), cudaSuccess) << #x

// A device copy of a host Buf that frees itself.
struct Dev {
  void* p = nullptr;
  size_t n = 0;
  explicit Dev(const Buf& b) : n(b.bytes.size()) {
    EXPECT_EQ(cudaMalloc(&p, n), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, b.bytes.data(), n, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~Dev() { cudaFree(p); }
  void to_host(Buf& b) const { EXPECT_EQ(cudaMemcpy(b.bytes.data(), p, n, cudaMemcpyDeviceToHost), cudaSuccess); }
  gdn_tensor view(const Buf& b) const {
    gdn_tensor t = b.view();
    t.data = p;
    return t;
  }
};

bool have_cuda() {
  int n = 0;
  return gdn_backend_compiled(GDN_BACKEND_CUDA) && cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(Gpu, ContextAndLimits) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  Ctx ctx(GDN_BACKEND_CUDA);
  gdn_backend b;
  ASSERT_EQ(gdn_context_backend(ctx.ctx, &b), GDN_SUCCESS);
  EXPECT_EQ(b, GDN_BACKEND_CUDA);
  gdn_layer_config c = small_config(1, 1, 512, 64);
  gdn_layer layer = nullptr;
  EXPECT_EQ(gdn_layer_create(ctx.ctx, &c, &layer), GDN_ERROR_UNSUPPORTED) << gdn_last_error_message();
  gdn_context_config cc;
  gdn_context_config_init(&cc);
  cc.backend = GDN_BACKEND_CUDA;
  cc.device = 1000;
  gdn_context bad = nullptr;
  EXPECT_EQ(gdn_context_create(&cc, &bad), GDN_ERROR_BACKEND_UNAVAILABLE);
}

// Decode captured in a CUDA graph on a side stream and replayed twice equals two eager calls,
// bit for bit (outputs and state pool).
TEST(Gpu, DecodeGraphCaptureReplayMatchesEager) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  Ctx ctx(GDN_BACKEND_CUDA);
  gdn_layer_config cfg = small_config(16, 32, 128, 128, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  const int64_t B = 4;
  GdnCase c(cfg, {B, 1}, B + 1, 2024);
  Buf slot(GDN_DTYPE_I32, {B});
  for (int64_t b = 0; b < B; ++b) slot.set(b, double(b + 1));
  slot.set(2, GDN_PAD_SLOT);
  Dev q(c.q), k(c.k), v(c.v), a(c.a), bb(c.b), A_log(c.A_log), dt_bias(c.dt_bias), s(slot);
  Dev out_eager(c.out), out_graph(c.out), st_eager(c.state), st_graph(c.state);
  auto args = make_args<gdn_decode_args>();
  args.q = q.view(c.q), args.k = k.view(c.k), args.v = v.view(c.v), args.a = a.view(c.a), args.b = bb.view(c.b);
  args.A_log = A_log.view(c.A_log), args.dt_bias = dt_bias.view(c.dt_bias), args.slot_idx = s.view(slot);

  cudaStream_t stream;
  CU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  args.out = out_eager.view(c.out), args.state = st_eager.view(c.state);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(gdn_decode(layer.layer, &args, nullptr, 0, stream), GDN_SUCCESS);
  CU(cudaStreamSynchronize(stream));

  args.out = out_graph.view(c.out), args.state = st_graph.view(c.state);
  cudaGraph_t graph;
  CU(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  ASSERT_EQ(gdn_decode(layer.layer, &args, nullptr, 0, stream), GDN_SUCCESS) << gdn_last_error_message();
  CU(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  CU(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 2; ++i) CU(cudaGraphLaunch(exec, stream));
  CU(cudaStreamSynchronize(stream));

  Buf o1 = c.out, o2 = c.out, s1 = c.state, s2 = c.state;
  out_eager.to_host(o1), out_graph.to_host(o2), st_eager.to_host(s1), st_graph.to_host(s2);
  EXPECT_TRUE(o1.bytes == o2.bytes);
  EXPECT_TRUE(s1.bytes == s2.bytes);
  EXPECT_FALSE(s1.bytes == c.state.bytes) << "state was not updated";
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// The whole decode step (conv update, delta rule, norm + FP8) captures into one graph.
TEST(Gpu, DecodeStepCapturesIntoOneGraph) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  Ctx ctx(GDN_BACKEND_CUDA);
  gdn_layer_config cfg = small_config(2, 4, 128, 128, GDN_DTYPE_BF16);
  Layer layer(ctx.ctx, cfg);
  const int64_t B = 2, C = 2 * 2 * 128 + 4 * 128;
  std::mt19937_64 rng(9);
  Buf x(GDN_DTYPE_BF16, {B, C}), mixed(GDN_DTYPE_BF16, {B, C}), w(GDN_DTYPE_BF16, {C, 4}), cst(GDN_DTYPE_BF16, {B, C, 3});
  Buf slot(GDN_DTYPE_I32, {B}), z(GDN_DTYPE_BF16, {B, 4, 128}), nw(GDN_DTYPE_F32, {128});
  Buf q8(GDN_DTYPE_F8_E4M3FN, {B, 4, 128}), sc(GDN_DTYPE_F32, {B, 4});
  for (Buf* b : {&x, &w, &cst, &z, &nw}) b->fill_uniform(rng, -1, 1);
  slot.set(1, 1);
  GdnCase c(cfg, {B, 1}, B, 10);
  Dev dx(x), dm(mixed), dw(w), dc(cst), ds(slot), dz(z), dnw(nw), dq8(q8), dsc(sc);
  Dev a(c.a), bb(c.b), A_log(c.A_log), dt_bias(c.dt_bias), st(c.state), out(c.out);
  auto cu = make_args<gdn_conv_update_args>();
  cu.x = dx.view(x), cu.out = dm.view(mixed), cu.weight = dw.view(w), cu.conv_state = dc.view(cst);
  cu.slot_idx = ds.view(slot);
  auto de = make_args<gdn_decode_args>();
  gdn_tensor qv = dm.view(mixed);  // q, k, v as views into the conv output
  auto head_view = [&](int64_t offset, int64_t H, int64_t D) {
    gdn_tensor t{};
    t.data = static_cast<char*>(qv.data) + offset * 2;
    t.dtype = GDN_DTYPE_BF16;
    t.ndim = 4;
    const int64_t shape[4] = {B, 1, H, D}, strides[4] = {C, C, D, 1};
    for (int i = 0; i < 4; ++i) t.shape[i] = shape[i], t.strides[i] = strides[i];
    return t;
  };
  de.q = head_view(0, 2, 128), de.k = head_view(256, 2, 128), de.v = head_view(512, 4, 128);
  de.a = a.view(c.a), de.b = bb.view(c.b), de.A_log = A_log.view(c.A_log), de.dt_bias = dt_bias.view(c.dt_bias);
  de.state = st.view(c.state), de.slot_idx = ds.view(slot), de.out = out.view(c.out);
  auto no = make_args<gdn_norm_gated_args>();
  gdn_tensor ov = out.view(c.out);
  ov.ndim = 3;  // [B, 1, HV, V] -> [B, HV, V]
  ov.shape[1] = 4, ov.shape[2] = 128, ov.strides[1] = 128, ov.strides[2] = 1;
  no.x = ov, no.z = dz.view(z), no.weight = dnw.view(nw), no.out = dq8.view(q8), no.scales = dsc.view(sc);

  cudaStream_t stream;
  CU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  CU(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  ASSERT_EQ(gdn_conv_update(layer.layer, &cu, nullptr, 0, stream), GDN_SUCCESS) << gdn_last_error_message();
  ASSERT_EQ(gdn_decode(layer.layer, &de, nullptr, 0, stream), GDN_SUCCESS) << gdn_last_error_message();
  ASSERT_EQ(gdn_norm_gated_fp8_quant(layer.layer, &no, nullptr, 0, stream), GDN_SUCCESS) << gdn_last_error_message();
  CU(cudaStreamEndCapture(stream, &graph));
  size_t nodes = 0;
  CU(cudaGraphGetNodes(graph, nullptr, &nodes));
  EXPECT_GE(nodes, 3u);
  cudaGraphExec_t exec;
  CU(cudaGraphInstantiate(&exec, graph, 0));
  CU(cudaGraphLaunch(exec, stream));
  CU(cudaStreamSynchronize(stream));
  dsc.to_host(sc);
  for (double s : sc.values()) EXPECT_GT(s, 0.0);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
