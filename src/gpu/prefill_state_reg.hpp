// Prefill step 3 with the state in registers, for fp32 products (the layer's default precision;
// sm_90; bf16 activations, K = 128, BT = 64): every product a warp's own mma.m16n8k16 chain, in
// the transposed form, so that each product's output fragments are the next product's A operand
// without leaving the registers. fp32 accuracy from split bf16 operands (mma.hpp): S^T, R^T, Vn^T,
// Vd^T and Tb / Pm as hi + lo halves, q / k / v exact (raw bf16): two products where one side is
// exact, three otherwise (316 mma a chunk on a chain warp). Part of prefill.cu
// (included inside its anonymous namespace: Work, TokenRows, TileJob, chunk_len, kBV, kMaxBT;
// swz_at from prefill_state_sm90.hpp).
//
// Each column of S evolves on its own, so a warp can own 16 columns for the whole sequence:
// S^T (16 x K, fp32) in mma accumulator fragments (m = column, n = state row). One block per
// (sequence, value head, 32-column tile), six warps:
//   warps 0, 1 (the chain, columns 16 w ..):  R^T = V^T - (S^T K^T) diag(rf);  Vn^T = R^T Tb^T;
//              S^T <- exp(gc_last) S^T + (Vn^T diag(uf)) K.
//   warps 2, 3 (the output of the same columns):  O^T = (S^T Q^T) diag(of) + Vn^T Pm^T -> out.
//   warps 4, 5: the next chunk's q, k, Tb, Pm, v rows and factors.
// A C fragment (m16 x n8, fp32) packed to bf16 pairs is an A fragment (m16 x k16) of the next
// product, and the shared operands (k, q, Tb, Pm rows, row-major and swizzled in shared memory)
// are B fragments by ldmatrix (.trans for K, whose contraction runs along its rows). So no
// product's output goes through shared memory, and nothing waits on the async proxy: the chain
// warp hands the output warp its S^T and Vn^T fragments through shared memory (bar.arrive /
// bar.sync on a barrier of the two warps), and a chunk ends with one block barrier.
// H100 (docs/perf-notes.md, sessions 19-20): at T = 16384 the state kernel of fp32 products takes
// 743-759 us under ncu (state_mma_kernel, which sm_80 still runs: 1.40 ms). bf16 products stay on
// state_wgmma_kernel: this kernel without the lo halves was 3 % slower in graph replays.
#if GDN_HAVE_MMA
// Warps 0, 1: the chain; 2, 3: the output; 4, 5: move the next chunk's rows and factors (with
// the output warps moving them too: +9 % at T = 16384, bf16 products, H100).
constexpr int kRgBT = 64, kRgK = 128, kRgThreads = 192, kRgVS = kBV + 8;  // v rows: 80 bytes
constexpr int kRgCopiers = 64;

// Shared memory (bytes): q / k rows [buffer][q, k] BT x K, Tb / Pm [buffer][Tb, Pm (, their lo
// halves)] BT x BT (both swizzled row-major, swz_at); v rows [buffer] BT x kRgVS; the fragments
// handed over [chain warp] (8 of S^T, 4 of Vn^T, and their lo halves; 16 bytes a lane each); the
// output rows [output warp] BT x 16; the factors [buffer][rf, of, uf, eg] BT floats.
constexpr size_t kRgQK = size_t(kRgBT) * kRgK * 2, kRgMat = size_t(kRgBT) * kRgBT * 2, kRgV = size_t(kRgBT) * kRgVS * 2,
                 kRgFrag = 32 * 16, kRgOut = size_t(kRgBT) * 16 * 2, kRgSc = 4 * kRgBT * sizeof(float);
constexpr int kRgMats = 4;    // tiles of Tb / Pm a buffer: Tb, Pm, their lo halves
constexpr int kRgFrags = 24;  // fragments a chain warp hands over
constexpr size_t kRgSmemBytes = 4 * kRgQK + 2 * kRgMats * kRgMat + 2 * kRgV + 2 * kRgFrags * kRgFrag + 2 * kRgOut + 2 * kRgSc;

// A fragments (m16 x k16) from C fragments (m16 x n8): c[2 kk], c[2 kk + 1] (n-tiles 2 kk,
// 2 kk + 1) are, as bf16 pairs, the A fragment kk of the contraction over those 16 n (hi), with
// the lo halves (x - bf16(x), see mma.hpp) in lo.
template <int N>
__device__ __forceinline__ void c_to_a(const float (&c)[2 * N][4], uint32_t (&hi)[N][4], uint32_t (&lo)[N][4]) {
#pragma unroll
  for (int kk = 0; kk < N; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float* x = c[2 * kk + r / 2] + 2 * (r % 2);  // r: (row g, n 2 q4), (g + 8, ..), 8 n on
      split2_bf16(x[0], x[1], hi[kk][r], lo[kk][r]);
    }
}

// B fragments (k16 x n8) of two n-tiles from a swizzled row-major tile t with C columns (swz_at),
// each n-tile's pair in consecutive registers (mma's B operand), so that no fragment is moved:
//   rows:  B^T = t, n-tiles = rows n0 .. n0 + 7 (b0), n0 + 8 .. (b1), contraction = columns k0 ..
//          k0 + 15 (ldmatrix);
//   cols:  B = t, contraction = rows k0 .. k0 + 15, n-tiles = columns n0 .. n0 + 7 (b0), n0 + 8 ..
//          (b1) (ldmatrix .trans).
template <int C, bool COLS>
__device__ __forceinline__ void swz_b2(const uint16_t* t, int n0, int k0, uint32_t (&b0)[2], uint32_t (&b1)[2]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int mat = lane / 8;  // b0[0], b0[1], b1[0], b1[1]
  uint32_t r[4];
  if constexpr (COLS)
    ldmatrix_x4_trans(r, reinterpret_cast<const uint32_t*>(t + swz_at<C>(k0 + lane % 8 + 8 * (mat % 2), n0 + 8 * (mat / 2))));
  else
    ldmatrix_x4(r, reinterpret_cast<const uint32_t*>(t + swz_at<C>(n0 + lane % 8 + 8 * (mat / 2), k0 + 8 * (mat % 2))));
  b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
#else
  const int g = lane / 4, q = lane % 4;
  auto pair = [&](int n, int k) {  // B (k, n), (k + 1, n)
    return COLS ? uint32_t(t[swz_at<C>(k, n)]) | (uint32_t(t[swz_at<C>(k + 1, n)]) << 16)
                : uint32_t(t[swz_at<C>(n, k)]) | (uint32_t(t[swz_at<C>(n, k + 1)]) << 16);
  };
  b0[0] = pair(n0 + g, k0 + 2 * q), b0[1] = pair(n0 + g, k0 + 8 + 2 * q);
  b1[0] = pair(n0 + 8 + g, k0 + 2 * q), b1[1] = pair(n0 + 8 + g, k0 + 8 + 2 * q);
#endif
}

// acc[n] (+ corr[n]) += A B over the 8 n-tiles of 64 tokens; A fragment kk and its lo half from
// a[kk] / al[kk]; B^T = the rows of a swizzled row-major tile t with C columns (row = token = n,
// column = contraction). K S^T / Q S^T (MAT false): C = K, B exact (raw bf16 rows). MAT: C = BT,
// the lower-triangular Tb / Pm (token blocks i take k-steps kk <= i: their upper blocks are zero)
// with its lo halves in tl. The cross terms go to corr (shorter chains; the caller adds it).
template <int C, int KS, bool MAT>
__device__ __forceinline__ void rows_product(float (&acc)[8][4], float (&corr)[8][4], const uint32_t (&a)[KS][4],
                                             const uint32_t (&al)[KS][4], const uint16_t* t, const uint16_t* tl) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (MAT && kk > i) continue;
      uint32_t b[2][2];
      swz_b2<C, false>(t, 16 * i, 16 * kk, b[0], b[1]);
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        mma_bf16(acc[2 * i + n], a[kk], b[n]);
        mma_bf16(corr[2 * i + n], al[kk], b[n]);
      }
      if constexpr (MAT) {
        swz_b2<C, false>(tl, 16 * i, 16 * kk, b[0], b[1]);
#pragma unroll
        for (int n = 0; n < 2; ++n) mma_bf16(corr[2 * i + n], a[kk], b[n]);
      }
    }
}
template <int N>
__device__ __forceinline__ void add_to(float (&acc)[N][4], const float (&corr)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] += corr[j][e];
}

template <int32_t ST>
__global__ void __launch_bounds__(kRgThreads, 1) state_reg_kernel(GdnProblem p, Work w, int64_t tiles) {
#if GDN_WGMMA
  constexpr int BT = kRgBT, K = kRgK, NM = kRgMats, NX = kRgFrags;
  constexpr int32_t ACT = GDN_DTYPE_BF16;
  GDN_DYNAMIC_SMEM(unsigned char, rg_sm);
  constexpr size_t kMt = 4 * kRgQK, kVin = kMt + 2 * NM * kRgMat, kXs = kVin + 2 * kRgV, kOt = kXs + 2 * NX * kRgFrag,
                   kSc = kOt + 2 * kRgOut;
  uint16_t* stage = reinterpret_cast<uint16_t*>(rg_sm);         // [buffer][q, k]
  uint16_t* mt = reinterpret_cast<uint16_t*>(rg_sm + kMt);      // [buffer][Tb, Pm (, Tb lo, Pm lo)]
  uint16_t* vin = reinterpret_cast<uint16_t*>(rg_sm + kVin);    // [buffer]
  uint4* xs = reinterpret_cast<uint4*>(rg_sm + kXs);            // [chain warp][NX][32]
  uint16_t* ot = reinterpret_cast<uint16_t*>(rg_sm + kOt);      // [output warp]
  float* sc = reinterpret_cast<float*>(rg_sm + kSc);            // [buffer]
  enum { kRf = 0, kOf = BT, kUf = 2 * BT, kEg = 3 * BT };
  // The handed-over fragments: S^T (8, then their lo halves), Vn^T (4, then lo).
  enum { kXS = 0, kXSl = 8, kXN = 16, kXNl = 20 };

  const int64_t HV = p.d.HV, HK = p.d.HK;
  const TileJob job(p, w, tiles);
  if (!job.has_slot(p)) return job.none<ACT>(p);
  const int64_t h = job.h, hk = job.hk, v0 = job.v0, start = job.start, end = job.end, slot = job.slot;
  const float *mats = job.mats, *gcs = job.gcs, *norms = job.norms;
  const int64_t mats_stride = job.mats_stride;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, q4 = lane % 4;
  const int wc = warp % 2;  // the warp's 16 columns: v0 + 16 wc ..
  uint4* const xw = xs + wc * NX * 32 + lane;  // this lane's handed-over fragments
  const TokenRows q_rows(p.q, hk), k_rows(p.k, hk), v_rows(p.v, h), out_rows(p.out, h);
  auto qk_tile = [&](int b, int kq) { return stage + (2 * b + kq) * (BT * K); };
  auto mat_tile = [&](int b, int i) { return mt + (NM * b + i) * (BT * BT); };  // i: Tb, Pm, Tb lo, Pm lo

  // The chunk's rows by kRgCopiers threads (ct = their index): q / k rows ct / 16 + u NC / 16,
  // piece ct % 16; Tb / Pm rows ct / 8 + u NC / 8, piece ct % 8; v rows ct / 4 + u NC / 4, piece
  // ct % 4 -- fixed per-thread addressing, a chunk adds its rows. Rows past the chunk's end are
  // zero (so R is zero there: zero k rows, zero v, rf = 0).
  constexpr int NC = kRgCopiers;
  const int ct = tid - (kRgThreads - NC), t2 = ct;
  const int rq = ct / 16, xq = 8 * (ct % 16), rm = ct / 8, xm = 8 * (ct % 8), rv = ct / 4, xv = 8 * (ct % 4);
  // Per-thread parts of the addresses, fixed for the sequence: sources at the chunk's row 0, the
  // byte steps between a thread's rows, destinations in buffer 0 (q / k: row rq + NC / 16 u of the
  // swizzled tile is at dq[u % 2] + u NC / 16 K, since the row's low 3 bits take two values).
  constexpr int SQ = NC / 16, SM = NC / 8, SV = NC / 4;  // row steps
  const char* const q0 = q_rows.base + rq * q_rows.stride + 2 * xq;
  const char* const k0 = k_rows.base + rq * k_rows.stride + 2 * xq;
  const float* const m0 = mats + rm * mats_stride + xm / 2;
  const char* const vsrc0 = v_rows.base + rv * v_rows.stride + 2 * (v0 + xv);
  const int64_t q_step = SQ * q_rows.stride, k_step = SQ * k_rows.stride, m_step = SM * mats_stride,
                v_step = SV * v_rows.stride;
  const int dq[2] = {swz_at<K>(rq, xq), swz_at<K>(rq + SQ, xq) - SQ * K};
  const int dm = swz_at<BT>(rm, xm), dv = rv * kRgVS + xv;
  // A workspace row: [Tb: BT / 2 words of hi halves, BT / 2 of lo][Pm: the same] (store_split_pair).
  auto mat_src = [](int i) { return (i % 2) * kMaxBT + (i / 2) * (BT / 2); };
  auto copy_chunk = [&](int64_t c, int b) {
    const int Lc = chunk_len<BT>(c, end);
    const char* qs = q0 + c * q_rows.stride;
    const char* ks = k0 + c * k_rows.stride;
    const float* ms = m0 + c * mats_stride;
    const char* vs = vsrc0 + c * v_rows.stride;
    uint16_t *qd = qk_tile(b, 0), *kd = qk_tile(b, 1);
    uint16_t* vd = vin + b * (BT * kRgVS) + dv;
    if (Lc == BT) {
#pragma unroll
      for (int u = 0; u < BT / SQ; ++u) {
        const int at = dq[u % 2] + u * SQ * K;
        async_copy16(qd + at, qs + u * q_step);
        async_copy16(kd + at, ks + u * k_step);
      }
#pragma unroll
      for (int u = 0; u < BT / SM; ++u)
#pragma unroll
        for (int i = 0; i < NM; ++i) async_copy16(mat_tile(b, i) + dm + u * SM * BT, ms + u * m_step + mat_src(i));
#pragma unroll
      for (int u = 0; u < BT / SV; ++u) async_copy16(vd + u * SV * kRgVS, vs + u * v_step);
    } else {
#pragma unroll
      for (int u = 0; u < BT / SQ; ++u) {
        const int at = dq[u % 2] + u * SQ * K;
        if (rq + u * SQ < Lc) {
          async_copy16(qd + at, qs + u * q_step);
          async_copy16(kd + at, ks + u * k_step);
        } else {
          *reinterpret_cast<uint4*>(qd + at) = make_uint4(0, 0, 0, 0);
          *reinterpret_cast<uint4*>(kd + at) = make_uint4(0, 0, 0, 0);
        }
      }
#pragma unroll
      for (int u = 0; u < BT / SM; ++u)
#pragma unroll
        for (int i = 0; i < NM; ++i) {
          if (rm + u * SM < Lc)
            async_copy16(mat_tile(b, i) + dm + u * SM * BT, ms + u * m_step + mat_src(i));
          else
            *reinterpret_cast<uint4*>(mat_tile(b, i) + dm + u * SM * BT) = make_uint4(0, 0, 0, 0);
        }
#pragma unroll
      for (int u = 0; u < BT / SV; ++u) {
        if (rv + u * SV < Lc)
          async_copy16(vd + u * SV * kRgVS, vs + u * v_step);
        else
          *reinterpret_cast<uint4*>(vd + u * SV * kRgVS) = make_uint4(0, 0, 0, 0);
      }
    }
    async_commit();
  };
  // The per-token factors, a chunk ahead in registers (warps 2, 3: one token a thread).
  float nx_gc = 0.0f, nx_last = 0.0f, nx_qf = 0.0f, nx_kf = 0.0f;
  auto load_scalars = [&](int64_t c) {
    const int Lc = chunk_len<BT>(c, end);
    if (c < end) {
      nx_last = gcs[(c + Lc - 1) * HV];
      nx_gc = t2 < Lc ? gcs[(c + t2) * HV] : 0.0f;
      nx_qf = t2 < Lc ? norms[(c + t2) * 2 * HK + 0] : 0.0f;
      nx_kf = t2 < Lc ? norms[(c + t2) * 2 * HK + 1] : 0.0f;
    }
  };
  auto write_scalars = [&](int b, int Lc) {
    const float eg = t2 < Lc ? expf(nx_gc) : 0.0f, ed = t2 < Lc ? expf(nx_last - nx_gc) : 0.0f;
    float* s = sc + b * 4 * BT;
    s[kRf + t2] = eg * nx_kf, s[kOf + t2] = eg * nx_qf, s[kUf + t2] = ed * nx_kf, s[kEg + t2] = eg;
  };
  // This lane's factors of the 16 tokens 8 j + 2 q4, + 1 (j = 0 .. 7) of a factor row.
  auto token_pairs = [&](const float* row, float2 (&f)[8]) {
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = *reinterpret_cast<const float2*>(row + 8 * j + 2 * q4);
  };

  // The movers: the first chunk's rows and factors (and the second's factors in registers), then
  // at chunk c, the next chunk's into buffer b ^ 1 (whose last readers were the last chunk's).
  auto mover_first = [&]() {
    load_scalars(start);
    if (start < end) {
      copy_chunk(start, 0);
      write_scalars(0, chunk_len<BT>(start, end));
      load_scalars(start + BT);
      async_wait<0>();
    }
  };
  auto mover_next = [&](int64_t c, int b) {
    const int64_t c1 = c + BT;
    if (c1 < end) {
      copy_chunk(c1, b ^ 1);
      write_scalars(b ^ 1, chunk_len<BT>(c1, end));
      load_scalars(c1 + BT);
    }
  };
  // This lane's fragments to / from the hand-over slots at `at` (and their lo halves at `at_lo`).
  auto put = [&](int at, int at_lo, auto& hi, auto& lo) {
#pragma unroll
    for (int kk = 0; kk < int(sizeof(hi) / sizeof(hi[0])); ++kk) {
      xw[(at + kk) * 32] = make_uint4(hi[kk][0], hi[kk][1], hi[kk][2], hi[kk][3]);
      xw[(at_lo + kk) * 32] = make_uint4(lo[kk][0], lo[kk][1], lo[kk][2], lo[kk][3]);
    }
  };
  auto take = [&](int at, int at_lo, auto& hi, auto& lo) {
#pragma unroll
    for (int kk = 0; kk < int(sizeof(hi) / sizeof(hi[0])); ++kk) {
      const uint4 x = xw[(at + kk) * 32];
      hi[kk][0] = x.x, hi[kk][1] = x.y, hi[kk][2] = x.z, hi[kk][3] = x.w;
      const uint4 y = xw[(at_lo + kk) * 32];
      lo[kk][0] = y.x, lo[kk][1] = y.y, lo[kk][2] = y.z, lo[kk][3] = y.w;
    }
  };
  auto scale_tokens = [&](float (&x)[8][4], const float* row) {  // x (n = tokens) diag(row)
    float2 f[8];
    token_pairs(row, f);
#pragma unroll
    for (int j = 0; j < 8; ++j) x[j][0] *= f[j].x, x[j][1] *= f[j].y, x[j][2] *= f[j].x, x[j][3] *= f[j].y;
  };

  if (warp < 2) {
    // S^T of columns c0 .. c0 + 15: n-tile j = state rows 8 j ..; entries (column g, rows 8 j +
    // 2 q4, + 1) and (column g + 8, the same rows).
    const int64_t c0 = v0 + 16 * wc;
    float st[16][4];
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        st[j][e] = job.initial ? Elem<ST>::load(p.state.at(slot, h, 8 * j + 2 * q4 + e % 2), c0 + g + 8 * (e / 2)) : 0.0f;
    __syncthreads();  // the first chunk's rows and factors

    int b = 0;
    for (int64_t c = start; c < end; c += BT, b ^= 1) {
      const int L = chunk_len<BT>(c, end);
      const float* s = sc + b * 4 * BT;
      {
        uint32_t sa[8][4], sl[8][4];
        c_to_a<8>(st, sa, sl);
        put(kXS, kXSl, sa, sl);
      }
      named_barrier_arrive<64>(1 + wc);  // S^T to the output warp

      // R^T = V^T - (S^T K^T) diag(rf) (zero past L: the rows are).
      float r[8][4] = {}, rc[8][4] = {};
      {
        uint32_t sa[8][4], sl[8][4];  // (back from the hand-over slots: fewer live registers)
        take(kXS, kXSl, sa, sl);
        rows_product<K, 8, false>(r, rc, sa, sl, qk_tile(b, 1), nullptr);
      }
      add_to(r, rc);
      {
        float2 rf[8];
        token_pairs(s + kRf, rf);
        const uint32_t* vw = reinterpret_cast<const uint32_t*>(vin + b * (BT * kRgVS));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint32_t v[4];  // (column g / g + 8, tokens 16 i + 2 q4 ..) and 8 tokens on
          load_a1_trans(vw, kRgVS / 2, 16 * wc, 16 * i, v);
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int j = 2 * i + e / 2;
            const uint32_t pair = v[e];
            float* x = r[j] + 2 * (e % 2);
            x[0] = bf16_to_f32(uint16_t(pair & 0xffffu)) - rf[j].x * x[0];
            x[1] = bf16_to_f32(uint16_t(pair >> 16)) - rf[j].y * x[1];
          }
        }
      }

      // Vn^T = R^T Tb^T, to the output warp; Vd^T = Vn^T diag(uf).
      float vn[8][4] = {};
      {
        uint32_t ra[4][4], rl[4][4];
        c_to_a<4>(r, ra, rl);
        float vc[8][4] = {};
        rows_product<BT, 4, true>(vn, vc, ra, rl, mat_tile(b, 0), mat_tile(b, 2));
        add_to(vn, vc);
      }
      {
        uint32_t na[4][4], nl[4][4];
        c_to_a<4>(vn, na, nl);
        put(kXN, kXNl, na, nl);
      }
      named_barrier_arrive<64>(3 + wc);
      scale_tokens(vn, s + kUf);
      uint32_t da[4][4], dl[4][4];
      c_to_a<4>(vn, da, dl);

      // S^T <- exp(gc_last) S^T + Vd^T K (B = K: k-steps along its rows, ldmatrix .trans; exact).
      const float e_last = s[kEg + L - 1];
#pragma unroll
      for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[j][e] *= e_last;
      const uint16_t* kt = qk_tile(b, 1);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int m = 0; m < 8; ++m) {
          uint32_t bb[2][2];
          swz_b2<K, true>(kt, 16 * m, 16 * kk, bb[0], bb[1]);
#pragma unroll
          for (int n = 0; n < 2; ++n) {
            mma_bf16(st[2 * m + n], dl[kk], bb[n]);
            mma_bf16(st[2 * m + n], da[kk], bb[n]);
          }
        }
      __syncthreads();  // the chunk's end
    }
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) Elem<ST>::store(p.state.at(slot, h, 8 * j + 2 * q4 + e % 2), c0 + g + 8 * (e / 2), st[j][e]);
  } else if (warp < 4) {
    __syncthreads();
    // This lane's output pieces: rows lane / 2 + 16 u of the chunk, 8 columns v0 + 16 wc + 8 (lane % 2) ..
    char* const out_c0 = out_rows.base + (lane / 2) * out_rows.stride + 2 * (v0 + 16 * wc + 8 * (lane % 2));
    uint16_t* const ow = ot + wc * (BT * 16);
    int b = 0;
    for (int64_t c = start; c < end; c += BT, b ^= 1) {
      const int L = chunk_len<BT>(c, end);
      // O^T = (S^T Q^T) diag(of) + Vn^T Pm^T.
      float o[8][4] = {}, oc[8][4] = {};
      named_barrier_sync<64>(1 + wc);
      {
        uint32_t sa[8][4], sl[8][4];
        take(kXS, kXSl, sa, sl);
        rows_product<K, 8, false>(o, oc, sa, sl, qk_tile(b, 0), nullptr);
      }
      add_to(o, oc);
      scale_tokens(o, sc + b * 4 * BT + kOf);
      named_barrier_sync<64>(3 + wc);
      {
        uint32_t na[4][4], nl[4][4];
        take(kXN, kXNl, na, nl);
        float pc[8][4] = {};
        rows_product<BT, 4, true>(o, pc, na, nl, mat_tile(b, 1), mat_tile(b, 3));
        add_to(o, pc);
      }
      // The output: O (tokens x the warp's 16 columns) as bf16 rows of 32 bytes in the warp's tile
      // (stmatrix .trans of the fragments), then 16-byte pieces to the output rows.
#if GDN_LDMATRIX
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // tokens 16 i ..: matrices (tokens + 0 / 8) x (columns 0 / 8 ..)
        const uint32_t f[4] = {pack_bf16x2(o[2 * i][0], o[2 * i][1]), pack_bf16x2(o[2 * i][2], o[2 * i][3]),
                               pack_bf16x2(o[2 * i + 1][0], o[2 * i + 1][1]), pack_bf16x2(o[2 * i + 1][2], o[2 * i + 1][3])};
        const int m = lane / 8;
        stmatrix_x4_trans(ow + (16 * i + 8 * (m / 2) + lane % 8) * 16 + 8 * (m % 2), f);
      }
#else
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const uint32_t x = pack_bf16x2(o[j][e], o[j][e]);
          ow[(8 * j + 2 * q4 + e % 2) * 16 + g + 8 * (e / 2)] = uint16_t(x & 0xffffu);
        }
#endif
      __syncwarp();
      char* ob = out_c0 + c * out_rows.stride;
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (lane / 2 + 16 * u < L)
          *reinterpret_cast<uint4*>(ob + 16 * u * out_rows.stride) =
              *reinterpret_cast<const uint4*>(ow + (lane / 2 + 16 * u) * 16 + 8 * (lane % 2));
      __syncthreads();  // the chunk's end
    }
  } else {
    mover_first();
    __syncthreads();
    int b = 0;
    for (int64_t c = start; c < end; c += BT, b ^= 1) {
      mover_next(c, b);
      async_wait<0>();
      __syncthreads();
    }
  }
#else
  (void)p, (void)w, (void)tiles;
#endif
}
#endif  // GDN_HAVE_MMA
