// Recurrent gated delta rule on the GPU. One block per (sequence, value head, tile of 32 state
// columns); the K x 32 state tile stays in registers across the Tn tokens of the call, so the
// state is read once and written once. 128 threads: 8 column threads (4 columns each) x 16 row
// groups; column sums go through shared memory, so no warp width is assumed.
#include "launch.hpp"
#include "portability.hpp"
#include "typed.hpp"

namespace gdn::gpu {
namespace {

constexpr int kCT = 8, kRG = 16, kThreads = kCT * kRG, kBV = 4 * kCT;

template <int32_t ST>
struct StateIO {
  // Loads 4 consecutive columns [j, j+4) of a state row (masked past V).
  static __device__ void load4(const char* row, int64_t j, int64_t V, bool vec, float (&s)[4]) {
    if (vec && j + 4 <= V) {
      if constexpr (ST == GDN_DTYPE_F32) {
        const float4 x = *reinterpret_cast<const float4*>(reinterpret_cast<const float*>(row) + j);
        s[0] = x.x, s[1] = x.y, s[2] = x.z, s[3] = x.w;
      } else {
        const uint2 x = *reinterpret_cast<const uint2*>(reinterpret_cast<const uint16_t*>(row) + j);
        s[0] = bf16_to_f32(uint16_t(x.x & 0xffffu)), s[1] = bf16_to_f32(uint16_t(x.x >> 16));
        s[2] = bf16_to_f32(uint16_t(x.y & 0xffffu)), s[3] = bf16_to_f32(uint16_t(x.y >> 16));
      }
      return;
    }
    for (int c = 0; c < 4; ++c) s[c] = j + c < V ? Elem<ST>::load(row, j + c) : 0.0f;
  }
  static __device__ void store4(char* row, int64_t j, int64_t V, bool vec, const float (&s)[4]) {
    if (vec && j + 4 <= V) {
      if constexpr (ST == GDN_DTYPE_F32) {
        *reinterpret_cast<float4*>(reinterpret_cast<float*>(row) + j) = make_float4(s[0], s[1], s[2], s[3]);
      } else {
        uint2 x;
        x.x = uint32_t(f32_to_bf16(s[0])) | (uint32_t(f32_to_bf16(s[1])) << 16);
        x.y = uint32_t(f32_to_bf16(s[2])) | (uint32_t(f32_to_bf16(s[3])) << 16);
        *reinterpret_cast<uint2*>(reinterpret_cast<uint16_t*>(row) + j) = x;
      }
      return;
    }
    for (int c = 0; c < 4; ++c)
      if (j + c < V) Elem<ST>::store(row, j + c, s[c]);
  }
};

// Sums each column's partials over the row groups; thread c < kBV gets column c's total.
__device__ __forceinline__ float column_sum(float (&red)[kRG][kBV], const float (&part)[4], int tx, int ty) {
#pragma unroll
  for (int c = 0; c < 4; ++c) red[ty][tx * 4 + c] = part[c];
  __syncthreads();
  float acc = 0.0f;
  if (threadIdx.x < kBV) {
#pragma unroll
    for (int r = 0; r < kRG; ++r) acc += red[r][threadIdx.x];
  }
  return acc;
}

template <int32_t ACT, int32_t ST, int ROWS>
__global__ void __launch_bounds__(kThreads) decode_kernel(GdnProblem p, int64_t tiles, bool vec) {
  __shared__ float q_s[kMaxHeadDim], k_s[kMaxHeadDim], red[kRG][kBV], u_s[kBV], scratch[2 * kThreads / 32];
  const int64_t K = p.d.K, V = p.d.V, HV = p.d.HV, Tn = p.tokens_per_seq;
  const uint32_t bid = blockIdx.x, nt = uint32_t(tiles), nh = uint32_t(HV);
  const int64_t tile = bid % nt, h = (bid / nt) % nh, b = bid / (nt * nh);
  const int64_t hk = h / (HV / p.d.HK);
  const int tx = threadIdx.x % kCT, ty = threadIdx.x / kCT;
  const int64_t j0 = tile * kBV + tx * 4;

  int64_t read_slot;
  if (!p.per_token_slots) {
    read_slot = load_index(p.slot_idx.at(b, 0), p.slot_idx.dt);
  } else {
    const int64_t acc = p.num_accepted.present() ? p.num_accepted.idx(b) : 1;
    read_slot = (acc >= 1 && acc <= Tn) ? load_index(p.slot_idx.at(b, acc - 1), p.slot_idx.dt) : -1;
  }
  if (read_slot < 0 || read_slot >= p.state.num_slots) {
    if (ty == 0)
      for (int64_t t = 0; t < Tn; ++t)
        for (int c = 0; c < 4; ++c)
          if (j0 + c < V) Elem<ACT>::store(p.out.at(b, t, h), j0 + c, 0.0f);
    return;
  }

  float s[ROWS][4];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t i = ty + r * kRG;
    if (i < K)
      StateIO<ST>::load4(p.state.at(read_slot, h, i), j0, V, vec, s[r]);
    else
      s[r][0] = s[r][1] = s[r][2] = s[r][3] = 0.0f;
  }

  for (int64_t t = 0; t < Tn; ++t) {
    // q, k of this token into shared memory; their norms.
    float qq = 0.0f, kk = 0.0f;
    const char *qrow = p.q.at(b, t, hk), *krow = p.k.at(b, t, hk);
    for (int i = threadIdx.x; i < int(K); i += kThreads) {
      const float qi = Elem<ACT>::load(qrow, i), ki = Elem<ACT>::load(krow, i);
      q_s[i] = qi;
      k_s[i] = ki;
      qq += qi * qi;
      kk += ki * ki;
    }
    float g, beta;
    if (p.raw_gate) {
      g = gate_g(load_float(p.a.at(b, t, h), p.a.dt), p.A_log.f(h), p.dt_bias.f(h));
      beta = sigmoid(load_float(p.b.at(b, t, h), p.b.dt));
    } else {
      g = load_float(p.g.at(b, t, h), p.g.dt);
      beta = load_float(p.beta.at(b, t, h), p.beta.dt);
    }
    float q_scale = p.scale, k_scale = 1.0f;
    if (p.l2norm) {
      block_sum2(qq, kk, scratch);
      q_scale *= 1.0f / sqrtf(qq + kL2NormEps);
      k_scale = 1.0f / sqrtf(kk + kL2NormEps);
    } else {
      __syncthreads();
    }
    const float decay = expf(g);

    // kv = S^T k over this thread's rows, then across row groups.
    float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t i = ty + r * kRG;
      const float ki = i < K ? k_s[i] * k_scale : 0.0f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        s[r][c] *= decay;
        part[c] += s[r][c] * ki;
      }
    }
    const float kv = column_sum(red, part, tx, ty);
    if (threadIdx.x < kBV) {
      const int64_t j = tile * kBV + threadIdx.x;
      const float vj = j < V ? Elem<ACT>::load(p.v.at(b, t, h), j) : 0.0f;
      u_s[threadIdx.x] = beta * (vj - kv);
    }
    __syncthreads();

    // S += k u^T; o = S^T q.
    float u[4], o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int c = 0; c < 4; ++c) u[c] = u_s[tx * 4 + c];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t i = ty + r * kRG;
      const float ki = i < K ? k_s[i] * k_scale : 0.0f, qi = i < K ? q_s[i] * q_scale : 0.0f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        s[r][c] += ki * u[c];
        o[c] += s[r][c] * qi;
      }
    }
    const float acc = column_sum(red, o, tx, ty);
    if (threadIdx.x < kBV) {
      const int64_t j = tile * kBV + threadIdx.x;
      if (j < V) Elem<ACT>::store(p.out.at(b, t, h), j, acc);
    }
    if (p.per_token_slots) {
      const int64_t ws = load_index(p.slot_idx.at(b, t), p.slot_idx.dt);
      if (ws >= 0 && ws < p.state.num_slots) {
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const int64_t i = ty + r * kRG;
          if (i < K) StateIO<ST>::store4(p.state.at(ws, h, i), j0, V, vec, s[r]);
        }
      }
    }
    __syncthreads();  // q_s, k_s, red and u_s are reused by the next token
  }
  if (!p.per_token_slots) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t i = ty + r * kRG;
      if (i < K) StateIO<ST>::store4(p.state.at(read_slot, h, i), j0, V, vec, s[r]);
    }
  }
}

template <int32_t ACT, int32_t ST>
void launch(const GdnProblem& p, gpuStream_t stream) {
  const int64_t tiles = (p.d.V + kBV - 1) / kBV;
  const int64_t blocks = p.num_seqs * p.d.HV * tiles;
  if (blocks == 0) return;
  // float4 / 4 x bf16 state accesses need every row start 16 (8) byte aligned.
  const int64_t es = dtype_bytes(ST);
  const bool vec = (reinterpret_cast<uintptr_t>(p.state.p) % (4 * es) == 0) && p.state.s_k % 4 == 0 &&
                   p.state.s_h % 4 == 0 && p.state.s_slot % 4 == 0;
  const unsigned grid = unsigned(blocks);
  if (p.d.K <= 4 * kRG)
    decode_kernel<ACT, ST, 4><<<grid, kThreads, 0, stream>>>(p, tiles, vec);
  else if (p.d.K <= 8 * kRG)
    decode_kernel<ACT, ST, 8><<<grid, kThreads, 0, stream>>>(p, tiles, vec);
  else
    decode_kernel<ACT, ST, 16><<<grid, kThreads, 0, stream>>>(p, tiles, vec);
  check_launch("decode_kernel");
}

}  // namespace

void decode(const Device&, const GdnProblem& p, void* stream) {
  if (p.num_seqs * p.tokens_per_seq == 0) return;
  dispatch_act(p.q.dt, [&](auto act) {
    dispatch_state(p.state.dt, [&](auto st) { launch<decltype(act)::value, decltype(st)::value>(p, gpuStream_t(stream)); });
  });
}

}  // namespace gdn::gpu
