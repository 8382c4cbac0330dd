/*
 * A synthetic Qwen3-Next GDN layer through libgdn: prefill a prompt, then decode tokens.
 *
 *   qwen3_next_layer [--backend cpu|cuda|hip|auto] [--prompt N] [--decode N] [--threads N]
 *
 * Inputs are the layer's projections in vLLM's Qwen3-Next layout (qkvz and ba interleaved per key
 * head, GDN_LAYOUT_GROUPED), filled from a fixed-seed generator, so the checksum it prints is the
 * same on every machine and backend (up to rounding). Per step:
 *   conv (reads qkvz) -> gated delta rule (reads the conv output, a/b straight from ba)
 *   -> RMSNormGated + FP8 group quant (reads z straight from qkvz).
 * Runs on host memory, so it needs the CPU backend (the default).
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <gdn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                              \
  do {                                                                                           \
    gdn_status st_ = (call);                                                                     \
    if (st_ != GDN_SUCCESS) {                                                                    \
      fprintf(stderr, "%s failed: %s\n  %s\n", #call, gdn_status_string(st_), gdn_last_error_message()); \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform(double lo, double hi) { /* xorshift64*: same stream everywhere */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return lo + (hi - lo) * (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static void fill_bf16(uint16_t* p, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; ++i) p[i] = to_bf16((float)uniform(lo, hi));
}
static void* xmalloc(size_t n) {
  void* p = calloc(1, n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static gdn_tensor view(void* data, gdn_dtype dt, int ndim, const int64_t* shape, const int64_t* strides) {
  gdn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dt;
  t.ndim = ndim;
  for (int i = 0; i < ndim; ++i) {
    t.shape[i] = shape[i];
    t.strides[i] = strides[i];
  }
  return t;
}
static gdn_tensor contiguous(void* data, gdn_dtype dt, int ndim, const int64_t* shape) {
  int64_t strides[GDN_MAX_DIMS], s = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return view(data, dt, ndim, shape, strides);
}
static void* ensure(void** buf, size_t* have, size_t need) {
  if (need > *have) {
    free(*buf);
    *buf = xmalloc(need);
    *have = need;
  }
  return *buf;
}

/* One layer's persistent state and weights. */
typedef struct {
  gdn_layer layer;
  int64_t HK, HV, K, V, W, r, C, width, G;
  uint16_t* conv_w; /* [C, W] bf16 */
  float *A_log, *dt_bias, *norm_w;
  float* ssm;         /* [slots, HV, K, V] */
  uint16_t* conv_st;  /* [slots, C, W-1] bf16 */
  int64_t slots;
  void* ws;
  size_t ws_bytes;
} Layer;

/* Runs T tokens (one sequence) through the layer; decode when `decode`, else prefill.
   Returns the sum of dequantised FP8 outputs. */
static double step(Layer* L, int64_t T, int decode, int32_t slot, int has_initial, double* seconds) {
  const int64_t HK = L->HK, HV = L->HV, K = L->K, V = L->V, r = L->r, C = L->C, width = L->width, G = L->G;
  uint16_t* qkvz = xmalloc((size_t)(T * width) * 2);
  uint16_t* ba = xmalloc((size_t)(T * 2 * HV) * 2);
  uint16_t* mixed = xmalloc((size_t)(T * C) * 2);
  uint16_t* core = xmalloc((size_t)(T * HV * V) * 2);
  uint8_t* q8 = xmalloc((size_t)(T * HV * V));
  float* scales = xmalloc((size_t)(T * HV * V / 128) * 4);
  fill_bf16(qkvz, (size_t)(T * width), -1, 1);
  fill_bf16(ba, (size_t)(T * 2 * HV), -2, 2);
  int32_t cu[2] = {0, (int32_t)T}, slots[1] = {slot};
  uint8_t init[1] = {(uint8_t)has_initial};
  const int64_t n1[1] = {1}, n2[1] = {2};
  const double t0 = now();

  /* conv: decode steps run one token (T = 1) as a batch of one sequence. */
  int64_t xs[2] = {T, width}, os[2] = {T, C}, ws_[2] = {C, L->W}, ss[3] = {L->slots, C, L->W - 1};
  if (decode) {
    gdn_conv_update_args a = {.struct_size = sizeof a};
    a.x = contiguous(qkvz, GDN_DTYPE_BF16, 2, xs);
    a.out = contiguous(mixed, GDN_DTYPE_BF16, 2, os);
    a.weight = contiguous(L->conv_w, GDN_DTYPE_BF16, 2, ws_);
    a.conv_state = contiguous(L->conv_st, GDN_DTYPE_BF16, 3, ss);
    a.slot_idx = contiguous(slots, GDN_DTYPE_I32, 1, n1);
    CHECK(gdn_conv_update(L->layer, &a, NULL, 0, NULL));
  } else {
    gdn_conv_prefill_args a = {.struct_size = sizeof a};
    a.x = contiguous(qkvz, GDN_DTYPE_BF16, 2, xs);
    a.out = contiguous(mixed, GDN_DTYPE_BF16, 2, os);
    a.weight = contiguous(L->conv_w, GDN_DTYPE_BF16, 2, ws_);
    a.conv_state = contiguous(L->conv_st, GDN_DTYPE_BF16, 3, ss);
    a.cu_seqlens = contiguous(cu, GDN_DTYPE_I32, 1, n2);
    a.slot_idx = contiguous(slots, GDN_DTYPE_I32, 1, n1);
    a.has_initial_state = contiguous(init, GDN_DTYPE_BOOL, 1, n1);
    CHECK(gdn_conv_prefill(L->layer, &a, NULL, 0, NULL));
  }

  /* Views into the conv output (q|k|v) and straight into ba ([b(r), a(r)] per key head). */
  const int64_t st[4] = {L->slots, HV, K, V};
  const int64_t lead = decode ? 2 : 1; /* decode: [B=1, Tn=T]; prefill: [T] */
  int64_t qshape[5], qstr[5], vshape[5], vstr[5], gshape[4], gstr[4], oshape[4], ostr[4];
  int i = 0;
  if (decode) {
    qshape[i] = vshape[i] = gshape[i] = oshape[i] = 1;
    qstr[i] = vstr[i] = T * C;
    gstr[i] = T * 2 * HV;
    ostr[i] = T * HV * V;
    ++i;
  }
  qshape[i] = vshape[i] = gshape[i] = oshape[i] = T;
  qstr[i] = vstr[i] = C;
  gstr[i] = 2 * HV;
  ostr[i] = HV * V;
  qshape[i + 1] = HK, qstr[i + 1] = K, qshape[i + 2] = K, qstr[i + 2] = 1;
  vshape[i + 1] = HV, vstr[i + 1] = V, vshape[i + 2] = V, vstr[i + 2] = 1;
  gshape[i + 1] = HK, gstr[i + 1] = 2 * r, gshape[i + 2] = r, gstr[i + 2] = 1;
  oshape[i + 1] = HV, ostr[i + 1] = V, oshape[i + 2] = V, ostr[i + 2] = 1;
  const int qn = (int)lead + 2, gn = (int)lead + 2;
  gdn_tensor q = view(mixed, GDN_DTYPE_BF16, qn, qshape, qstr);
  gdn_tensor k = view(mixed + HK * K, GDN_DTYPE_BF16, qn, qshape, qstr);
  gdn_tensor v = view(mixed + 2 * HK * K, GDN_DTYPE_BF16, qn, vshape, vstr);
  gdn_tensor b = view(ba, GDN_DTYPE_BF16, gn, gshape, gstr);
  gdn_tensor av = view(ba + r, GDN_DTYPE_BF16, gn, gshape, gstr);
  gdn_tensor out = view(core, GDN_DTYPE_BF16, qn, oshape, ostr);
  gdn_tensor state = contiguous(L->ssm, GDN_DTYPE_F32, 4, st);
  gdn_tensor A_log = contiguous(L->A_log, GDN_DTYPE_F32, 1, &HV);
  gdn_tensor dt_bias = contiguous(L->dt_bias, GDN_DTYPE_F32, 1, &HV);
  size_t need = 0;
  if (decode) {
    gdn_decode_args a = {.struct_size = sizeof a};
    a.q = q, a.k = k, a.v = v, a.a = av, a.b = b, a.A_log = A_log, a.dt_bias = dt_bias;
    a.state = state;
    a.slot_idx = contiguous(slots, GDN_DTYPE_I32, 1, n1);
    a.out = out;
    CHECK(gdn_decode_workspace_size(L->layer, 1, T, &need));
    ensure(&L->ws, &L->ws_bytes, need);
    CHECK(gdn_decode(L->layer, &a, L->ws, L->ws_bytes, NULL));
  } else {
    gdn_prefill_args a = {.struct_size = sizeof a};
    a.q = q, a.k = k, a.v = v, a.a = av, a.b = b, a.A_log = A_log, a.dt_bias = dt_bias;
    a.state = state;
    a.cu_seqlens = contiguous(cu, GDN_DTYPE_I32, 1, n2);
    a.slot_idx = contiguous(slots, GDN_DTYPE_I32, 1, n1);
    a.has_initial_state = contiguous(init, GDN_DTYPE_BOOL, 1, n1);
    a.out = out;
    CHECK(gdn_prefill_workspace_size(L->layer, T, 1, &need));
    ensure(&L->ws, &L->ws_bytes, need);
    CHECK(gdn_prefill(L->layer, &a, L->ws, L->ws_bytes, NULL));
  }

  /* RMSNormGated + FP8: x = core [T, HV, V]; z straight out of qkvz: [T, HK, r, V]. */
  const int64_t xshape[3] = {T, HV, V};
  const int64_t zshape[4] = {T, HK, r, V}, zstr[4] = {width, G, V, 1};
  const int64_t sshape[2] = {T, HV * V / 128};
  gdn_norm_gated_args n = {.struct_size = sizeof n};
  n.x = contiguous(core, GDN_DTYPE_BF16, 3, xshape);
  n.z = view(qkvz + 2 * K + r * V, GDN_DTYPE_BF16, 4, zshape, zstr);
  n.weight = contiguous(L->norm_w, GDN_DTYPE_F32, 1, &V);
  n.out = contiguous(q8, GDN_DTYPE_F8_E4M3FN, 3, xshape);
  n.scales = contiguous(scales, GDN_DTYPE_F32, 2, sshape);
  CHECK(gdn_norm_gated_workspace_size(L->layer, T, &need));
  ensure(&L->ws, &L->ws_bytes, need);
  CHECK(gdn_norm_gated_fp8_quant(L->layer, &n, L->ws, L->ws_bytes, NULL));
  *seconds = now() - t0;

  double sum = 0.0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < HV * V; ++c) {
      const uint8_t code = q8[t * HV * V + c];
      const int e = (code >> 3) & 15, m = code & 7;
      double val = e ? (1.0 + m / 8.0) * ldexp(1.0, e - 7) : m * ldexp(1.0, -9);
      if (code & 0x80) val = -val;
      sum += val * scales[t * (HV * V / 128) + c / 128];
    }
  free(qkvz), free(ba), free(mixed), free(core), free(q8), free(scales);
  return sum;
}

int main(int argc, char** argv) {
  int backend = GDN_BACKEND_CPU, threads = 0;
  int64_t prompt = 256, decode = 16;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--decode") && i + 1 < argc) decode = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
      const char* b = argv[++i];
      backend = !strcmp(b, "cpu") ? GDN_BACKEND_CPU : !strcmp(b, "cuda") ? GDN_BACKEND_CUDA
                : !strcmp(b, "hip") ? GDN_BACKEND_HIP : GDN_BACKEND_AUTO;
    } else {
      fprintf(stderr, "usage: %s [--backend cpu|cuda|hip|auto] [--prompt N] [--decode N] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  if (prompt < 1 || decode < 0) {
    fprintf(stderr, "--prompt must be >= 1 and --decode >= 0\n");
    return 2;
  }
  printf("libgdn %s\n", gdn_version_string());
  gdn_context_config cc;
  gdn_context_config_init(&cc);
  cc.backend = backend;
  cc.num_threads = threads;
  gdn_context ctx;
  CHECK(gdn_context_create(&cc, &ctx));
  gdn_backend got;
  int32_t nthreads = 0;
  CHECK(gdn_context_backend(ctx, &got));
  CHECK(gdn_context_num_threads(ctx, &nthreads));
  if (got != GDN_BACKEND_CPU) {
    fprintf(stderr, "this example keeps its tensors in host memory; run it with --backend cpu\n");
    return 2;
  }

  gdn_layer_config cfg;
  gdn_layer_config_init(&cfg); /* Qwen3-Next-80B-A3B: HK 16, HV 32, K = V = 128 */
  cfg.input_layout = GDN_LAYOUT_GROUPED;
  Layer L;
  memset(&L, 0, sizeof L);
  CHECK(gdn_layer_create(ctx, &cfg, &L.layer));
  L.HK = cfg.num_k_heads, L.HV = cfg.num_v_heads, L.K = cfg.head_k_dim, L.V = cfg.head_v_dim, L.W = cfg.conv_width;
  L.r = L.HV / L.HK;
  CHECK(gdn_layer_conv_dim(L.layer, &L.C));
  L.width = 2 * L.HK * L.K + 2 * L.HV * L.V;
  L.G = 2 * L.K + 2 * L.r * L.V;
  L.slots = 2;
  L.conv_w = xmalloc((size_t)(L.C * L.W) * 2);
  fill_bf16(L.conv_w, (size_t)(L.C * L.W), -0.5, 0.5);
  L.A_log = xmalloc((size_t)L.HV * 4);
  L.dt_bias = xmalloc((size_t)L.HV * 4);
  L.norm_w = xmalloc((size_t)L.V * 4);
  for (int64_t h = 0; h < L.HV; ++h) L.A_log[h] = (float)uniform(-1, 1), L.dt_bias[h] = (float)uniform(-1, 1);
  for (int64_t j = 0; j < L.V; ++j) L.norm_w[j] = (float)uniform(0.5, 1.5);
  L.ssm = xmalloc((size_t)(L.slots * L.HV * L.K * L.V) * 4);
  L.conv_st = xmalloc((size_t)(L.slots * L.C * (L.W - 1)) * 2);

  printf("layer: Qwen3-Next GDN, HK=%lld HV=%lld K=%lld V=%lld conv_dim=%lld, bf16 activations, fp32 state,"
         " FP8 e4m3 output; backend CPU, %d threads\n",
         (long long)L.HK, (long long)L.HV, (long long)L.K, (long long)L.V, (long long)L.C, nthreads);
  double secs = 0.0, total = 0.0;
  const double sum_p = step(&L, prompt, 0, 1, 0, &secs);
  printf("prefill: %lld tokens in %.3f ms (%.0f tokens/s), checksum %.6e\n", (long long)prompt, secs * 1e3,
         (double)prompt / secs, sum_p);
  double sum_d = 0.0;
  for (int64_t t = 0; t < decode; ++t) {
    sum_d += step(&L, 1, 1, 1, 1, &secs);
    total += secs;
  }
  if (decode > 0)
    printf("decode: %lld steps at batch 1, %.1f us per step (conv + delta rule + norm/fp8), checksum %.6e\n",
           (long long)decode, total / (double)decode * 1e6, sum_d);
  double state_sum = 0.0;
  for (int64_t i = 0; i < L.HV * L.K * L.V; ++i) state_sum += L.ssm[L.HV * L.K * L.V + i];
  printf("final state checksum (slot 1): %.6e\n", state_sum);
  CHECK(gdn_layer_destroy(L.layer));
  CHECK(gdn_context_destroy(ctx));
  free(L.conv_w), free(L.A_log), free(L.dt_bias), free(L.norm_w), free(L.ssm), free(L.conv_st), free(L.ws);
  return 0;
}
