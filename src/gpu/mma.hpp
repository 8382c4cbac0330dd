// Warp-level tensor-core products (NVIDIA sm_80+) with fp32 accuracy from bf16 inputs: each fp32
// operand is split into hi + lo bf16 (hi = bf16(x), lo = bf16(x - hi): 16 significant bits), and
// a b ~ a_hi b_hi + a_hi b_lo + a_lo b_hi with fp32 accumulation (relative error ~1e-5 per
// product instead of ~4e-3 for plain bf16). An operand that is exact in bf16 (raw bf16
// activations) needs no split: a b ~ a b_hi + a b_lo, two products (load_a1*, mma_mixed).
//
// Operands live in shared memory as 32-bit words of two bf16 along the contraction index, with
// the hi and lo halves in two arrays of the same layout. Fragments are those of
// mma.m16n8k16.row.col (g = lane / 4, t = lane % 4): A (16 x 16, row-major) rows g and g + 8,
// words t and t + 4 of the 16-wide slice; B (16 x 8) stored as B^T (8 rows of n, words along k),
// row g, words t and t + 4; C/D (16 x 8) entries (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
// Row strides of 4 mod 32 words keep the fragment loads free of bank conflicts.
#pragma once

#include <cstdint>

#include "../common/numeric.hpp"
#include "portability.hpp"

#if (defined(__CUDACC__) && !defined(__HIPCC__) && !defined(GDN_WITH_HIP)) || (defined(GDN_GPU_SIM) && !defined(GDN_SIM_HIP))
#define GDN_HAVE_MMA 1
#else
#define GDN_HAVE_MMA 0
#endif

namespace gdn::gpu {

// Two consecutive elements (x0 first) as one word of hi halves and one of lo halves (round to
// nearest even both times; one cvt.rn.bf16x2 each on sm_80+).
__device__ __forceinline__ uint32_t pack_bf16x2(float x0, float x1) {
#if GDN_HAVE_MMA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(x1), "f"(x0));
  return r;
#else
  return uint32_t(f32_to_bf16(x0)) | (uint32_t(f32_to_bf16(x1)) << 16);
#endif
}
__device__ __forceinline__ void split2_bf16(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  hi = pack_bf16x2(x0, x1);
  lo = pack_bf16x2(x0 - bf16_to_f32(uint16_t(hi & 0xffffu)), x1 - bf16_to_f32(uint16_t(hi >> 16)));
}
struct SplitTile {
  const uint32_t* hi;
  const uint32_t* lo;
  int stride;  // words per row
};

#if GDN_HAVE_MMA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define GDN_LDMATRIX 1
// Four 8 x 8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8 (16-byte aligned).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint32_t* row) {
  const unsigned a = unsigned(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const uint32_t* row) {  // lanes 0..15 give rows
  const unsigned a = unsigned(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const uint32_t* row) {
  const unsigned a = unsigned(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
#else
#define GDN_LDMATRIX 0
#endif

// A fragments (hi, lo) of rows r0 .. r0 + 15, contraction words w0 .. w0 + 7 (row strides and
// w0 multiples of 4 words).
__device__ __forceinline__ void load_a(const SplitTile& s, int r0, int w0, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int o = (r0 + lane % 8 + 8 * ((lane / 8) % 2)) * s.stride + w0 + 4 * (lane / 16);
  ldmatrix_x4(hi, s.hi + o);
  ldmatrix_x4(lo, s.lo + o);
#else
  const int g = lane / 4, t = lane % 4;
  const int o0 = (r0 + g) * s.stride + w0 + t, o1 = o0 + 8 * s.stride;
  hi[0] = s.hi[o0], hi[1] = s.hi[o1], hi[2] = s.hi[o0 + 4], hi[3] = s.hi[o1 + 4];
  lo[0] = s.lo[o0], lo[1] = s.lo[o1], lo[2] = s.lo[o0 + 4], lo[3] = s.lo[o1 + 4];
#endif
}
// B fragments (hi, lo) from B^T rows n0 .. n0 + 7, contraction words w0 .. w0 + 7.
__device__ __forceinline__ void load_b(const SplitTile& s, int n0, int w0, uint32_t (&hi)[2], uint32_t (&lo)[2]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int m = lane / 8;  // matrices: hi words w0.., hi w0 + 4.., lo w0.., lo w0 + 4..
  uint32_t r[4];
  ldmatrix_x4(r, (m < 2 ? s.hi : s.lo) + (n0 + lane % 8) * s.stride + w0 + 4 * (m % 2));
  hi[0] = r[0], hi[1] = r[1], lo[0] = r[2], lo[1] = r[3];
#else
  const int g = lane / 4, t = lane % 4;
  const int o = (n0 + g) * s.stride + w0 + t;
  hi[0] = s.hi[o], hi[1] = s.hi[o + 4];
  lo[0] = s.lo[o], lo[1] = s.lo[o + 4];
#endif
}

// A fragments (hi, lo) of A = X^T for X stored row-major ([j][m], words along m): A rows (m)
// m0 .. m0 + 15, contraction (j) j0 .. j0 + 15 (ldmatrix .trans: no transposed copy needed).
__device__ __forceinline__ void load_a_trans(const SplitTile& s, int m0, int j0, uint32_t (&hi)[4],
                                             uint32_t (&lo)[4]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int mat = lane / 8;  // a0: (m0, j0), a1: (m0 + 8, j0), a2: (m0, j0 + 8), a3: (m0 + 8, j0 + 8)
  const int o = (j0 + lane % 8 + 8 * (mat / 2)) * s.stride + m0 / 2 + 4 * (mat % 2);
  ldmatrix_x4_trans(hi, s.hi + o);
  ldmatrix_x4_trans(lo, s.lo + o);
#else
  const int g = lane / 4, t = lane % 4;
  auto half = [&](const uint32_t* w, int j, int m) {  // element (j, m) of X
    return (w[j * s.stride + m / 2] >> (16 * (m % 2))) & 0xffffu;
  };
  for (int r = 0; r < 4; ++r) {
    const int m = m0 + g + 8 * (r % 2), j = j0 + 2 * t + 8 * (r / 2);
    hi[r] = half(s.hi, j, m) | (half(s.hi, j + 1, m) << 16);
    lo[r] = half(s.lo, j, m) | (half(s.lo, j + 1, m) << 16);
  }
#endif
}

// A fragments of a plain bf16 tile (one value, exact in bf16: raw bf16 activations), same layout
// and conditions as load_a / load_a_trans.
__device__ __forceinline__ void load_a1(const uint32_t* w, int stride, int r0, int w0, uint32_t (&a)[4]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  ldmatrix_x4(a, w + (r0 + lane % 8 + 8 * ((lane / 8) % 2)) * stride + w0 + 4 * (lane / 16));
#else
  const int g = lane / 4, t = lane % 4;
  const int o0 = (r0 + g) * stride + w0 + t, o1 = o0 + 8 * stride;
  a[0] = w[o0], a[1] = w[o1], a[2] = w[o0 + 4], a[3] = w[o1 + 4];
#endif
}
__device__ __forceinline__ void load_a1_trans(const uint32_t* w, int stride, int m0, int j0, uint32_t (&a)[4]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int mat = lane / 8;
  ldmatrix_x4_trans(a, w + (j0 + lane % 8 + 8 * (mat / 2)) * stride + m0 / 2 + 4 * (mat % 2));
#else
  const int g = lane / 4, t = lane % 4;
  auto half = [&](int j, int m) { return (w[j * stride + m / 2] >> (16 * (m % 2))) & 0xffffu; };
  for (int r = 0; r < 4; ++r) {
    const int m = m0 + g + 8 * (r % 2), j = j0 + 2 * t + 8 * (r / 2);
    a[r] = half(j, m) | (half(j + 1, m) << 16);
  }
#endif
}

// B fragments of a plain bf16 B^T (one value, no lo half): rows n0 .. n0 + 7, contraction words
// w0 .. w0 + 7.
__device__ __forceinline__ void load_b1(const uint32_t* w, int stride, int n0, int w0, uint32_t (&b)[2]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  ldmatrix_x2(b, w + (n0 + lane % 8) * stride + w0 + 4 * ((lane / 8) % 2));
#else
  const int g = lane / 4, t = lane % 4;
  const int o = (n0 + g) * stride + w0 + t;
  b[0] = w[o], b[1] = w[o + 4];
#endif
}

// B fragments of two n-tiles of a plain bf16 B^T (rows n0 .. n0 + 7 -> b0, n0 + 8 .. n0 + 15 ->
// b1), contraction words w0 .. w0 + 7.
__device__ __forceinline__ void load_b1_pair(const uint32_t* w, int stride, int n0, int w0, uint32_t (&b0)[2],
                                             uint32_t (&b1)[2]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int m = lane / 8;  // matrices: (n0, w0), (n0, w0 + 4), (n0 + 8, w0), (n0 + 8, w0 + 4)
  uint32_t r[4];
  ldmatrix_x4(r, w + (n0 + lane % 8 + 8 * (m / 2)) * stride + w0 + 4 * (m % 2));
  b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
#else
  const int g = lane / 4, t = lane % 4;
  const int o = (n0 + g) * stride + w0 + t;
  b0[0] = w[o], b0[1] = w[o + 4], b1[0] = w[o + 8 * stride], b1[1] = w[o + 8 * stride + 4];
#endif
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if GDN_HAVE_MMA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(GDN_GPU_SIM)
  gdnsim::mma_m16n8k16_bf16(d, a, b);
#else
  (void)d, (void)a, (void)b;
  __builtin_trap();  // never launched: the host picks tensor-core kernels on sm_80+ only
#endif
}

// d += a_hi b_hi and corr += a_lo b_hi + a_hi b_lo (two accumulators: shorter dependency chains;
// the caller adds corr to d at the end).
__device__ __forceinline__ void mma_split(float (&d)[4], float (&corr)[4], const uint32_t (&ahi)[4],
                                          const uint32_t (&alo)[4], const uint32_t (&bhi)[2], const uint32_t (&blo)[2]) {
  mma_bf16(corr, alo, bhi);
  mma_bf16(d, ahi, bhi);
  mma_bf16(corr, ahi, blo);
}

// d += a b_hi and corr += a b_lo for an exact bf16 A (a_lo = 0): fp32 accuracy in two products.
__device__ __forceinline__ void mma_mixed(float (&d)[4], float (&corr)[4], const uint32_t (&a)[4],
                                          const uint32_t (&bhi)[2], const uint32_t (&blo)[2]) {
  mma_bf16(d, a, bhi);
  mma_bf16(corr, a, blo);
}

}  // namespace gdn::gpu
