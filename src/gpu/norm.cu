// RMSNormGated (+ FP8 group quantisation) on the GPU. One block per (token, run of `hb` value
// heads), the run holding whole FP8 groups; subgroups of 32 lanes take one head at a time
// (shuffle reductions within 32 lanes work on wave32 and wave64). For FP8 the block's normalised
// heads are staged in shared memory, then each subgroup quantises groups.
#include <cfloat>

#include "launch.hpp"
#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {
namespace {

constexpr int kThreads = 256, kLanes = 32, kGroups = kThreads / kLanes;

template <int32_t ACT, int32_t OUT, bool FP8, int PER>  // PER >= V / 32
__global__ void __launch_bounds__(kThreads) norm_kernel(NormProblem p, int hb) {
  extern __shared__ float smem[];
  const int64_t V = p.d.V, t = blockIdx.x, h0 = int64_t(blockIdx.y) * hb;
  const int64_t HV = hb;   // heads of this block: h0 .. h0 + hb - 1; indices below are local
  float* w_s = smem;       // [V]
  float* y_s = smem + V;   // [hb * V], FP8 only
  const int lane = threadIdx.x % kLanes, sg = threadIdx.x / kLanes;
  for (int64_t j = threadIdx.x; j < V; j += kThreads) w_s[j] = p.weight.f(j);
  __syncthreads();
  for (int64_t h = sg; h < HV; h += kGroups) {
    const char* x = p.x.at(t, 0, h0 + h);
    const char* z = p.z.at(t, 0, h0 + h);
    // x and z of this lane's PER elements, loaded together before the reduction.
    constexpr int kPer = PER;
    float xs[kPer], gs_[kPer];
    float ss = 0.0f;
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int64_t j = lane + int64_t(e) * kLanes;
      xs[e] = j < V ? Elem<ACT>::load(x, j) : 0.0f;
      gs_[e] = j < V ? Elem<ACT>::load(z, j) : 0.0f;
      ss += xs[e] * xs[e];
    }
    const float inv = 1.0f / sqrtf(subgroup32_sum(ss) / float(V) + p.eps);
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int64_t j = lane + int64_t(e) * kLanes;
      if (j >= V) break;
      const float y = xs[e] * inv * w_s[j] * silu(gs_[e]);
      if constexpr (FP8)
        y_s[h * V + j] = y;
      else
        Elem<OUT>::store(p.out.at(t, 0, h0 + h), j, y);
    }
  }
  if constexpr (FP8) {
    // Scales of all groups first, then the codes head by head (32-bit index math only).
    float* scale_s = y_s + HV * V;  // [hb * V / group]
    __syncthreads();
    const float fmax = fp8_max(OUT);
    const int gs = int(p.group), groups = int(HV * V) / gs;
    for (int g = sg; g < groups; g += kGroups) {
      float amax = 0.0f;
      for (int i = g * gs + lane; i < (g + 1) * gs; i += kLanes) amax = fmaxf(amax, fabsf(y_s[i]));
      const float scale = fmaxf(subgroup32_max(amax) / fmax, FLT_MIN);
      if (lane == 0) {
        scale_s[g] = scale;
        store_float(p.scales.at(t, h0 * V / gs + g), p.scales.dt, scale);
      }
    }
    __syncthreads();
    const int Vi = int(V);
    for (int h = sg; h < int(HV); h += kGroups) {
      char* out = p.out.at(t, 0, h0 + h);
      for (int j = lane; j < Vi; j += kLanes) Elem<OUT>::store(out, j, y_s[h * Vi + j] / scale_s[(h * Vi + j) / gs]);
    }
  }
}

int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

// Heads per block: a multiple of the heads one FP8 group-aligned unit spans (lcm(V, group) / V,
// which divides HV), grown towards one head per subgroup while it still divides HV.
int heads_per_block(const NormProblem& p, bool fp8) {
  const int64_t HV = p.d.HV, V = p.d.V;
  int64_t unit = fp8 ? (V / gcd(V, p.group) * p.group) / V : 1;
  int64_t hb = unit;
  while (hb * 2 <= kGroups && HV % (hb * 2) == 0) hb *= 2;
  return int(hb);
}

template <int32_t ACT, int32_t OUT, bool FP8>
void launch(const Device& dev, const NormProblem& p, gpuStream_t stream) {
  const int hb = heads_per_block(p, FP8);
  const int64_t cols = int64_t(hb) * p.d.V;
  const size_t smem = size_t(p.d.V + (FP8 ? cols + cols / p.group : 0)) * sizeof(float);
  auto kernel = p.d.V <= 4 * kLanes ? norm_kernel<ACT, OUT, FP8, 4>
                : p.d.V <= 8 * kLanes ? norm_kernel<ACT, OUT, FP8, 8> : norm_kernel<ACT, OUT, FP8, 32>;
  if (smem > 48 * 1024) check(gpuFuncSetAttribute(kernel, gpuFuncAttributeMaxDynamicSharedMemorySize, int(smem)), "norm smem");
  (void)dev;
  kernel<<<dim3(unsigned(p.T), unsigned(p.d.HV / hb)), kThreads, smem, stream>>>(p, hb);
  check_launch("norm_kernel");
}

}  // namespace

void norm_gated(const Device& dev, const NormProblem& p, bool fp8, void* stream) {
  if (p.T == 0) return;
  const gpuStream_t s = gpuStream_t(stream);
  dispatch_act(p.x.dt, [&](auto a) {
    constexpr int32_t A = decltype(a)::value;
    if (fp8) {
      if (p.out.dt == GDN_DTYPE_F8_E4M3FN)
        launch<A, GDN_DTYPE_F8_E4M3FN, true>(dev, p, s);
      else
        launch<A, GDN_DTYPE_F8_E4M3FNUZ, true>(dev, p, s);
    } else {
      dispatch_act(p.out.dt, [&](auto o) { launch<A, decltype(o)::value, false>(dev, p, s); });
    }
  });
}

}  // namespace gdn::gpu
