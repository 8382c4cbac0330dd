#include <cstring>

#include "kernels.hpp"

namespace gdn::cpu {

void load_row(const void* src, int32_t dt, int64_t n, float* dst) {
  switch (dt) {
    case GDN_DTYPE_F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case GDN_DTYPE_BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case GDN_DTYPE_F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    default: {
      const char* s = static_cast<const char*>(src);
      const int es = dtype_bytes(dt);
      for (int64_t i = 0; i < n; ++i) dst[i] = load_float(s + i * es, dt);
    }
  }
}

void store_row(void* dst, int32_t dt, int64_t n, const float* src) {
  switch (dt) {
    case GDN_DTYPE_F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case GDN_DTYPE_BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case GDN_DTYPE_F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case GDN_DTYPE_F8_E4M3FN: {
      uint8_t* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_e4m3_rows<false>(src[i]);
      return;
    }
    case GDN_DTYPE_F8_E4M3FNUZ: {
      uint8_t* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_e4m3_rows<true>(src[i]);
      return;
    }
    default: {
      char* d = static_cast<char*>(dst);
      const int es = dtype_bytes(dt);
      for (int64_t i = 0; i < n; ++i) store_float(d + i * es, dt, src[i]);
    }
  }
}

void gather_row(const void* src, int32_t dt, const int64_t* cols, int64_t n, float* dst) {
  switch (dt) {
    case GDN_DTYPE_F32: {
      const float* s = static_cast<const float*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = s[cols[i]];
      return;
    }
    case GDN_DTYPE_BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[cols[i]]);
      return;
    }
    default: {
      const char* s = static_cast<const char*>(src);
      const int es = dtype_bytes(dt);
      for (int64_t i = 0; i < n; ++i) dst[i] = load_float(s + cols[i] * es, dt);
    }
  }
}

void zero_row(void* dst, int32_t dt, int64_t n) { std::memset(dst, 0, size_t(n) * size_t(dtype_bytes(dt))); }

}  // namespace gdn::cpu
