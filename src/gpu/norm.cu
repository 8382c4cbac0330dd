// RMSNormGated (+ FP8 group quantisation) on the GPU. One block per (token, run of `hb` value
// heads), the run holding whole FP8 groups; subgroups of 32 lanes take one head at a time
// (shuffle reductions within 32 lanes work on wave32 and wave64). For FP8 the block's normalised
// heads are staged in shared memory, then each subgroup quantises groups.
#include <algorithm>
#include <cfloat>

#include "launch.hpp"
#include "norm_row.hpp"

namespace gdn::gpu {
namespace {

constexpr int kThreads = 256, kLanes = 32, kGroups = kThreads / kLanes;

template <int32_t ACT, int32_t OUT, bool FP8, int PER>  // PER >= V / 32
__global__ void __launch_bounds__(kThreads) norm_kernel(NormProblem p, int hb) {
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  GDN_DYNAMIC_SMEM(float, smem);
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

// The fast path's parameters in a compact block (a few 32-byte constant lines, fetched together
// by prefetch_params): each tensor's rows as byte offsets, with 32-bit per-head parts.
struct ByteRows {  // row (t, h) at p + t * ts + (h / groups) * gs + (h % groups) * is
  char* p;
  uint64_t ts;
  uint32_t gs, is;
  FastDiv groups;
  __device__ __forceinline__ char* row(uint32_t t, uint32_t h) const {
    const uint32_t g = groups.div(h);
    return p + t * ts + (g * gs + (h - g * groups.d) * is);
  }
};
struct NormRows {
  ByteRows x, z, out;
  const char* weight;   // V contiguous elements, 4-element aligned: fp32 (weight_f32), or x's dtype
  float* scales;        // fp8: row t's groups at scales + t * sc_ts + g * sc_cs (floats)
  uint64_t sc_ts;
  uint32_t sc_cs;
  uint32_t rows;        // T * HV
  FastDiv hv;
  float eps;
  int32_t group;        // fp8 group (columns)
  bool weight_f32;
};

// Head view v's rows in bytes, when every per-head offset fits 32 bits (else false).
bool byte_rows(const HeadView& v, int64_t HV, ByteRows* r) {
  const int64_t b = dtype_bytes(v.dt), groups = v.r.d, gs = b * v.s_grp, is = b * v.s_in, ts = b * v.s0;
  const int64_t last = (HV - 1) / groups * gs + (groups - 1) * is;
  if (gs < 0 || is < 0 || ts < 0 || last >= (int64_t(1) << 32)) return false;
  *r = ByteRows{v.p, uint64_t(ts), uint32_t(gs), uint32_t(is), v.r};
  return true;
}
// The fast path's conditions, filling r's parameters where they hold: V = 128 * SPANS
// (SPANS <= 2), FP8 groups of 8..128 dividing 128, every head row of x, z and out 4-element
// aligned (vector accesses), the weight contiguous and 4-element aligned, and the compact
// parameters' 32-bit offsets enough.
bool norm_rows(const NormProblem& p, bool fp8, NormRows* r) {
  if (p.d.V % 128 != 0 || p.d.V > 256) return false;
  if (fp8 && (p.group < 8 || 128 % p.group != 0)) return false;
  if (p.T * p.d.HV >= (int64_t(1) << 31)) return false;
  if (!head_rows_aligned(p.x, 4) || !head_rows_aligned(p.z, 4) || !head_rows_aligned(p.out, 4)) return false;
  if (!vec_contiguous_aligned(p.weight, 4)) return false;
  r->weight = p.weight.p;
  r->weight_f32 = p.weight.dt == GDN_DTYPE_F32;
  r->scales = fp8 ? reinterpret_cast<float*>(p.scales.p) : nullptr;
  r->sc_ts = fp8 ? uint64_t(p.scales.s_row) : 0;
  r->sc_cs = fp8 ? uint32_t(p.scales.s_col) : 0;
  r->rows = uint32_t(p.T * p.d.HV);
  r->hv = p.d.hv_div;
  r->eps = p.eps;
  r->group = fp8 ? int32_t(p.group) : 0;
  if (fp8 && (p.scales.s_row < 0 || p.scales.s_col < 0 || p.scales.s_col * p.scales.cols >= (int64_t(1) << 32)))
    return false;
  return byte_rows(p.x, p.d.HV, &r->x) && byte_rows(p.z, p.d.HV, &r->z) && byte_rows(p.out, p.d.HV, &r->out);
}

// Fast path for V = 128 * SPANS (and, for FP8, a group of 8..128 columns dividing 128): half a
// 32-lane subgroup (16 lanes) per (token, head) row, each lane holding 8 consecutive columns of
// every 128-column span in registers; the RMS sum and each group's amax are shuffle reductions
// inside the 16 lanes, codes leave as 8-byte stores, weights are loaded once per thread. No shared
// memory, no barriers; each half-subgroup takes U rows at a time (all loaded before any is used)
// and strides over all T * HV rows.
// U = 1 when one wave of blocks has a half-subgroup for every row (small T: the shortest chain a
// thread), else 2 (more loads in flight a thread).
template <int32_t ACT, int32_t OUT, bool FP8, int SPANS, int U>
__global__ void __launch_bounds__(kThreads) norm_rows_kernel(const GDN_GRID_CONST NormRows p) {
  const uint32_t pw = prefetch_params(p);
  pdl_wait();  // launched with launch_pdl: inputs may come from the previous kernel
  sink_params(pw);
  constexpr int kRowLanes = 16, kPer = 8;
  const int lane = threadIdx.x % kRowLanes;
  const uint32_t worker = (blockIdx.x * kGroups + threadIdx.x / kLanes) * 2 + (threadIdx.x % kLanes) / kRowLanes;
  const uint32_t workers = gridDim.x * kGroups * 2, rows = p.rows;
  // The weight's raw words first (contiguous and aligned: norm_rows; fp32 16-byte pieces, 2-byte
  // types 8-byte ones), converted only once the first rows' loads are issued: a conversion (or,
  // predicated off, one sharing its load's scoreboard) waits for its load, and ahead of the row
  // loads that wait was a memory trip of its own (H100, docs/perf-notes.md, session 27: with the
  // row loads below, norm_fp8 T = 1 / 128 / 8192 -7 / -3 / -6 %).
  constexpr bool kF32Act = ACT == GDN_DTYPE_F32;  // the weight is fp32 too
  typename Vec4<GDN_DTYPE_F32>::Raw wf[SPANS][2] = {};  // an fp32 weight (always with fp32 x)
  typename Vec4<ACT>::Raw wa[SPANS][2] = {};            // else x's dtype
#pragma unroll
  for (int s = 0; s < SPANS; ++s)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int j = s * 128 + lane * kPer + 4 * h;
      if (kF32Act || p.weight_f32)
        wf[s][h] = Vec4<GDN_DTYPE_F32>::raw(p.weight, j);
      else
        wa[s][h] = Vec4<ACT>::raw(p.weight, j);
    }
  float w[SPANS][kPer] = {};
  bool have_w = false;
  const float fmax = FP8 ? fp8_max(OUT) : 0.0f;
  const int gshift = FP8 ? __ffs(p.group) - 1 : 0;  // the group divides 128: a power of two
  constexpr uint32_t kV = 128 * SPANS;
  // Rows are visited in the same order by both halves of a subgroup, so the loop trip count is
  // uniform over the subgroup (shuffles need all 32 lanes); a half past the end computes on zeros.
  const uint32_t pairs = (rows + 1) / 2 * 2;
  for (uint32_t r0 = worker; r0 - worker % 2 < pairs; r0 += U * workers) {
    float xs[U][SPANS][kPer], zs[U][SPANS][kPer];
    uint32_t ts[U], hs[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const uint32_t r = r0 + u * workers;
      // Loaded unconditionally (a row past the end reads the last row, computes on zeros and
      // stores nothing): a conversion inside a conditional block would wait there for its load.
      const bool in = r < rows;
      const uint32_t rl = in ? r : rows - 1;
      ts[u] = p.hv.div(rl), hs[u] = rl - ts[u] * p.hv.d;
      const char *x = p.x.row(ts[u], hs[u]), *z = p.z.row(ts[u], hs[u]);
#pragma unroll
      for (int s = 0; s < SPANS; ++s)
#pragma unroll
        for (int q = 0; q < kPer; q += 4) {
          float a[4], c[4];
          Vec4<ACT>::load(x, s * 128 + lane * kPer + q, a);
          Vec4<ACT>::load(z, s * 128 + lane * kPer + q, c);
#pragma unroll
          for (int e = 0; e < 4; ++e) xs[u][s][q + e] = in ? a[e] : 0.0f, zs[u][s][q + e] = in ? c[e] : 0.0f;
        }
    }
    if (!have_w) {  // the weight's conversion, after the first rows' loads
#pragma unroll
      for (int s = 0; s < SPANS; ++s)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float a[4];
          if (kF32Act || p.weight_f32)
            Vec4<GDN_DTYPE_F32>::convert(wf[s][h], a);
          else
            Vec4<ACT>::convert(wa[s][h], a);
#pragma unroll
          for (int e = 0; e < 4; ++e) w[s][4 * h + e] = a[e];
        }
      have_w = true;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool mine = r0 + u * workers < rows;
      float* sc = FP8 ? p.scales + ts[u] * p.sc_ts + uint64_t((hs[u] * kV) >> gshift) * p.sc_cs : nullptr;
      norm_row16<OUT, FP8, SPANS>(xs[u], zs[u], w, p.eps, fmax, p.group, lane, sc, p.sc_cs,
                                  mine ? p.out.row(ts[u], hs[u]) : nullptr);
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
  NormRows rp;
  if (norm_rows(p, FP8, &rp)) {
    const int64_t rows = rp.rows;  // T * HV < 2^31 (checked by norm_rows)
    // One wave of resident blocks (or fewer when the rows run out), striding over the rows; one
    // row a half-subgroup when that wave covers them all.
    auto run = [&](auto kernel, int u) {
      int per_sm = 0;
      check(gpuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0), "norm occupancy");
      const int64_t wave = int64_t(std::max(per_sm, 1)) * dev.sm_count;
      if (u == 1 && rows > wave * kGroups * 2) return false;
      const unsigned grid = unsigned(std::min<int64_t>(ceil_div(rows, kGroups * 2 * u), wave));
      launch_pdl(dev.pdl(), kernel, grid, kThreads, 0, stream, rp);
      return true;
    };
    if (p.d.V == 128) {
      if (!run(norm_rows_kernel<ACT, OUT, FP8, 1, 1>, 1)) run(norm_rows_kernel<ACT, OUT, FP8, 1, 2>, 2);
    } else if (!run(norm_rows_kernel<ACT, OUT, FP8, 2, 1>, 1)) {
      run(norm_rows_kernel<ACT, OUT, FP8, 2, 2>, 2);
    }
    check_launch("norm_rows_kernel");
    return;
  }
  const int hb = heads_per_block(p, FP8);
  const int64_t cols = int64_t(hb) * p.d.V;
  const size_t smem = size_t(p.d.V + (FP8 ? cols + cols / p.group : 0)) * sizeof(float);
  auto kernel = p.d.V <= 4 * kLanes ? norm_kernel<ACT, OUT, FP8, 4>
                : p.d.V <= 8 * kLanes ? norm_kernel<ACT, OUT, FP8, 8> : norm_kernel<ACT, OUT, FP8, 32>;
  if (smem > 48 * 1024) check(gpuFuncSetAttribute(kernel, gpuFuncAttributeMaxDynamicSharedMemorySize, int(smem)), "norm smem");
  launch_pdl(dev.pdl(), kernel, dim3(unsigned(p.T), unsigned(p.d.HV / hb)), kThreads, smem, stream, p, hb);
  check_launch("norm_kernel");
}

}  // namespace

bool norm_rows_fast_path(const NormProblem& p, bool fp8) {
  NormRows unused;
  return norm_rows(p, fp8, &unused);
}

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
