// RMSNormGated over each (token, value head), optionally followed by FP8 group quantisation of
// the token's HV*V channels.
#include <cfloat>
#include <cmath>

#include "token_inputs.hpp"

namespace gdn::cpu {

size_t norm_scratch_floats(const LayerDims& d) { return Arena::need({d.HV * d.V, d.V, d.V}); }

namespace {

// y = x * rsqrt(mean(x^2) + eps) * weight * silu(z) for one head; z is scratch and overwritten.
void norm_head(const NormProblem& p, int64_t t, int64_t h, const float* __restrict w, float* __restrict y,
               float* __restrict z) {
  const int64_t V = p.d.V;
  load_row(p.x.at(t, 0, h), p.x.dt, V, y);
  load_row(p.z.at(t, 0, h), p.z.dt, V, z);
  float ss = 0.0f;
  for (int64_t j = 0; j < V; ++j) ss += y[j] * y[j];
  const float inv = 1.0f / std::sqrt(ss / float(V) + p.eps);
  silu_row(z, V);
  for (int64_t j = 0; j < V; ++j) y[j] = y[j] * inv * w[j] * z[j];
}

}  // namespace

void norm_gated(ThreadPool& pool, const NormProblem& p, bool fp8, void* ws, size_t ws_bytes) {
  const int64_t HV = p.d.HV, V = p.d.V;
  const size_t per_thread = norm_scratch_floats(p.d) * sizeof(float);
  (void)ws_bytes;
  pool.parallel_for(p.T, 4, [&](int64_t begin, int64_t end, int32_t tid) {
    Arena arena(static_cast<char*>(ws) + size_t(tid) * per_thread, per_thread);
    float *y = arena.floats(HV * V), *z = arena.floats(V), *w = arena.floats(V);
    for (int64_t j = 0; j < V; ++j) w[j] = p.weight.f(j);
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t h = 0; h < HV; ++h) norm_head(p, t, h, w, y + h * V, z);
      if (!fp8) {
        for (int64_t h = 0; h < HV; ++h) store_row(p.out.at(t, 0, h), p.out.dt, V, y + h * V);
        continue;
      }
      const float fmax = fp8_max(p.out.dt);
      for (int64_t g0 = 0; g0 < HV * V; g0 += p.group) {
        float amax = 0.0f;
        for (int64_t c = g0; c < g0 + p.group; ++c) {
          const float a = std::fabs(y[c]);
          amax = a > amax ? a : amax;  // NaN ignored, as fmax does (which would be a libm call a value)
        }
        const float scale = std::fmax(amax / fmax, FLT_MIN);
        for (int64_t c = g0; c < g0 + p.group; ++c) y[c] /= scale;
        store_float(p.scales.at(t, g0 / p.group), p.scales.dt, scale);
      }
      for (int64_t h = 0; h < HV; ++h) store_row(p.out.at(t, 0, h), p.out.dt, V, y + h * V);
    }
  });
}

}  // namespace gdn::cpu
