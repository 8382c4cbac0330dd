// Brute-force reference for e4m3 rounding: nearest finite code, ties to the even code,
// saturating at the format's max. Independent of the library's bit tricks.
#pragma once

#include <cmath>
#include <cstdint>

namespace gdnt {

inline double e4m3_value(int code, bool fnuz) {
  const int bias = fnuz ? 8 : 7;
  const int e = (code >> 3) & 15, m = code & 7;
  const double s = (code & 0x80) ? -1.0 : 1.0;
  if (e == 0) return s * m * std::ldexp(1.0, 1 - bias - 3);
  return s * (1.0 + m / 8.0) * std::ldexp(1.0, e - bias);
}
inline bool e4m3_is_nan(int code, bool fnuz) { return fnuz ? code == 0x80 : (code & 0x7f) == 0x7f; }

inline double e4m3_round_ref(double x, bool fnuz) {
  const double fmax = fnuz ? 240.0 : 448.0;
  if (x >= fmax) return fmax;
  if (x <= -fmax) return -fmax;
  double best = 0.0, best_err = INFINITY;
  int best_code = 0;
  for (int code = 0; code < 128; ++code) {  // magnitudes only
    if (e4m3_is_nan(code, fnuz)) continue;
    const double v = e4m3_value(code, fnuz), err = std::fabs(std::fabs(x) - v);
    if (err < best_err || (err == best_err && (code & 1) == 0 && (best_code & 1) == 1)) {
      best = v;
      best_err = err;
      best_code = code;
    }
  }
  return x < 0 ? -best : best;
}

}  // namespace gdnt
