/*
 * libgdn -- Gated DeltaNet kernels behind a stable C ABI.
 *
 * Conventions
 *  - Every function returns gdn_status. On failure, gdn_last_error_message() holds the detail
 *    (thread-local, valid until the next libgdn call on this thread). Nothing the caller owns
 *    is written when a call fails: all validation happens before any output is touched.
 *  - Config and argument structs start with `struct_size`; set it to sizeof(the struct) and
 *    zero-initialise the rest (C: `gdn_decode_args a = {.struct_size = sizeof a};`). Older callers with a
 *    smaller struct get defaults (zeros) for fields they do not know; newer callers with a larger
 *    struct are accepted when the unknown tail is all zero.
 *  - Tensors are views: pointer, dtype, shape and strides in elements (not bytes). Strides must
 *    be >= 0 and the innermost (feature) dimension of every vector tensor must have stride 1.
 *    An optional tensor is absent when its `data` is NULL and its `ndim` is 0.
 *  - Slot indices are int32. A negative index (GDN_PAD_SLOT) or one >= num_slots means "skip this
 *    row": its outputs are written as zeros and no state is read or written.
 *  - Run calls never allocate, never synchronise with the host and never read device memory on
 *    the host (GPU backends); scratch comes from the caller's workspace, whose size the matching
 *    *_workspace_size call returns. So the CPU backend checks cu_seqlens' contents (failing with
 *    GDN_ERROR_INVALID_ARGUMENT), while GPU backends cannot: there a malformed cu_seqlens gives
 *    unspecified outputs and states for its sequences, but every access stays inside the given
 *    views (its values are clamped to [0, T]). A num_accepted outside 1..Tn skips its row on
 *    every backend, as a padding slot does. `stream` is a cudaStream_t / hipStream_t (NULL: default
 *    stream) and is ignored by the CPU backend.
 *  - Thread safety: distinct contexts may be used concurrently. Run calls on the same context must
 *    not overlap in time (the CPU backend owns one thread pool per context). Layer objects are
 *    immutable after creation and may be shared by threads that use their context serially.
 */
#ifndef GDN_H_
#define GDN_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(GDN_BUILDING)
#    define GDN_API __declspec(dllexport)
#  else
#    define GDN_API __declspec(dllimport)
#  endif
#else
#  define GDN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define GDN_VERSION_MAJOR 0
#define GDN_VERSION_MINOR 1
#define GDN_VERSION_PATCH 0
#define GDN_VERSION_NUMBER (GDN_VERSION_MAJOR * 10000 + GDN_VERSION_MINOR * 100 + GDN_VERSION_PATCH)

#define GDN_MAX_DIMS 6
#define GDN_PAD_SLOT (-1)

/* ------------------------------------------------------------------ status */
typedef enum gdn_status {
  GDN_SUCCESS = 0,
  GDN_ERROR_INVALID_ARGUMENT = 1,    /* a value out of its allowed range */
  GDN_ERROR_NULL_POINTER = 2,        /* a required pointer is NULL */
  GDN_ERROR_BAD_DTYPE = 3,           /* a tensor has a dtype this op does not take */
  GDN_ERROR_BAD_SHAPE = 4,           /* a tensor's rank or sizes do not match */
  GDN_ERROR_BAD_STRIDE = 5,          /* negative stride, or non-unit innermost stride */
  GDN_ERROR_MISALIGNED = 6,          /* a pointer is not aligned to its element size */
  GDN_ERROR_ALIASING = 7,            /* an output overlaps another tensor of the call */
  GDN_ERROR_WORKSPACE_TOO_SMALL = 8, /* workspace_bytes < the size the query returned */
  GDN_ERROR_SIZE_OVERFLOW = 9,       /* sizes or strides overflow the address space */
  GDN_ERROR_UNSUPPORTED = 10,        /* valid request this build/backend cannot do */
  GDN_ERROR_BACKEND_UNAVAILABLE = 11,/* backend not compiled in, or no device */
  GDN_ERROR_BAD_VERSION = 12,        /* struct_size unknown or unknown non-zero fields */
  GDN_ERROR_DEVICE = 13,             /* the CUDA/HIP runtime reported an error */
  GDN_ERROR_OUT_OF_MEMORY = 14,      /* host allocation in create calls failed */
  GDN_ERROR_INTERNAL = 15
} gdn_status;

/* Static string naming a status ("GDN_ERROR_BAD_SHAPE: ..."); never NULL. */
GDN_API const char* gdn_status_string(gdn_status status);
/* Detail of the last failure on this thread ("" if the last call succeeded). */
GDN_API const char* gdn_last_error_message(void);

/* ----------------------------------------------------------------- version */
GDN_API void gdn_version(int* major, int* minor, int* patch);
GDN_API const char* gdn_version_string(void);

/* ------------------------------------------------------------------ dtypes */
typedef enum gdn_dtype {
  GDN_DTYPE_INVALID = 0,
  GDN_DTYPE_F32 = 1,
  GDN_DTYPE_F16 = 2,
  GDN_DTYPE_BF16 = 3,
  GDN_DTYPE_F8_E4M3FN = 4,   /* OCP e4m3, max 448 (NVIDIA, MI355) */
  GDN_DTYPE_F8_E4M3FNUZ = 5, /* e4m3 fnuz, max 240 (MI300) */
  GDN_DTYPE_I32 = 6,
  GDN_DTYPE_I64 = 7,
  GDN_DTYPE_BOOL = 8         /* one byte, 0 = false */
} gdn_dtype;

GDN_API size_t gdn_dtype_size(gdn_dtype dtype); /* 0 for GDN_DTYPE_INVALID / unknown */
GDN_API const char* gdn_dtype_name(gdn_dtype dtype);

typedef struct gdn_tensor {
  void* data;
  int32_t dtype; /* gdn_dtype */
  int32_t ndim;
  int64_t shape[GDN_MAX_DIMS];
  int64_t strides[GDN_MAX_DIMS]; /* in elements */
} gdn_tensor;

/* ----------------------------------------------------------------- context */
typedef enum gdn_backend {
  GDN_BACKEND_AUTO = 0, /* CUDA or HIP when built and a device is present, else CPU */
  GDN_BACKEND_CPU = 1,
  GDN_BACKEND_CUDA = 2,
  GDN_BACKEND_HIP = 3
} gdn_backend;

typedef struct gdn_context_config {
  uint32_t struct_size;
  int32_t backend;     /* gdn_backend */
  int32_t device;      /* GPU ordinal; ignored on CPU */
  int32_t num_threads; /* CPU backend: 0 = hardware concurrency (or env GDN_NUM_THREADS) */
} gdn_context_config;

typedef struct gdn_context_s* gdn_context;

GDN_API void gdn_context_config_init(gdn_context_config* config);
GDN_API gdn_status gdn_context_create(const gdn_context_config* config, gdn_context* out);
GDN_API gdn_status gdn_context_destroy(gdn_context ctx); /* NULL is a no-op */
GDN_API gdn_status gdn_context_backend(gdn_context ctx, gdn_backend* out);
GDN_API gdn_status gdn_context_num_threads(gdn_context ctx, int32_t* out);
/* 1 when the backend was compiled into this library (CPU always is). */
GDN_API int gdn_backend_compiled(gdn_backend backend);

/* ------------------------------------------------------------------- layer */
typedef enum gdn_input_layout {
  /* Qwen3.5: conv input channels are q|k|v concatenated (column c = channel c). */
  GDN_LAYOUT_PLAIN = 0,
  /* Qwen3-Next (vLLM in_proj_qkvz): per key head h, columns [q(K) k(K) v(r*V) z(r*V)], r = HV/HK.
     conv_update / conv_prefill read conv channels from such rows; z and the grouped [b(r) a(r)]
     are read by the other ops through rank-grouped views (see gdn_decode_args). */
  GDN_LAYOUT_GROUPED = 1
} gdn_input_layout;

typedef enum gdn_activation { GDN_ACTIVATION_NONE = 0, GDN_ACTIVATION_SILU = 1 } gdn_activation;

/* Precision of the chunked prefill's matrix products (gdn_layer_config.prefill_precision). The
   state itself, the gates and every accumulation stay fp32 either way. */
typedef enum gdn_precision {
  /* fp32-accurate products (on tensor cores: each operand split into two bf16, 2-3 products). */
  GDN_PRECISION_FP32 = 0,
  /* Products on bf16 operands (the state, W/U-form intermediates and q/k rounded to bf16 as
     operands), fp32 accumulation: the accuracy of FLA's chunked kernels that vLLM and SGLang run.
     A permission, not a requirement: it changes the CUDA tensor-core prefill (sm_80+, K = 64 or
     128); the CPU backend and the other GPU paths compute at fp32. */
  GDN_PRECISION_BF16 = 1
} gdn_precision;

typedef struct gdn_layer_config {
  uint32_t struct_size;
  int32_t num_k_heads;   /* HK */
  int32_t num_v_heads;   /* HV, multiple of HK */
  int32_t head_k_dim;    /* K */
  int32_t head_v_dim;    /* V */
  int32_t conv_width;    /* W, 1..8 (Qwen: 4) */
  int32_t conv_activation; /* gdn_activation */
  int32_t act_dtype;     /* q, k, v, z, a, b, conv input/output, decode/prefill output */
  int32_t state_dtype;   /* recurrent state pool: F32 or BF16 */
  int32_t out_dtype;     /* norm_gated output: F32, F16 or BF16 */
  int32_t fp8_dtype;     /* norm_gated_fp8_quant output: F8_E4M3FN or F8_E4M3FNUZ */
  int32_t fp8_group_size;/* channels per FP8 scale (128); must divide HV*V */
  int32_t input_layout;  /* gdn_input_layout */
  int32_t use_qk_l2norm; /* nonzero: L2-normalise q and k (eps 1e-6) */
  float scale;           /* q scale; 0 = head_k_dim^-0.5 */
  float norm_eps;        /* RMSNormGated eps (1e-6) */
  int32_t prefill_precision; /* gdn_precision (GDN_PRECISION_FP32) */
} gdn_layer_config;

typedef struct gdn_layer_s* gdn_layer;

/* Qwen3-Next-80B-A3B defaults (HK 16, HV 32, K = V = 128, W 4, bf16 activations, fp32 state). */
GDN_API void gdn_layer_config_init(gdn_layer_config* config);
GDN_API gdn_status gdn_layer_create(gdn_context ctx, const gdn_layer_config* config, gdn_layer* out);
GDN_API gdn_status gdn_layer_destroy(gdn_layer layer); /* NULL is a no-op */
/* conv_dim = 2*HK*K + HV*V; qkvz row width = 2*HK*K + 2*HV*V. */
GDN_API gdn_status gdn_layer_conv_dim(gdn_layer layer, int64_t* conv_dim);

/* ---------------------------------------------------------------- conv ops
 * weight [conv_dim, W] (act dtype or F32), bias [conv_dim] optional (same),
 * conv_state pool [num_slots, conv_dim, W-1] (act dtype; any strides), oldest input first.
 * x rows: PLAIN layout: [.., C] with C >= conv_dim (columns past conv_dim, e.g. z, are ignored);
 *         GROUPED layout: [.., 2*HK*K + 2*HV*V] qkvz rows.
 * out: [.., conv_dim] in q|k|v order (act dtype).
 */
typedef struct gdn_conv_update_args {
  uint32_t struct_size;
  gdn_tensor x;          /* [B, C] or [B, Tn, C]: Tn new tokens per sequence */
  gdn_tensor weight;
  gdn_tensor bias;       /* optional */
  gdn_tensor conv_state; /* [num_slots, conv_dim, W-1], updated in place */
  gdn_tensor slot_idx;   /* [B] int32 */
  gdn_tensor out;        /* same leading dims as x, last dim conv_dim */
} gdn_conv_update_args;

typedef struct gdn_conv_prefill_args {
  uint32_t struct_size;
  gdn_tensor x;                 /* [T, C] tokens of all sequences, back to back */
  gdn_tensor weight;
  gdn_tensor bias;              /* optional */
  gdn_tensor conv_state;        /* [num_slots, conv_dim, W-1] */
  gdn_tensor cu_seqlens;        /* [N+1] int32 or int64, 0 = cu[0] <= ... <= cu[N] = T */
  gdn_tensor slot_idx;          /* [N] int32 */
  gdn_tensor has_initial_state; /* [N] bool or int32; absent = every sequence continues its slot */
  gdn_tensor out;               /* [T, conv_dim] */
} gdn_conv_prefill_args;

GDN_API gdn_status gdn_conv_update_workspace_size(gdn_layer layer, int64_t batch, int64_t tokens_per_seq,
                                                  size_t* bytes);
GDN_API gdn_status gdn_conv_update(gdn_layer layer, const gdn_conv_update_args* args, void* workspace,
                                   size_t workspace_bytes, void* stream);
GDN_API gdn_status gdn_conv_prefill_workspace_size(gdn_layer layer, int64_t num_tokens, int64_t num_seqs,
                                                   size_t* bytes);
GDN_API gdn_status gdn_conv_prefill(gdn_layer layer, const gdn_conv_prefill_args* args, void* workspace,
                                    size_t workspace_bytes, void* stream);

/* ------------------------------------------------------ gated delta rule ops
 * Head tensors may be given per value head, [.., HV, D], or grouped by key head,
 * [.., HK, HV/HK, D] (value head hv = h*(HV/HK) + j): the grouped form reads v, z, a and b straight
 * out of vLLM's interleaved qkvz / ba projections. Per-head scalars likewise: [.., HV] or [.., HK, HV/HK].
 *
 * Gate: either raw (a, b, A_log, dt_bias all present):
 *     g = -exp(A_log[h]) * softplus(a + dt_bias[h]),  beta = sigmoid(b)
 * or precomputed (g = log-decay, beta; both present, a/b/A_log/dt_bias absent).
 * a, b: act dtype; g, beta, A_log, dt_bias: F32, F16 or BF16.
 */
typedef struct gdn_decode_args {
  uint32_t struct_size;
  gdn_tensor q;        /* [B, Tn, HK, K] */
  gdn_tensor k;        /* [B, Tn, HK, K] */
  gdn_tensor v;        /* [B, Tn, HV, V] or [B, Tn, HK, HV/HK, V] */
  gdn_tensor a;        /* [B, Tn, HV] (or grouped) -- raw gate */
  gdn_tensor b;        /* [B, Tn, HV] (or grouped) */
  gdn_tensor A_log;    /* [HV] */
  gdn_tensor dt_bias;  /* [HV] */
  gdn_tensor g;        /* [B, Tn, HV] (or grouped) -- precomputed gate */
  gdn_tensor beta;     /* [B, Tn, HV] (or grouped) */
  gdn_tensor state;    /* pool [num_slots, HV, K, V], state dtype, updated in place */
  /* [B]: read slot_idx[b], run the Tn tokens, write the final state back to it.
     [B, Tn] (speculative decoding): read slot_idx[b][num_accepted[b]-1] (num_accepted absent: 1),
     and after token t write the state to slot_idx[b][t] (skipped when that entry is invalid). */
  gdn_tensor slot_idx;
  gdn_tensor num_accepted; /* optional [B] int32, only with a [B, Tn] slot_idx; must be in 1..Tn */
  gdn_tensor out;      /* [B, Tn, HV, V] act dtype */
} gdn_decode_args;

typedef struct gdn_prefill_args {
  uint32_t struct_size;
  gdn_tensor q;        /* [T, HK, K] */
  gdn_tensor k;        /* [T, HK, K] */
  gdn_tensor v;        /* [T, HV, V] or [T, HK, HV/HK, V] */
  gdn_tensor a, b;     /* [T, HV] (or grouped) */
  gdn_tensor A_log, dt_bias; /* [HV] */
  gdn_tensor g, beta;  /* [T, HV] (or grouped) */
  gdn_tensor state;    /* pool [num_slots, HV, K, V] */
  gdn_tensor cu_seqlens;        /* [N+1] int32 or int64 */
  gdn_tensor slot_idx;          /* [N] int32: initial state read from / final state written to */
  gdn_tensor has_initial_state; /* [N] bool or int32; absent = every sequence continues its slot;
                                   false = start from zeros (the slot is only written) */
  gdn_tensor out;      /* [T, HV, V] act dtype */
} gdn_prefill_args;

GDN_API gdn_status gdn_decode_workspace_size(gdn_layer layer, int64_t batch, int64_t tokens_per_seq,
                                             size_t* bytes);
GDN_API gdn_status gdn_decode(gdn_layer layer, const gdn_decode_args* args, void* workspace,
                              size_t workspace_bytes, void* stream);
/* Prefill's workspace holds per-chunk intermediates: on the GPU backends about
   num_tokens * num_v_heads * 516 bytes (270 MB at 16384 tokens and 32 value heads). */
GDN_API gdn_status gdn_prefill_workspace_size(gdn_layer layer, int64_t num_tokens, int64_t num_seqs,
                                              size_t* bytes);
GDN_API gdn_status gdn_prefill(gdn_layer layer, const gdn_prefill_args* args, void* workspace,
                               size_t workspace_bytes, void* stream);

/* ------------------------------------------------------------- norm ops
 * y = x / sqrt(mean(x^2) + eps) * weight * silu(z), per token and value head over V.
 * FP8: per row (token) of HV*V channels, groups of fp8_group_size consecutive channels:
 *      scale = max(amax / fp8_max, FLT_MIN), q = saturate(round_half_even(y / scale)).
 */
typedef struct gdn_norm_gated_args {
  uint32_t struct_size;
  gdn_tensor x;       /* [T, HV, V] act dtype (the decode/prefill output) */
  gdn_tensor z;       /* [T, HV, V] or [T, HK, HV/HK, V] act dtype */
  gdn_tensor weight;  /* [V] act dtype or F32 */
  gdn_tensor out;     /* [T, HV, V]: out_dtype (gdn_norm_gated) or fp8_dtype (fp8 quant) */
  gdn_tensor scales;  /* fp8 quant only: [T, HV*V/group] F32 (any strides, e.g. column-major) */
} gdn_norm_gated_args;

GDN_API gdn_status gdn_norm_gated_workspace_size(gdn_layer layer, int64_t num_tokens, size_t* bytes);
GDN_API gdn_status gdn_norm_gated(gdn_layer layer, const gdn_norm_gated_args* args, void* workspace,
                                  size_t workspace_bytes, void* stream);
GDN_API gdn_status gdn_norm_gated_fp8_quant(gdn_layer layer, const gdn_norm_gated_args* args, void* workspace,
                                            size_t workspace_bytes, void* stream);

/* ------------------------------------------------------ whole-layer decode step
 * One call for one new token per sequence: conv update (packed input, conv state updated in
 * place) -> gated delta rule (raw gate, state updated in place) -> RMSNormGated, with FP8 group
 * quantisation when `scales` is given (output fp8_dtype) or out_dtype output otherwise. The
 * result equals gdn_conv_update + gdn_decode + gdn_norm_gated[_fp8_quant] on the same inputs bit
 * for bit; the intermediate conv output and core-attention output live in the workspace. On
 * NVIDIA sm_90 it runs as one fused kernel (no intermediates written) when head_v_dim = 128,
 * head_k_dim = 64 or 128, num_v_heads / num_k_heads <= 8 (head_k_dim divided by it a power of
 * two), the activations are f16/bf16 with conv weights, bias and conv state of the same dtype,
 * state rows 4-element aligned, and the device's SM count / 2 < B * num_v_heads <= its SM count
 * (outside, the three kernels measured faster); otherwise, and on other GPUs, as the three
 * kernels. The workspace size is the same either way. */
typedef struct gdn_decode_step_args {
  uint32_t struct_size;
  gdn_tensor x;           /* [B, C] conv input: [B, conv_dim] (plain) or vLLM's qkvz rows (grouped) */
  gdn_tensor conv_weight; /* [conv_dim, W] */
  gdn_tensor conv_bias;   /* optional [conv_dim] */
  gdn_tensor conv_state;  /* [num_slots, conv_dim, W-1], updated in place */
  gdn_tensor z;           /* [B, HV, V] or [B, HK, HV/HK, V] */
  gdn_tensor a;           /* [B, HV] or [B, HK, HV/HK] */
  gdn_tensor b;           /* [B, HV] or [B, HK, HV/HK] */
  gdn_tensor A_log;       /* [HV] */
  gdn_tensor dt_bias;     /* [HV] */
  gdn_tensor state;       /* [num_slots, HV, K, V], updated in place */
  gdn_tensor slot_idx;    /* [B] int32, the same slot in both pools (PAD / out of range: skipped) */
  gdn_tensor norm_weight; /* [V] act dtype or F32 */
  gdn_tensor out;         /* [B, HV, V]: fp8_dtype with scales, else out_dtype */
  gdn_tensor scales;      /* optional [B, HV*V/group] F32: present = FP8 group quantisation */
} gdn_decode_step_args;

GDN_API gdn_status gdn_decode_step_workspace_size(gdn_layer layer, int64_t batch, size_t* bytes);
GDN_API gdn_status gdn_decode_step(gdn_layer layer, const gdn_decode_step_args* args, void* workspace,
                                   size_t workspace_bytes, void* stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GDN_H_ */
