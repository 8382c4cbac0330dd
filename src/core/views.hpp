// Validated, normalised descriptions of an op's operands. Plain structs, passed by value to the
// CPU loops and to GPU kernels alike. All strides are in elements.
#pragma once

#include <cstdint>

#include "gdn.h"
#include "../common/numeric.hpp"

namespace gdn {

// Branch-free (GPU address math calls this per access): one nibble per dtype code 0..8.
GDN_HD int dtype_bytes(int32_t dt) {
  static_assert(GDN_DTYPE_F32 == 1 && GDN_DTYPE_F16 == 2 && GDN_DTYPE_BF16 == 3 && GDN_DTYPE_F8_E4M3FN == 4 &&
                    GDN_DTYPE_F8_E4M3FNUZ == 5 && GDN_DTYPE_I32 == 6 && GDN_DTYPE_I64 == 7 && GDN_DTYPE_BOOL == 8,
                "dtype codes");
  return dt >= 0 && dt <= 8 ? int((0x184112240ull >> (4 * dt)) & 15u) : 0;
}

// One float-ish element of a runtime dtype (F32, F16, BF16, FP8) in two steps: load_bits only
// loads (the element's bits, zero-extended), bits_to_float converts. A GPU kernel that issues
// several load_bits before converting any has them all in flight at once; load_float, both at
// once, makes each call wait for its load.
GDN_HD uint32_t load_bits(const void* p, int32_t dt) {
  const int n = dtype_bytes(dt);
  if (n == 4) return *static_cast<const uint32_t*>(p);
  if (n == 2) return *static_cast<const uint16_t*>(p);
  return n == 1 ? *static_cast<const uint8_t*>(p) : 0u;
}
GDN_HD float bits_to_float(uint32_t x, int32_t dt) {
  switch (dt) {
    case GDN_DTYPE_F32: return bits_f32(x);
    case GDN_DTYPE_F16: return f16_to_f32(uint16_t(x));
    case GDN_DTYPE_BF16: return bf16_to_f32(uint16_t(x));
    case GDN_DTYPE_F8_E4M3FN: return e4m3_to_f32<false>(uint8_t(x));
    case GDN_DTYPE_F8_E4M3FNUZ: return e4m3_to_f32<true>(uint8_t(x));
    default: return 0.0f;
  }
}
GDN_HD float load_float(const void* p, int32_t dt) { return bits_to_float(load_bits(p, dt), dt); }
// Stores one element of a runtime dtype (F32, F16, BF16, FP8).
GDN_HD void store_float(void* p, int32_t dt, float x) {
  switch (dt) {
    case GDN_DTYPE_F32: *static_cast<float*>(p) = x; break;
    case GDN_DTYPE_F16: *static_cast<uint16_t*>(p) = f32_to_f16(x); break;
    case GDN_DTYPE_BF16: *static_cast<uint16_t*>(p) = f32_to_bf16(x); break;
    case GDN_DTYPE_F8_E4M3FN: *static_cast<uint8_t*>(p) = f32_to_e4m3<false>(x); break;
    case GDN_DTYPE_F8_E4M3FNUZ: *static_cast<uint8_t*>(p) = f32_to_e4m3<true>(x); break;
    default: break;
  }
}
GDN_HD float fp8_max(int32_t dt) { return dt == GDN_DTYPE_F8_E4M3FNUZ ? 240.0f : 448.0f; }

// Integer element (I32, I64, BOOL).
GDN_HD int64_t load_index(const void* p, int32_t dt) {
  switch (dt) {
    case GDN_DTYPE_I32: return *static_cast<const int32_t*>(p);
    case GDN_DTYPE_I64: return *static_cast<const int64_t*>(p);
    case GDN_DTYPE_BOOL: return *static_cast<const uint8_t*>(p) != 0;
    default: return 0;
  }
}

// A tensor of per-head vectors (D > 1) or per-head scalars (D == 1) with up to two leading dims.
// Value head h lives at (h / r) * s_grp + (h % r) * s_in; a plain [.., H, D] tensor has r = 1.
struct HeadView {
  char* p = nullptr;
  int32_t dt = GDN_DTYPE_INVALID;
  FastDiv r;  // 1 unless grouped
  int64_t s0 = 0, s1 = 0;  // leading strides (B / T, Tn)
  int64_t s_grp = 0, s_in = 0;
  GDN_HD bool present() const { return p != nullptr; }
  GDN_HD char* at(int64_t i0, int64_t i1, int64_t h) const {
    const uint32_t hh = uint32_t(h), grp = r.div(hh), in = hh - grp * r.d;  // heads < 2^16
    return p + int64_t(dtype_bytes(dt)) * (i0 * s0 + i1 * s1 + int64_t(grp) * s_grp + int64_t(in) * s_in);
  }
};

// A 1-D vector of floats or indices with a stride.
struct VecView {
  char* p = nullptr;
  int32_t dt = GDN_DTYPE_INVALID;
  int64_t n = 0, s = 0;
  GDN_HD bool present() const { return p != nullptr; }
  GDN_HD char* at(int64_t i) const { return p + int64_t(dtype_bytes(dt)) * i * s; }
  GDN_HD float f(int64_t i) const { return load_float(at(i), dt); }
  GDN_HD uint32_t bits(int64_t i) const { return load_bits(at(i), dt); }  // f(i) == bits_to_float(bits(i), dt)
  // f(i0), ..., f(i0 + N - 1) with one dispatch on the dtype for all N (a GPU thread calling f
  // per element ran ~50 instructions an element, its dtype switch and address math, before the
  // next load was issued).
  template <int N>
  GDN_HD void load_n(int64_t i0, float (&out)[N]) const {
    switch (dt) {
      case GDN_DTYPE_F32:
        for (int e = 0; e < N; ++e) out[e] = reinterpret_cast<const float*>(p)[(i0 + e) * s];
        break;
      case GDN_DTYPE_BF16:
        for (int e = 0; e < N; ++e) out[e] = bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[(i0 + e) * s]);
        break;
      case GDN_DTYPE_F16:
        for (int e = 0; e < N; ++e) out[e] = f16_to_f32(reinterpret_cast<const uint16_t*>(p)[(i0 + e) * s]);
        break;
      default:
        for (int e = 0; e < N; ++e) out[e] = f(i0 + e);
    }
  }
  GDN_HD int64_t idx(int64_t i) const { return load_index(at(i), dt); }
};

// A 2-D view (rows x cols) with arbitrary strides.
struct MatView {
  char* p = nullptr;
  int32_t dt = GDN_DTYPE_INVALID;
  int64_t rows = 0, cols = 0, s_row = 0, s_col = 0;
  GDN_HD bool present() const { return p != nullptr; }
  GDN_HD char* at(int64_t i, int64_t j) const { return p + int64_t(dtype_bytes(dt)) * (i * s_row + j * s_col); }
};

// State pool [num_slots, H, K, V] with unit stride on V.
struct StateView {
  char* p = nullptr;
  int32_t dt = GDN_DTYPE_INVALID;
  int64_t num_slots = 0, s_slot = 0, s_h = 0, s_k = 0;
  GDN_HD char* at(int64_t slot, int64_t h, int64_t i) const {
    return p + int64_t(dtype_bytes(dt)) * (slot * s_slot + h * s_h + i * s_k);
  }
};

// Conv state pool [num_slots, C, W-1].
struct ConvStateView {
  char* p = nullptr;
  int32_t dt = GDN_DTYPE_INVALID;
  int64_t num_slots = 0, s_slot = 0, s_c = 0, s_w = 0;
  GDN_HD char* at(int64_t slot, int64_t c, int64_t j) const {
    return p + int64_t(dtype_bytes(dt)) * (slot * s_slot + c * s_c + j * s_w);
  }
};

struct LayerDims {
  int64_t HK, HV, K, V, W;
  int32_t layout;  // gdn_input_layout
  FastDiv k_div, rv_div, hv_div;  // K, (HV / HK) V and HV (set by with_divisors)
  // The dims with their divisors set (what the layer holds).
  LayerDims with_divisors() const {
    LayerDims d = *this;
    d.k_div = FastDiv(uint32_t(K));
    d.rv_div = FastDiv(uint32_t(HV / HK * V));
    d.hv_div = FastDiv(uint32_t(HV));
    return d;
  }
  GDN_HD int64_t conv_dim() const { return 2 * HK * K + HV * V; }
  GDN_HD int64_t qkvz_dim() const { return 2 * HK * K + 2 * HV * V; }
  // Column of conv channel c inside an input row (channels < 2^31: the layer checks).
  GDN_HD int64_t conv_column(int64_t c) const {
    if (layout == GDN_LAYOUT_PLAIN) return c;
    const int64_t rV = rv_div.d, G = 2 * K + 2 * rV;
    if (c < 2 * HK * K) {  // q (heads 0 .. HK-1), then k
      const bool isk = c >= HK * K;
      const uint32_t ck = uint32_t(isk ? c - HK * K : c), head = k_div.div(ck);
      return int64_t(head) * G + (isk ? K : 0) + (ck - head * uint32_t(K));
    }
    const uint32_t cv = uint32_t(c - 2 * HK * K), grp = rv_div.div(cv);  // v: key-head group
    return int64_t(grp) * G + 2 * K + (cv - grp * uint32_t(rV));
  }
};

// Conv input/output rows are addressed by (sequence, token): update uses (b, t), prefill (0, t).
// Columns have unit stride.
struct RowView {
  char* p = nullptr;
  int32_t dt = GDN_DTYPE_INVALID;
  int64_t s_seq = 0, s_tok = 0;
  GDN_HD char* at(int64_t seq, int64_t tok, int64_t col) const {
    return p + int64_t(dtype_bytes(dt)) * (seq * s_seq + tok * s_tok + col);
  }
};

struct ConvProblem {
  LayerDims d;
  int32_t silu;
  RowView x, out;
  MatView weight;  // [conv_dim, W]
  VecView bias;    // optional
  ConvStateView state;
  // update: num_seqs = B, tokens_per_seq = Tn; prefill: num_seqs = N, tokens_per_seq = T (all
  // rows), each sequence's rows from cu_seqlens.
  int64_t num_seqs, tokens_per_seq;
  VecView cu_seqlens, slot_idx, has_initial;
  // GPU, decode step: let the next kernel (the step's decode) launch as soon as this one has
  // waited for the work before it (programmatic dependent launch).
  bool release_early;
};

struct GdnProblem {
  LayerDims d;
  bool l2norm;
  bool bf16_products;  // GDN_PRECISION_BF16: products on bf16 operands where a kernel has them (prefill)
  float scale;
  HeadView q, k, v, a, b, g, beta, out;
  VecView A_log, dt_bias;
  StateView state;
  // decode: B sequences of Tn tokens each (leading dims [B, Tn]);
  // prefill: leading dims [T], sequences from cu_seqlens.
  int64_t num_seqs, tokens_per_seq, num_tokens;
  VecView cu_seqlens, has_initial, num_accepted;
  MatView slot_idx;  // decode: [B, 1] or [B, Tn]; prefill: [N, 1]
  bool per_token_slots;  // decode with a [B, Tn] slot_idx (speculative decoding)
  bool raw_gate;         // a, b, A_log, dt_bias given (else g, beta)
  // GPU, decode step: the previous kernel on the stream is the step's conv_update, which released
  // this one only after waiting for all earlier work, and writes neither the slot indices nor the
  // state pool: both may be read before waiting for it.
  bool state_ready;
};

struct NormProblem {
  LayerDims d;
  float eps;
  int64_t T;
  HeadView x, z, out;
  VecView weight;
  MatView scales;  // fp8 only
  int64_t group;   // fp8 only
};

}  // namespace gdn
