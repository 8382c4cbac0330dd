// Prefill step 3 on Hopper warpgroup products (sm_90a wgmma; bf16 activations, K = 128, BT = 64):
// the state kernel with every product one asynchronous m64n32k16 chain on operands in shared
// memory (wgmma.hpp), no fragment loads. Part of prefill.cu (included inside its anonymous
// namespace: Work, TokenRows, TileJob, chunk_len, kBV, kMaxBT).
//
// One block per (sequence, value head, 32-column tile of S), four warpgroups with fixed roles:
//   WG0  K S (A = the raw k rows, B = S^T) -> R = V - exp(gc) kf K S -> R^T;
//        then Vn = Tb R -> Vn^T and Vd^T = (exp(gc_last - gc) kf Vn)^T.
//   WG1  Q S -> O = exp(gc) qf Q S, kept in registers; then O += Pm Vn -> out.
//   WG2, WG3  the copies of q and k while K S runs; then S <- exp(gc_last) S + K^T Vd on their
//        64 state rows 64 (wg - 2) .. (fp32, in registers for the whole sequence; K^T read from
//        the k tile by the product's transpose flag) -> S^T for the next chunk.
// A chunk: K S, Q S; a barrier of WG0's own (R^T is its own; the others take barriers of their
// own there); Tb R; a block barrier; the update and O += Pm Vn; a block barrier. q and k
// are copied two chunks ahead into staging rows and moved into a double buffer of core tiles a
// chunk ahead (stage_qk / unstage_qk), Tb, Pm and v a chunk ahead (copy_mats_v), the decays and
// norm factors a chunk ahead into registers.
// Bf16 products only (the layer's GDN_PRECISION_BF16: every operand rounded to bf16, the state
// itself kept in fp32): with split operands for fp32 accuracy (two or three products each) this
// kernel measured slower than state_mma_kernel on the H100 (docs/perf-notes.md, session 11), so
// that precision stays there.
#if GDN_HAVE_MMA
constexpr int kWgBT = 64, kWgK = 128, kWgThreads = 512;

// Shared memory (bytes): tiles in the core layout (wgmma.hpp), all 128-byte aligned.
constexpr int kWgQK = kWgBT * kWgK, kWgST = kBV * kWgK, kWgMT = kWgBT * kWgBT,
              kWgVT = kBV * kWgBT, kWgVin = kWgBT * kBV;
// q / k staging rows (row-major, padded by 16 bytes so that 8 rows at one column are 8 different
// bank groups): [buffer][q, k] BT x kWgSP.
constexpr int kWgSP = kWgK + 8, kWgStage = kWgBT * kWgSP;
constexpr size_t kWgSmemBytes = size_t(4 * kWgQK + kWgST + 4 * kWgMT + 3 * kWgVT + 2 * kWgVin + 4 * kWgStage) * 2 +
                                2 * 4 * kWgBT * sizeof(float);

// x (a 64 x 32 accumulator of this thread's warpgroup, rows r0 .. of the product) rounded to
// bf16 and transposed into the core-layout tile `t` with C columns: element (column, r0 + row).
// Each 8 x 8 block of a warp's fragment is one core matrix of the transposed tile: two
// stmatrix.trans of four blocks each.
__device__ inline void store_acc_t(uint16_t* t, int C, int r0, const float (&x)[16]) {
  const int lane = threadIdx.x % 32, w4 = (threadIdx.x / 32) % 4;
#if GDN_WGMMA && GDN_LDMATRIX
  for (int h = 0; h < 2; ++h) {  // rows 16 w4 + 8 h .. + 7; block q = columns 8 q .. 8 q + 7
    const uint32_t f[4] = {pack_bf16x2(x[2 * h], x[2 * h + 1]), pack_bf16x2(x[4 + 2 * h], x[5 + 2 * h]),
                           pack_bf16x2(x[8 + 2 * h], x[9 + 2 * h]), pack_bf16x2(x[12 + 2 * h], x[13 + 2 * h])};
    stmatrix_x4_trans(t + core_at(lane, r0 + 16 * w4 + 8 * h, C), f);  // lane: row 8 (lane / 8) + lane % 8
  }
#else
  const int g = lane / 4, q = lane % 4;
  for (int i = 0; i < 16; i += 2) {
    const int r = r0 + 16 * w4 + g + 8 * ((i / 2) % 2), n = 8 * (i / 4) + 2 * q;
    const uint32_t hi = pack_bf16x2(x[i], x[i + 1]);
    t[core_at(n, r, C)] = uint16_t(hi & 0xffffu), t[core_at(n + 1, r, C)] = uint16_t(hi >> 16);
  }
#endif
}

template <int32_t ST>
__global__ void __launch_bounds__(kWgThreads) state_wgmma_kernel(GdnProblem p, Work w, int64_t tiles) {
#if GDN_WGMMA
  constexpr int BT = kWgBT, K = kWgK, NB = kBV;
  constexpr int32_t ACT = GDN_DTYPE_BF16;
  GDN_DYNAMIC_SMEM(uint16_t, sm);
  uint16_t* qk = sm;               // [buffer][q, k]  BT x K  raw rows
  uint16_t* st = qk + 4 * kWgQK;   // NB x K  S^T
  uint16_t* mt = st + kWgST;       // [buffer][Tb, Pm]  BT x BT
  uint16_t* rt = mt + 4 * kWgMT;   // NB x BT  R^T
  uint16_t* nt = rt + kWgVT;       // Vn^T
  uint16_t* vt = nt + kWgVT;       // Vd^T
  uint16_t* vin = vt + kWgVT;      // [buffer]  BT x NB  raw v rows (row-major)
  uint16_t* stage = vin + 2 * kWgVin;  // [buffer][q, k]  BT x kWgSP  raw rows, two chunks ahead
  float* sc = reinterpret_cast<float*>(stage + 4 * kWgStage);  // [buffer][rf, of, uf, eg]  BT
  enum { kRf = 0, kOf = BT, kUf = 2 * BT, kEg = 3 * BT };

  const int64_t HV = p.d.HV, HK = p.d.HK;
  const TileJob job(p, w, tiles);  // NB == kBV columns a block
  if (!job.has_slot(p)) return job.none<ACT>(p);
  const int64_t h = job.h, hk = job.hk, v0 = job.v0, start = job.start, end = job.end, slot = job.slot;
  const bool initial = job.initial;
  const float *mats = job.mats, *gcs = job.gcs, *norms = job.norms;
  const int64_t mats_stride = job.mats_stride;
  const int tid = threadIdx.x, wg = tid / 128, w4 = (tid / 32) % 4, g = (tid % 32) / 4, q4 = tid % 4;
  auto row_of = [&](int i) { return 16 * w4 + g + 8 * ((i / 2) % 2); };  // accumulator entry i
  auto col_of = [&](int i) { return 8 * (i / 4) + 2 * q4 + i % 2; };
  const TokenRows q_rows(p.q, hk), k_rows(p.k, hk), v_rows(p.v, h), out_rows(p.out, h);

  // q and k (32 KB a chunk) two chunks ahead: WG2 and WG3 copy the raw rows by cp.async into
  // row-major staging (a warp: 2 rows x 256 contiguous bytes, so the L2 requests merge -- 16-byte
  // copies straight into the core layout made one request each, and the request rate saturated
  // L2), then, a chunk later while WG0 runs Tb R, move them into the core layout (16-byte shared
  // loads and stores: 8 lanes = 8 rows of one core matrix, conflict-free both ways). Rows past the
  // chunk's end are zero (the products read every row). Tb and Pm (their hi halves: bf16) and v
  // come by cp.async from WG1 (issued before Q S, awaited at the end of the chunk).
  // The per-thread part of every copy's addressing is fixed (row r2 + 16 u, piece x2); a chunk
  // adds c rows, and a full chunk takes no per-copy tests (ncu: ~29 instructions a copy, 64-bit
  // address math and a branch each, were a fifth of the kernel's instructions).
  const int t2 = tid % 256, r2 = t2 / 16, x2 = 8 * (t2 % 16);
  const char* q_src = q_rows.base + r2 * q_rows.stride + 2 * x2;
  const char* k_src = k_rows.base + r2 * k_rows.stride + 2 * x2;
  uint16_t* const stage_dst = stage + r2 * kWgSP + x2;
  auto stage_qk = [&](int64_t c, int sb) {  // one commit group, empty past the end
    if (c < end) {
      const int Lc = chunk_len<BT>(c, end);
      const char* qs = q_src + c * q_rows.stride;
      const char* ks = k_src + c * k_rows.stride;
      uint16_t* d = stage_dst + 2 * sb * kWgStage;
      if (Lc == BT) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          async_copy16(d + 16 * u * kWgSP, qs + 16 * u * q_rows.stride);
          async_copy16(d + kWgStage + 16 * u * kWgSP, ks + 16 * u * k_rows.stride);
        }
      } else {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          if (r2 + 16 * u < Lc) {
            async_copy16(d + 16 * u * kWgSP, qs + 16 * u * q_rows.stride);
            async_copy16(d + kWgStage + 16 * u * kWgSP, ks + 16 * u * k_rows.stride);
          } else {
            *reinterpret_cast<uint4*>(d + 16 * u * kWgSP) = make_uint4(0, 0, 0, 0);
            *reinterpret_cast<uint4*>(d + kWgStage + 16 * u * kWgSP) = make_uint4(0, 0, 0, 0);
          }
        }
      }
    }
    async_commit();
  };
  // unstage: row 8 (t2 / 128) + t2 % 8 + 16 u, piece (t2 / 8) % 16 of q (u < 4) or k.
  const int un_row = 8 * (t2 / 128) + t2 % 8, un_x = 8 * ((t2 / 8) % 16);
  const int un_src = un_row * kWgSP + un_x, un_dst = core_at(un_row, un_x, K);
  auto unstage_qk = [&](int sb, int b) {  // staging sb -> the core tiles of buffer b
    const uint16_t* src = stage + 2 * sb * kWgStage + un_src;
    uint16_t* dst = qk + 2 * b * kWgQK + un_dst;
#pragma unroll
    for (int u = 0; u < 8; ++u)  // + 16 rows: 16 kWgSP staging, 16 K core-layout elements
      *reinterpret_cast<uint4*>(dst + (u / 4) * kWgQK + 16 * K * (u % 4)) =
          *reinterpret_cast<const uint4*>(src + (u / 4) * kWgStage + 16 * kWgSP * (u % 4));
  };

  // WG1 (t1 = 0 .. 127): Tb and Pm rows t1 / 8 + 16 q (q = 0 .. 3), piece t1 % 8; v rows
  // t1 / 4 + 32 q (q = 0, 1), piece t1 % 4. Fixed per-thread addressing as in stage_qk.
  const int t1 = tid % 128;
  const float* mats_src = mats + (t1 / 8) * mats_stride + 4 * (t1 % 8);
  const int mats_dst = core_at(t1 / 8, 8 * (t1 % 8), BT);  // + 16 BT a step of 16 rows
  const char* v_src = v_rows.base + (t1 / 4) * v_rows.stride + 2 * (v0 + 8 * (t1 % 4));
  const int v_dst = (t1 / 4) * NB + 8 * (t1 % 4);
  auto copy_mats_v = [&](int64_t c, int b) {
    const int Lc = chunk_len<BT>(c, end);
    const float* ms = mats_src + c * mats_stride;
    const char* vs = v_src + c * v_rows.stride;
    uint16_t* md = mt + 2 * b * kWgMT + mats_dst;
    uint16_t* vd = vin + b * kWgVin + v_dst;
    if (Lc == BT) {
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int pm = 0; pm < 2; ++pm) async_copy16(md + pm * kWgMT + 16 * BT * q, ms + 16 * q * mats_stride + pm * kMaxBT);
#pragma unroll
      for (int q = 0; q < 2; ++q) async_copy16(vd + 32 * NB * q, vs + 32 * q * v_rows.stride);
    } else {
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int pm = 0; pm < 2; ++pm) {
          uint16_t* d = md + pm * kWgMT + 16 * BT * q;
          if (t1 / 8 + 16 * q < Lc)
            async_copy16(d, ms + 16 * q * mats_stride + pm * kMaxBT);
          else
            *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
        }
#pragma unroll
      for (int q = 0; q < 2; ++q)
        if (t1 / 4 + 32 * q < Lc) async_copy16(vd + 32 * NB * q, vs + 32 * q * v_rows.stride);
    }
    async_commit();
  };
  // Per-token factors, a chunk ahead in registers: WG1's threads t1 < BT, one token each. (Not
  // WG0's: a warp's proxy fence (MEMBAR) waits for its outstanding global loads, and WG0's fences
  // are on the chunk's chain; WG1 loads them at a chunk's start and fences at its end.)
  const bool scal = wg == 1 && t1 < BT;
  float nx_gc = 0.0f, nx_last = 0.0f, nx_qf = 0.0f, nx_kf = 0.0f;
  auto load_scalars = [&](int64_t c) {
    const int Lc = chunk_len<BT>(c, end);
    if (scal && c < end) {
      nx_last = gcs[(c + Lc - 1) * HV];
      nx_gc = t1 < Lc ? gcs[(c + t1) * HV] : 0.0f;
      nx_qf = t1 < Lc ? norms[(c + t1) * 2 * HK + 0] : 0.0f;
      nx_kf = t1 < Lc ? norms[(c + t1) * 2 * HK + 1] : 0.0f;
    }
  };
  auto write_scalars = [&](int b, int Lc) {
    if (scal) {
      const float eg = t1 < Lc ? expf(nx_gc) : 0.0f, ed = t1 < Lc ? expf(nx_last - nx_gc) : 0.0f;
      float* s = sc + b * 4 * BT;
      s[kRf + t1] = eg * nx_kf, s[kOf + t1] = eg * nx_qf, s[kUf + t1] = ed * nx_kf, s[kEg + t1] = eg;
    }
  };

  // WG1's output words: row r_out of the chunk, columns v0 + 2 q4 .. (row_of / col_of of entry 0).
  const int r_out = row_of(0);
  char* const out_c0 = out_rows.base + r_out * out_rows.stride + 2 * (v0 + col_of(0));

  // WG2 / WG3: state rows m0 .. m0 + 63, columns v0 ..: fp32 accumulators for the whole sequence.
  const int m0 = 64 * (wg - 2);
  float sr[16] = {};
  if (wg >= 2) {
    for (int i = 0; i < 16; ++i)
      sr[i] = initial ? Elem<ST>::load(p.state.at(slot, h, m0 + row_of(i)), v0 + col_of(i)) : 0.0f;
    store_acc_t(st, K, m0, sr);
  }
  load_scalars(start);
  write_scalars(0, chunk_len<BT>(start, end));
  load_scalars(start + BT);
  if (start < end) {
    if (wg >= 2) {
      stage_qk(start, 0);
      stage_qk(start + BT, 1);
      async_wait<1>();
    } else if (wg == 1) {
      copy_mats_v(start, 0);
      async_wait<0>();
    }
  }
  __syncthreads();
  if (wg >= 2 && start < end) unstage_qk(0, 0);
  wgmma_proxy_fence();
  __syncthreads();

  int b = 0;
  for (int64_t c0 = start; c0 < end; c0 += BT, b ^= 1) {
    const int L = chunk_len<BT>(c0, end);
    const int64_t c1 = c0 + BT;
    const uint16_t* q_t = qk + (2 * b) * kWgQK;
    const uint16_t* k_t = qk + (2 * b + 1) * kWgQK;
    const uint16_t* tb = mt + 2 * b * kWgMT;
    const uint16_t* pm = tb + kWgMT;
    const float* s = sc + b * 4 * BT;

    // K S (WG0) and Q S (WG1); K^T (WG2, WG3).
    float o[16] = {};
    if (wg == 1 && c1 < end) {  // the next chunk's inputs (buffer b ^ 1's last readers were the last chunk's)
      copy_mats_v(c1, b ^ 1);
      write_scalars(b ^ 1, chunk_len<BT>(c1, end));
      load_scalars(c1 + BT);
    }
    if (wg < 2) {
      float acc[16] = {};
      wgmma_issue_m64n32<K>(acc, wg == 0 ? k_t : q_t, 0, st);
      // WG0: the v pairs and row factors of R while the products run.
      uint32_t vp[8] = {};
      float rf[2] = {};
      if (wg == 0) {
        for (int i = 0; i < 16; i += 2)
          vp[i / 2] = *reinterpret_cast<const uint32_t*>(vin + b * kWgVin + row_of(i) * NB + col_of(i));
        rf[0] = s[kRf + row_of(0)], rf[1] = s[kRf + row_of(2)];
      }
      wgmma_wait<0>(acc);
      if (wg == 0) {
        float r[16];
        for (int i = 0; i < 16; ++i) {
          const int row = row_of(i);
          const float v = bf16_to_f32(uint16_t(vp[i / 2] >> (16 * (i % 2))));
          r[i] = row < L ? v - rf[(i / 2) % 2] * acc[i] : 0.0f;
        }
        store_acc_t(rt, BT, 0, r);
        wgmma_proxy_fence();
      } else {
        for (int i = 0; i < 16; ++i) o[i] = s[kOf + row_of(i)] * acc[i];
      }
    } else {  // the copies of the chunk after next (into the staging this chunk's rows left)
      stage_qk(c1 + BT, b);
      async_wait<1>();  // the next chunk's rows (this thread's copies; the barrier below: all of them)
    }
    // R^T is WG0's own: it waits for its four warps only.
    // WG1 and WG2 + WG3 take barriers of their own here too, so that every thread passes the
    // same number of barriers a chunk (what compute-sanitizer's racecheck needs to pair the
    // block barriers right).
    if (wg == 0)
      named_barrier_sync<1, 128>();
    else if (wg == 1)
      named_barrier_sync<2, 128>();
    else
      named_barrier_sync<3, 256>();

    // Vn = Tb R (WG0) -> Vn^T, Vd^T.
    if (wg == 0) {
      float vn[16] = {};
      wgmma_issue_m64n32<BT>(vn, tb, 0, rt);
      wgmma_wait<0>(vn);
      store_acc_t(nt, BT, 0, vn);
      for (int i = 0; i < 16; ++i) vn[i] *= s[kUf + row_of(i)];
      store_acc_t(vt, BT, 0, vn);
      wgmma_proxy_fence();
    } else if (wg >= 2) {  // while WG0 runs Tb R: the next chunk's q / k (the buffer's last
      if (c1 < end) unstage_qk(b ^ 1, b ^ 1);  // readers were the previous chunk's), the state's decay
      const float e_last = s[kEg + L - 1];
      for (int i = 0; i < 16; ++i) sr[i] *= e_last;
    }
    __syncthreads();

    if (wg == 1) {  // O += Pm Vn, to the output
      wgmma_issue_m64n32<BT>(o, pm, 0, nt);
      wgmma_wait<0>(o);
      // Columns col_of(i), col_of(i) + 1 as one word: rows r_out (hh = 0) and r_out + 8 (hh = 1),
      // 16-byte steps along the row (i / 4); a full chunk tests no row.
      char* ob = out_c0 + c0 * out_rows.stride;
#pragma unroll
      for (int i = 0; i < 16; i += 2) {
        const int hh = (i / 2) % 2;
        if (L == BT || r_out + 8 * hh < L)
          *reinterpret_cast<uint32_t*>(ob + 8 * hh * out_rows.stride + 16 * (i / 4)) = pack_bf16x2(o[i], o[i + 1]);
      }
    } else if (wg >= 2) {  // S <- exp(gc_last) S + K^T Vd, to S^T
      wgmma_issue_m64n32_at<BT, K>(sr, k_t, m0, vt);  // A = K^T: the k tile, transposed
      wgmma_wait<0>(sr);
      store_acc_t(st, K, m0, sr);
    }
    if (wg == 1) async_wait<0>();  // WG1's copies of the next chunk
    wgmma_proxy_fence();
    __syncthreads();
  }
  if (wg >= 2)
    for (int i = 0; i < 16; ++i) Elem<ST>::store(p.state.at(slot, h, m0 + row_of(i)), v0 + col_of(i), sr[i]);
#else
  (void)p, (void)w, (void)tiles;
#endif
}
#endif  // GDN_HAVE_MMA
