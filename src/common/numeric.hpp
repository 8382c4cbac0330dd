// Portable scalar conversions and gate math, shared by the CPU backend and the GPU kernels.
// No vendor headers: HIP 5.2 has no dependable bf16/fp8 types, so every conversion is bit-exact
// integer code here (round to nearest even, NaN preserved, fp8 saturating).
#pragma once

#include <cstdint>
#include <cstring>
#include <cmath>

#if defined(__HIPCC__)
#include <hip/hip_runtime.h>  // __host__, __device__, __forceinline__ under hipcc
#endif
#if defined(__CUDACC__) || defined(__HIPCC__)
#define GDN_HD __host__ __device__ __forceinline__
#else
#define GDN_HD inline
#endif

namespace gdn {

// Division by a run-time constant d >= 1 of dividends n < 2^31 with a multiply and a shift
// (Granlund-Montgomery, 31-bit dividends): l = ceil(log2 d), m = ceil(2^(31 + l) / d) < 2^32,
// n / d = umulhi(n, m) >> (l - 1); d = 1 is selected separately. GPU kernels decode item and head
// indices with it: a 32-bit division by a run-time value is ~20 instructions there, this is 3.
struct FastDiv {
  uint32_t d = 1, m = 0, s = 0;  // s = l - 1 (d >= 2)
  FastDiv() = default;
  GDN_HD FastDiv(uint32_t divisor) : d(divisor < 1 ? 1u : divisor) {  // implicit: HeadView{.., r, ..}
    uint32_t l = 0;
    while ((uint64_t(1) << l) < d) ++l;
    if (d > 1) {
      m = uint32_t(((uint64_t(1) << (31 + l)) + d - 1) / d);
      s = l - 1;
    }
  }
  GDN_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
    const uint32_t hi = __umulhi(n, m);
#else
    const uint32_t hi = uint32_t((uint64_t(n) * m) >> 32);
#endif
    return d == 1 ? n : hi >> s;
  }
};

GDN_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
GDN_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// ---- bf16
GDN_HD float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }
// The quiet NaN code of a NaN with bits u (sign and top payload bits kept).
GDN_HD uint16_t bf16_nan(uint32_t u) { return uint16_t((u >> 16) | 0x40u); }
GDN_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_nan(u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// ---- fp16 (IEEE binary16)
// The quiet NaN code of a NaN with bits u (sign and top payload bits kept).
GDN_HD uint16_t f16_nan(uint32_t u) {
  return uint16_t(((u >> 16) & 0x8000u) | 0x7e00u | (((u & 0x7fffffffu) >> 13) & 0x3ffu));
}
GDN_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bits_f32(sign);
    float m = float(man) * (1.0f / 16777216.0f);  // man * 2^-24
    return sign ? -m : m;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}
GDN_HD uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16_nan(u);
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                  // subnormal or zero in fp16
    if (a < 0x33000000u) return sign;                     // < 2^-25: rounds to 0
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;  // 14 + (112 - e) + 1 ... m * 2^(e-150) / 2^-24
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u;  // rebias 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return uint16_t(sign | (r >> 13));
}

// ---- fp8 e4m3: FN (bias 7, max 448, NaN = S.1111.111, no inf) and FNUZ (bias 8, max 240,
// NaN = 0x80, no negative zero). Saturating, round to nearest even.
template <bool FNUZ>
GDN_HD uint8_t f32_to_e4m3(float f) {
  constexpr int kBias = FNUZ ? 8 : 7;
  constexpr float kMax = FNUZ ? 240.0f : 448.0f;
  uint32_t u = f32_bits(f);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return FNUZ ? uint8_t(0x80) : uint8_t(sign | 0x7f);
  float af = bits_f32(a);
  if (af >= kMax) return uint8_t(sign | (FNUZ ? 0x7f : 0x7e));
  // smallest normal 2^(1-bias); below it, step 2^(1-bias-3)
  int e = int(a >> 23) - 127;
  uint32_t code;
  if (e < 1 - kBias) {
    // subnormal: value = m * 2^(1-bias-3), m in 0..7 (8 rounds up to the smallest normal)
    float scaled = af * float(1u << (kBias + 2));  // af / 2^(1-bias-3)
    uint32_t m = uint32_t(scaled);
    float rem = scaled - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    code = m;  // m == 8 is exactly the smallest normal's code (exp 1, man 0)
  } else {
    uint32_t man = a & 0x7fffffu;
    uint32_t m3 = man >> 20, rem = man & 0xfffffu;
    code = (uint32_t(e + kBias) << 3) | m3;
    if (rem > 0x80000u || (rem == 0x80000u && (m3 & 1u))) ++code;
  }
  if (FNUZ && code == 0) return 0;  // no negative zero
  return uint8_t(sign | code);
}
// The same codes as f32_to_e4m3, without branches (selects only), so that a loop over a row
// vectorises (the CPU backend's fp8 rows): normals round by adding the rounding bias to the bits,
// subnormals by the float "magic number" rounding (the default round-to-nearest-even mode).
template <bool FNUZ>
GDN_HD uint8_t f32_to_e4m3_rows(float f) {
  constexpr int kBias = FNUZ ? 8 : 7;
  constexpr float kMax = FNUZ ? 240.0f : 448.0f;
  constexpr uint32_t kMinNormal = uint32_t(127 + 1 - kBias) << 23;  // bits of 2^(1-bias)
  const uint32_t u = f32_bits(f), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
  const float af = bits_f32(a);
  const uint32_t normal = ((a + 0x7ffffu + ((a >> 20) & 1u)) >> 20) - (uint32_t(127 - kBias) << 3);
  const float sub = (af * float(1u << (kBias + 2)) + 8388608.0f) - 8388608.0f;  // m in 0..8
  uint32_t code = a < kMinNormal ? uint32_t(sub) : normal;
  code = af >= kMax ? (FNUZ ? 0x7fu : 0x7eu) : code;
  uint32_t out = (FNUZ && code == 0) ? 0u : (sign | code);
  out = a > 0x7f800000u ? (FNUZ ? 0x80u : (sign | 0x7fu)) : out;
  return uint8_t(out);
}
template <bool FNUZ>
GDN_HD float e4m3_to_f32(uint8_t v) {
  constexpr int kBias = FNUZ ? 8 : 7;
  if (FNUZ ? v == 0x80 : (v & 0x7f) == 0x7f) return bits_f32(0x7fc00000u);
  float s = (v & 0x80) ? -1.0f : 1.0f;
  int e = (v >> 3) & 0xf, m = v & 7;
  if (e == 0) return s * float(m) * ldexpf(1.0f, 1 - kBias - 3);
  return s * (1.0f + float(m) * 0.125f) * ldexpf(1.0f, e - kBias);
}

// ---- gate math (DESIGN.md section 3)
GDN_HD float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
GDN_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
GDN_HD float silu(float x) { return x / (1.0f + expf(-x)); }
GDN_HD float gate_g(float a, float A_log, float dt_bias) { return -expf(A_log) * softplus(a + dt_bias); }

constexpr float kL2NormEps = 1e-6f;

}  // namespace gdn
