// Compile-time typed loads/stores for the hot tensors (activations, state), plus the dtype
// dispatch that picks a kernel instantiation. Conversions come from ../common/numeric.hpp.
#pragma once

#include <type_traits>

#if defined(__CUDACC__) && !defined(__HIPCC__)
#include <cuda_fp8.h>  // hardware e4m3 conversion on sm_89+
#endif

#include "../core/error.hpp"
#include "../core/views.hpp"
#include "portability.hpp"

namespace gdn::gpu {

template <int32_t DT>
struct Elem;

// Four fp8 codes packed little-endian, one encode(x) at a time.
template <class E>
GDN_HD uint32_t encode4_each(const float (&v)[4]) {
  uint32_t x = 0;
  for (int c = 0; c < 4; ++c) x |= uint32_t(E::encode(v[c])) << (8 * c);
  return x;
}
template <>
struct Elem<GDN_DTYPE_F32> {
  using T = float;
  static GDN_HD float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<float*>(p)[i] = x; }
};
// bf16 / fp16 codes of two floats by one hardware conversion where it gives the portable code's
// bits (NVIDIA sm_80+: cvt.rn rounds to nearest even, overflows to infinity and keeps subnormals,
// as f32_to_bf16 / f32_to_f16 do); a NaN's code is then replaced, without a branch, by the portable
// quiet NaN (sign and payload kept).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(__HIPCC__)
#define GDN_HW_CVT16 1
#endif
// Two 16-bit codes in one word, lo in the low half.
GDN_HD uint32_t pack_codes(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }
// The hardware pair `hw` of (x0, x1) with each NaN's code replaced by nan(its bits).
GDN_HD uint32_t patch_nans(uint32_t hw, float x0, float x1, uint16_t (*nan)(uint32_t)) {
  hw = x0 == x0 ? hw : (hw & 0xffff0000u) | nan(f32_bits(x0));
  return x1 == x1 ? hw : (hw & 0xffffu) | (uint32_t(nan(f32_bits(x1))) << 16);
}
template <>
struct Elem<GDN_DTYPE_BF16> {
  using T = uint16_t;
  static GDN_HD float load(const void* p, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(p)[i]); }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<uint16_t*>(p)[i] = uint16_t(encode2(x, x)); }
  static GDN_HD uint16_t encode(float x) { return f32_to_bf16(x); }
  // The codes of x0 (low half) and x1.
  static GDN_HD uint32_t encode2(float x0, float x1) {
#if defined(GDN_HW_CVT16)
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(x1), "f"(x0));
    return patch_nans(r, x0, x1, bf16_nan);
#else
    return pack_codes(f32_to_bf16(x0), f32_to_bf16(x1));
#endif
  }
};
template <>
struct Elem<GDN_DTYPE_F16> {
  using T = uint16_t;
  static GDN_HD float load(const void* p, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(p)[i]); }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<uint16_t*>(p)[i] = uint16_t(encode2(x, x)); }
  static GDN_HD uint16_t encode(float x) { return f32_to_f16(x); }
  static GDN_HD uint32_t encode2(float x0, float x1) {
#if defined(GDN_HW_CVT16)
    uint32_t r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(x1), "f"(x0));
    return patch_nans(r, x0, x1, f16_nan);
#else
    return pack_codes(f32_to_f16(x0), f32_to_f16(x1));
#endif
  }
};
template <>
struct Elem<GDN_DTYPE_F8_E4M3FN> {
  using T = uint8_t;
  static GDN_HD float load(const void* p, int64_t i) { return e4m3_to_f32<false>(static_cast<const uint8_t*>(p)[i]); }
  static GDN_HD uint8_t encode(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    // cvt.rn.satfinite.e4m3: the same rounding and saturation as f32_to_e4m3 (NaN -> 0x7f).
    if (x == x) return uint8_t(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
#endif
    return f32_to_e4m3<false>(x);
  }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<uint8_t*>(p)[i] = encode(x); }
  // Four codes packed little-endian (two cvt.rn.satfinite.e4m3x2 on sm_89+ when none is NaN).
  static GDN_HD uint32_t encode4(const float (&v)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    if (v[0] == v[0] && v[1] == v[1] && v[2] == v[2] && v[3] == v[3]) {
      const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(v[0], v[1]), __NV_SATFINITE, __NV_E4M3);
      const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(v[2], v[3]), __NV_SATFINITE, __NV_E4M3);
      return lo | (hi << 16);
    }
#endif
    return encode4_each<Elem>(v);
  }
};
template <>
struct Elem<GDN_DTYPE_F8_E4M3FNUZ> {
  using T = uint8_t;
  static GDN_HD float load(const void* p, int64_t i) { return e4m3_to_f32<true>(static_cast<const uint8_t*>(p)[i]); }
  static GDN_HD uint8_t encode(float x) { return f32_to_e4m3<true>(x); }
  static GDN_HD void store(void* p, int64_t i, float x) { static_cast<uint8_t*>(p)[i] = encode(x); }
  static GDN_HD uint32_t encode4(const float (&v)[4]) { return encode4_each<Elem>(v); }
};

// Element i of a row as stored (no conversion) and its value: a kernel that loads raw values and
// converts them later has the loads in flight meanwhile, where a conversion next to a conditional
// load makes the thread wait for it there.
template <int32_t DT>
GDN_HD typename Elem<DT>::T load_raw(const void* p, int64_t i) {
  return static_cast<const typename Elem<DT>::T*>(p)[i];
}
template <int32_t DT>
GDN_HD float raw_to_float(typename Elem<DT>::T x) {
  if constexpr (DT == GDN_DTYPE_F32)
    return x;
  else
    return bits_to_float(uint32_t(x), DT);
}

// Four consecutive elements [j, j+4) of a row through one vector access (16 bytes for f32, 8 for
// 2-byte types, 4 for fp8); the caller guarantees alignment (row start and j multiples of 4
// elements, base aligned to 4 elements).
template <int32_t DT>
struct Vec4 {
  // The four elements as stored (float4 for f32, one 8-byte word for 2-byte types): raw() loads
  // them (j: a multiple of 4, int as the norm kernel indexes its weight), convert() turns them into
  // floats later, so a kernel can issue the load early and wait for it only where it converts.
  using Raw = std::conditional_t<DT == GDN_DTYPE_F32, float4, uint2>;
  static __device__ __forceinline__ Raw raw(const void* row, int j) {
    static_assert(DT == GDN_DTYPE_F32 || sizeof(typename Elem<DT>::T) == 2, "f32 and 2-byte types only");
    return static_cast<const Raw*>(row)[j / 4];
  }
  static __device__ __forceinline__ void convert(const Raw& x, float (&v)[4]) {
    if constexpr (DT == GDN_DTYPE_F32) {
      v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
    } else {
      const uint16_t h[4] = {uint16_t(x.x & 0xffffu), uint16_t(x.x >> 16), uint16_t(x.y & 0xffffu),
                             uint16_t(x.y >> 16)};
      for (int c = 0; c < 4; ++c) v[c] = Elem<DT>::load(h, c);
    }
  }
  // raw() and convert() at once (any j, a multiple of 4).
  static __device__ __forceinline__ void load(const void* row, int64_t j, float (&v)[4]) {
    static_assert(DT == GDN_DTYPE_F32 || sizeof(typename Elem<DT>::T) == 2, "f32 and 2-byte types only");
    convert(*reinterpret_cast<const Raw*>(static_cast<const typename Elem<DT>::T*>(row) + j), v);
  }
  static __device__ __forceinline__ void store(void* row, int64_t j, const float (&v)[4]) {
    if constexpr (DT == GDN_DTYPE_F32) {
      *reinterpret_cast<float4*>(static_cast<float*>(row) + j) = make_float4(v[0], v[1], v[2], v[3]);
    } else if constexpr (sizeof(typename Elem<DT>::T) == 1) {
      *reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(row) + j) = Elem<DT>::encode4(v);
    } else {
      *reinterpret_cast<uint2*>(static_cast<uint16_t*>(row) + j) = pack(v);
    }
  }
  // 2-byte types: the four elements as they lie in memory (one 8-byte word).
  static __device__ __forceinline__ uint2 pack(const float (&v)[4]) {
    static_assert(sizeof(typename Elem<DT>::T) == 2, "2-byte types only");
    // The portable code, not encode2: on the H100 the hardware pairs made the bf16-state decode 4-7 %
    // faster at B <= 32 but 4-10 % slower at B >= 128 (perf notes, session 13).
    return make_uint2(pack_codes(Elem<DT>::encode(v[0]), Elem<DT>::encode(v[1])),
                      pack_codes(Elem<DT>::encode(v[2]), Elem<DT>::encode(v[3])));
  }
};

// Every head row of v starts on a multiple of n elements (base pointer and all strides), as
// n-element vector accesses need.
inline bool head_rows_aligned(const HeadView& v, int64_t n) {
  return reinterpret_cast<uintptr_t>(v.p) % (n * dtype_bytes(v.dt)) == 0 && v.s0 % n == 0 && v.s1 % n == 0 &&
         v.s_grp % n == 0 && v.s_in % n == 0;
}
// Every state row (slot, head, k) starts at a multiple of n elements.
inline bool state_rows_aligned(const StateView& v, int64_t n) {
  return reinterpret_cast<uintptr_t>(v.p) % (n * dtype_bytes(v.dt)) == 0 && v.s_k % n == 0 && v.s_h % n == 0 &&
         v.s_slot % n == 0;
}
// Token range [start, end) of sequence n of a cu_seqlens view, clamped to 0 <= start <= end <= T:
// the host cannot check cu_seqlens (it never reads device memory), so malformed values must still
// keep every access inside the token views (the prefill's and the conv prefill's kernels).
__device__ inline void clamped_seq_range(const VecView& cu, int64_t T, int64_t n, int64_t& start, int64_t& end) {
  start = cu.idx(n);
  end = cu.idx(n + 1);
  start = start < 0 ? 0 : (start > T ? T : start);
  end = end < start ? start : (end > T ? T : end);
}
// v is contiguous and starts on a multiple of n elements (n-element vector loads from its start).
inline bool vec_contiguous_aligned(const VecView& v, int64_t n) {
  return v.s == 1 && reinterpret_cast<uintptr_t>(v.p) % (n * dtype_bytes(v.dt)) == 0;
}

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
