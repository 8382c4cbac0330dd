/*
 * The cross-language synthetic decode step (C version; the Python, Rust and Go examples run the
 * same step and print the same line, which CI compares):
 *   layer HK=2 HV=4 K=V=32, f32 activations and state, L2 norm on, default scale;
 *   batch 2, one token, slot pool of 3, slot_idx = {2, 0}, raw gate (a, b, A_log, dt_bias);
 *   tensor element i of seed s = ((((i + s) * 7919) % 2001) - 1000) / 1024  (exact in f32);
 *   seeds q 1, k 2, v 3, a 4, b 5, A_log 6, dt_bias 7, state 8 (state values halved);
 *   prints the sums (float64, index order) of out and of the whole state pool.
 */
#include <gdn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(float* p, int64_t n, int64_t seed, float mul) {
  for (int64_t i = 0; i < n; ++i) p[i] = (float)((((i + seed) * 7919) % 2001) - 1000) / 1024.0f * mul;
}
static gdn_tensor view(void* data, gdn_dtype dt, int ndim, const int64_t* shape) {
  gdn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data, t.dtype = dt, t.ndim = ndim;
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; --i) t.shape[i] = shape[i], t.strides[i] = s, s *= shape[i];
  return t;
}
static void check(gdn_status st, const char* what) {
  if (st != GDN_SUCCESS) {
    fprintf(stderr, "%s: %s: %s\n", what, gdn_status_string(st), gdn_last_error_message());
    exit(1);
  }
}

int main(void) {
  enum { HK = 2, HV = 4, K = 32, V = 32, B = 2, SLOTS = 3 };
  static float q[B * HK * K], k[B * HK * K], v[B * HV * V], a[B * HV], b[B * HV], A_log[HV], dt_bias[HV];
  static float state[SLOTS * HV * K * V], out[B * HV * V];
  int32_t slots[B] = {2, 0};
  fill(q, B * HK * K, 1, 1), fill(k, B * HK * K, 2, 1), fill(v, B * HV * V, 3, 1), fill(a, B * HV, 4, 1);
  fill(b, B * HV, 5, 1), fill(A_log, HV, 6, 1), fill(dt_bias, HV, 7, 1), fill(state, SLOTS * HV * K * V, 8, 0.5f);

  gdn_context_config cc;
  gdn_context_config_init(&cc);
  cc.backend = GDN_BACKEND_CPU;
  gdn_context ctx;
  check(gdn_context_create(&cc, &ctx), "context");
  gdn_layer_config lc;
  gdn_layer_config_init(&lc);
  lc.num_k_heads = HK, lc.num_v_heads = HV, lc.head_k_dim = K, lc.head_v_dim = V;
  lc.act_dtype = GDN_DTYPE_F32, lc.out_dtype = GDN_DTYPE_F32;
  gdn_layer layer;
  check(gdn_layer_create(ctx, &lc, &layer), "layer");

  const int64_t sq[4] = {B, 1, HK, K}, sv[4] = {B, 1, HV, V}, sg[3] = {B, 1, HV}, sh[1] = {HV};
  const int64_t ss[4] = {SLOTS, HV, K, V}, sb[1] = {B};
  gdn_decode_args d = {.struct_size = sizeof d};
  d.q = view(q, GDN_DTYPE_F32, 4, sq), d.k = view(k, GDN_DTYPE_F32, 4, sq), d.v = view(v, GDN_DTYPE_F32, 4, sv);
  d.a = view(a, GDN_DTYPE_F32, 3, sg), d.b = view(b, GDN_DTYPE_F32, 3, sg);
  d.A_log = view(A_log, GDN_DTYPE_F32, 1, sh), d.dt_bias = view(dt_bias, GDN_DTYPE_F32, 1, sh);
  d.state = view(state, GDN_DTYPE_F32, 4, ss), d.slot_idx = view(slots, GDN_DTYPE_I32, 1, sb);
  d.out = view(out, GDN_DTYPE_F32, 4, sv);
  size_t ws_bytes = 0;
  check(gdn_decode_workspace_size(layer, B, 1, &ws_bytes), "workspace size");
  void* ws = malloc(ws_bytes ? ws_bytes : 1);
  check(gdn_decode(layer, &d, ws, ws_bytes, NULL), "decode");

  double out_sum = 0, state_sum = 0;
  for (int i = 0; i < B * HV * V; ++i) out_sum += out[i];
  for (int i = 0; i < SLOTS * HV * K * V; ++i) state_sum += state[i];
  printf("out_sum=%.9e state_sum=%.9e\n", out_sum, state_sum);
  free(ws);
  gdn_layer_destroy(layer);
  gdn_context_destroy(ctx);
  return 0;
}
