// Compile-time typed loads/stores for the hot tensors (activations, state), plus the dtype
// dispatch that picks a kernel instantiation. Conversions come from ../common/numeric.hpp.
#pragma once

#include <type_traits>

#if defined(__CUDACC__) && !defined(__HIPCC__)
#include <cuda_fp8.h>  // hardware e4m3 conversion on sm_89+
#endif

#include "../core/error.hpp"
#include "../core/views.hpp"

namespace gdn::gpu {

template <int32_t DT>
struct Elem;
template <>
struct Elem<GDN_DTYPE_F32> {
  using T = float;
  static GDN_HD float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<float*>(p)[i] = x; }
};
template <>
struct Elem<GDN_DTYPE_BF16> {
  using T = uint16_t;
  static GDN_HD float load(const void* p, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(p)[i]); }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<uint16_t*>(p)[i] = f32_to_bf16(x); }
};
template <>
struct Elem<GDN_DTYPE_F16> {
  using T = uint16_t;
  static GDN_HD float load(const void* p, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(p)[i]); }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<uint16_t*>(p)[i] = f32_to_f16(x); }
};
template <>
struct Elem<GDN_DTYPE_F8_E4M3FN> {
  using T = uint8_t;
  static GDN_HD float load(const void* p, int64_t i) { return e4m3_to_f32<false>(static_cast<const uint8_t*>(p)[i]); }
  static GDN_HD void store(void* p, int64_t i, float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    // cvt.rn.satfinite.e4m3: the same rounding and saturation as f32_to_e4m3 (NaN -> 0x7f).
    if (x == x) {
      static_cast<uint8_t*>(p)[i] = uint8_t(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
      return;
    }
#endif
    static_cast<uint8_t*>(p)[i] = f32_to_e4m3<false>(x);
  }
};
template <>
struct Elem<GDN_DTYPE_F8_E4M3FNUZ> {
  using T = uint8_t;
  static GDN_HD float load(const void* p, int64_t i) { return e4m3_to_f32<true>(static_cast<const uint8_t*>(p)[i]); }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<uint8_t*>(p)[i] = f32_to_e4m3<true>(x); }
};

template <int32_t DT>
using Tag = std::integral_constant<int32_t, DT>;

// f(Tag<dt>{}) for an activation dtype (F32, F16, BF16).
template <class F>
void dispatch_act(int32_t dt, F&& f) {
  switch (dt) {
    case GDN_DTYPE_F32: f(Tag<GDN_DTYPE_F32>{}); return;
    case GDN_DTYPE_F16: f(Tag<GDN_DTYPE_F16>{}); return;
    case GDN_DTYPE_BF16: f(Tag<GDN_DTYPE_BF16>{}); return;
    default: fail(GDN_ERROR_INTERNAL, "no kernel for activation dtype %d", dt);
  }
}
// f(Tag<dt>{}) for a state dtype (F32, BF16).
template <class F>
void dispatch_state(int32_t dt, F&& f) {
  switch (dt) {
    case GDN_DTYPE_F32: f(Tag<GDN_DTYPE_F32>{}); return;
    case GDN_DTYPE_BF16: f(Tag<GDN_DTYPE_BF16>{}); return;
    default: fail(GDN_ERROR_INTERNAL, "no kernel for state dtype %d", dt);
  }
}

}  // namespace gdn::gpu
