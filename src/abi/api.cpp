// The C ABI: status strings, version, contexts and layers. Op entry points are in ops.cpp.
#include <cmath>
#include <cstdio>
#include <new>

#include "checks.hpp"
#include "handles.hpp"

#define GDN_STR2(x) #x
#define GDN_STR(x) GDN_STR2(x)

namespace gdn {
namespace {
thread_local char g_last_error[512];
}
void set_last_error(const char* message) { std::snprintf(g_last_error, sizeof g_last_error, "%s", message); }
const char* last_error() { return g_last_error; }
}  // namespace gdn

using namespace gdn;

extern "C" {

GDN_API const char* gdn_status_string(gdn_status status) {
  switch (status) {
    case GDN_SUCCESS: return "GDN_SUCCESS: success";
    case GDN_ERROR_INVALID_ARGUMENT: return "GDN_ERROR_INVALID_ARGUMENT: an argument is out of its allowed range";
    case GDN_ERROR_NULL_POINTER: return "GDN_ERROR_NULL_POINTER: a required pointer is NULL";
    case GDN_ERROR_BAD_DTYPE: return "GDN_ERROR_BAD_DTYPE: a tensor has a dtype this operation does not take";
    case GDN_ERROR_BAD_SHAPE: return "GDN_ERROR_BAD_SHAPE: a tensor's rank or sizes do not match";
    case GDN_ERROR_BAD_STRIDE: return "GDN_ERROR_BAD_STRIDE: a tensor's strides are not supported";
    case GDN_ERROR_MISALIGNED: return "GDN_ERROR_MISALIGNED: a pointer is not aligned to its element size";
    case GDN_ERROR_ALIASING: return "GDN_ERROR_ALIASING: an output overlaps another tensor";
    case GDN_ERROR_WORKSPACE_TOO_SMALL: return "GDN_ERROR_WORKSPACE_TOO_SMALL: the workspace is too small";
    case GDN_ERROR_SIZE_OVERFLOW: return "GDN_ERROR_SIZE_OVERFLOW: sizes overflow";
    case GDN_ERROR_UNSUPPORTED: return "GDN_ERROR_UNSUPPORTED: not supported by this build or backend";
    case GDN_ERROR_BACKEND_UNAVAILABLE: return "GDN_ERROR_BACKEND_UNAVAILABLE: backend not built or no device";
    case GDN_ERROR_BAD_VERSION: return "GDN_ERROR_BAD_VERSION: struct_size does not match this library";
    case GDN_ERROR_DEVICE: return "GDN_ERROR_DEVICE: the GPU runtime reported an error";
    case GDN_ERROR_OUT_OF_MEMORY: return "GDN_ERROR_OUT_OF_MEMORY: out of memory";
    case GDN_ERROR_INTERNAL: return "GDN_ERROR_INTERNAL: internal error";
  }
  return "GDN_ERROR_UNKNOWN: unknown status code";
}

GDN_API const char* gdn_last_error_message(void) { return last_error(); }

GDN_API void gdn_version(int* major, int* minor, int* patch) {
  if (major) *major = GDN_VERSION_MAJOR;
  if (minor) *minor = GDN_VERSION_MINOR;
  if (patch) *patch = GDN_VERSION_PATCH;
}

GDN_API const char* gdn_version_string(void) {
  return GDN_STR(GDN_VERSION_MAJOR) "." GDN_STR(GDN_VERSION_MINOR) "." GDN_STR(GDN_VERSION_PATCH);
}

GDN_API size_t gdn_dtype_size(gdn_dtype dtype) { return size_t(dtype_bytes(dtype)); }

GDN_API const char* gdn_dtype_name(gdn_dtype dtype) {
  switch (dtype) {
    case GDN_DTYPE_INVALID: return "invalid";
    case GDN_DTYPE_F32: return "f32";
    case GDN_DTYPE_F16: return "f16";
    case GDN_DTYPE_BF16: return "bf16";
    case GDN_DTYPE_F8_E4M3FN: return "f8_e4m3fn";
    case GDN_DTYPE_F8_E4M3FNUZ: return "f8_e4m3fnuz";
    case GDN_DTYPE_I32: return "i32";
    case GDN_DTYPE_I64: return "i64";
    case GDN_DTYPE_BOOL: return "bool";
  }
  return "unknown";
}

GDN_API int gdn_backend_compiled(gdn_backend backend) {
  switch (backend) {
    case GDN_BACKEND_AUTO:
    case GDN_BACKEND_CPU: return 1;
#if defined(GDN_WITH_CUDA)
    case GDN_BACKEND_CUDA: return 1;
#endif
#if defined(GDN_WITH_HIP)
    case GDN_BACKEND_HIP: return 1;
#endif
    default: return 0;
  }
}

GDN_API void gdn_context_config_init(gdn_context_config* config) {
  if (!config) return;
  *config = gdn_context_config{};
  config->struct_size = sizeof *config;
  config->backend = GDN_BACKEND_AUTO;
}

GDN_API gdn_status gdn_context_create(const gdn_context_config* config, gdn_context* out) {
  return guarded([&] {
    if (out == nullptr) fail(GDN_ERROR_NULL_POINTER, "out is NULL");
    const gdn_context_config c = read_versioned(config, "gdn_context_config");
    if (c.num_threads < 0) fail(GDN_ERROR_INVALID_ARGUMENT, "num_threads = %d must be >= 0", c.num_threads);
    if (c.device < 0) fail(GDN_ERROR_INVALID_ARGUMENT, "device = %d must be >= 0", c.device);
    std::unique_ptr<gdn_context_s> ctx(new gdn_context_s{GDN_BACKEND_CPU, c.device, nullptr});
    switch (c.backend) {
      case GDN_BACKEND_AUTO:
      case GDN_BACKEND_CUDA:
      case GDN_BACKEND_HIP: {
#if defined(GDN_WITH_GPU)
        const gdn_backend built = gdn_backend_compiled(GDN_BACKEND_CUDA) ? GDN_BACKEND_CUDA : GDN_BACKEND_HIP;
        if (c.backend == GDN_BACKEND_AUTO || c.backend == built) {
          ctx->impl.reset(make_gpu_backend(c.device));
          if (ctx->impl) {
            ctx->backend = built;
            break;
          }
          if (c.backend != GDN_BACKEND_AUTO)
            fail(GDN_ERROR_BACKEND_UNAVAILABLE, "no %s device with ordinal %d", built == GDN_BACKEND_CUDA ? "CUDA" : "HIP",
                 c.device);
        }
#endif
        if (c.backend != GDN_BACKEND_AUTO)
          fail(GDN_ERROR_BACKEND_UNAVAILABLE, "backend %s is not compiled into this libgdn",
               c.backend == GDN_BACKEND_CUDA ? "CUDA" : "HIP");
        ctx->impl.reset(make_cpu_backend(c.num_threads));
        break;
      }
      case GDN_BACKEND_CPU: ctx->impl.reset(make_cpu_backend(c.num_threads)); break;
      default: fail(GDN_ERROR_INVALID_ARGUMENT, "backend = %d is not a gdn_backend", c.backend);
    }
    ctx->backend = ctx->impl->kind();
    *out = ctx.release();
  });
}

GDN_API gdn_status gdn_context_destroy(gdn_context ctx) {
  return guarded([&] { delete ctx; });
}

GDN_API gdn_status gdn_context_backend(gdn_context ctx, gdn_backend* out) {
  return guarded([&] {
    if (!ctx || !out) fail(GDN_ERROR_NULL_POINTER, "ctx or out is NULL");
    *out = ctx->backend;
  });
}

GDN_API gdn_status gdn_context_num_threads(gdn_context ctx, int32_t* out) {
  return guarded([&] {
    if (!ctx || !out) fail(GDN_ERROR_NULL_POINTER, "ctx or out is NULL");
    *out = ctx->impl->num_threads();
  });
}

GDN_API void gdn_layer_config_init(gdn_layer_config* c) {
  if (!c) return;
  *c = gdn_layer_config{};
  c->struct_size = sizeof *c;
  c->num_k_heads = 16;
  c->num_v_heads = 32;
  c->head_k_dim = 128;
  c->head_v_dim = 128;
  c->conv_width = 4;
  c->conv_activation = GDN_ACTIVATION_SILU;
  c->act_dtype = GDN_DTYPE_BF16;
  c->state_dtype = GDN_DTYPE_F32;
  c->out_dtype = GDN_DTYPE_BF16;
  c->fp8_dtype = GDN_DTYPE_F8_E4M3FN;
  c->fp8_group_size = 128;
  c->input_layout = GDN_LAYOUT_PLAIN;
  c->use_qk_l2norm = 1;
  c->scale = 0.0f;
  c->norm_eps = 1e-6f;
  c->prefill_precision = GDN_PRECISION_FP32;
}

GDN_API gdn_status gdn_layer_create(gdn_context ctx, const gdn_layer_config* config, gdn_layer* out) {
  return guarded([&] {
    if (!ctx) fail(GDN_ERROR_NULL_POINTER, "ctx is NULL");
    if (!out) fail(GDN_ERROR_NULL_POINTER, "out is NULL");
    const gdn_layer_config c = read_versioned(config, "gdn_layer_config");
    constexpr int32_t kMaxDim = 1024, kMaxHeads = 1 << 16;
    auto in_range = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
      if (v < lo || v > hi)
        fail(GDN_ERROR_INVALID_ARGUMENT, "%s = %lld, expected %lld..%lld", name, (long long)v, (long long)lo,
             (long long)hi);
    };
    in_range("num_k_heads", c.num_k_heads, 1, kMaxHeads);
    in_range("num_v_heads", c.num_v_heads, 1, kMaxHeads);
    if (c.num_v_heads % c.num_k_heads != 0)
      fail(GDN_ERROR_INVALID_ARGUMENT, "num_v_heads = %d is not a multiple of num_k_heads = %d", c.num_v_heads,
           c.num_k_heads);
    in_range("head_k_dim", c.head_k_dim, 1, kMaxDim);
    in_range("head_v_dim", c.head_v_dim, 1, kMaxDim);
    in_range("conv_width", c.conv_width, 1, 8);
    if (c.conv_activation != GDN_ACTIVATION_NONE && c.conv_activation != GDN_ACTIVATION_SILU)
      fail(GDN_ERROR_INVALID_ARGUMENT, "conv_activation = %d is not a gdn_activation", c.conv_activation);
    auto dtype_in = [](const char* name, int32_t dt, std::initializer_list<int32_t> ok) {
      for (int32_t d : ok)
        if (d == dt) return;
      fail(GDN_ERROR_BAD_DTYPE, "%s = %s is not allowed here", name, gdn_dtype_name(gdn_dtype(dt)));
    };
    if (c.prefill_precision != GDN_PRECISION_FP32 && c.prefill_precision != GDN_PRECISION_BF16)
      fail(GDN_ERROR_INVALID_ARGUMENT, "prefill_precision = %d is not a gdn_precision", c.prefill_precision);
    dtype_in("act_dtype", c.act_dtype, {GDN_FLOAT_TYPES});
    dtype_in("state_dtype", c.state_dtype, {GDN_DTYPE_F32, GDN_DTYPE_BF16});
    dtype_in("out_dtype", c.out_dtype, {GDN_FLOAT_TYPES});
    dtype_in("fp8_dtype", c.fp8_dtype, {GDN_DTYPE_F8_E4M3FN, GDN_DTYPE_F8_E4M3FNUZ});
    const int64_t channels = int64_t(c.num_v_heads) * c.head_v_dim;
    if (c.fp8_group_size < 1 || channels % c.fp8_group_size != 0)
      fail(GDN_ERROR_INVALID_ARGUMENT, "fp8_group_size = %d must be >= 1 and divide num_v_heads*head_v_dim = %lld",
           c.fp8_group_size, (long long)channels);
    if (c.input_layout != GDN_LAYOUT_PLAIN && c.input_layout != GDN_LAYOUT_GROUPED)
      fail(GDN_ERROR_INVALID_ARGUMENT, "input_layout = %d is not a gdn_input_layout", c.input_layout);
    if (!std::isfinite(c.scale) || c.scale < 0.0f)
      fail(GDN_ERROR_INVALID_ARGUMENT, "scale = %g must be finite and >= 0 (0 = head_k_dim^-0.5)", double(c.scale));
    if (!std::isfinite(c.norm_eps) || c.norm_eps < 0.0f)
      fail(GDN_ERROR_INVALID_ARGUMENT, "norm_eps = %g must be finite and >= 0", double(c.norm_eps));
    const LayerDims d = LayerDims{c.num_k_heads, c.num_v_heads, c.head_k_dim, c.head_v_dim, c.conv_width,
                                  c.input_layout, {}, {}, {}}.with_divisors();
    ctx->impl->check_layer(d, c);
    const float scale = c.scale > 0.0f ? c.scale : 1.0f / std::sqrt(float(c.head_k_dim));
    *out = new gdn_layer_s{ctx, c, d, scale};
  });
}

GDN_API gdn_status gdn_layer_destroy(gdn_layer layer) {
  return guarded([&] { delete layer; });
}

GDN_API gdn_status gdn_layer_conv_dim(gdn_layer layer, int64_t* conv_dim) {
  return guarded([&] {
    const gdn_layer_s& l = layer_ref(layer);
    if (!conv_dim) fail(GDN_ERROR_NULL_POINTER, "conv_dim is NULL");
    *conv_dim = l.dims.conv_dim();
  });
}

}  // extern "C"
