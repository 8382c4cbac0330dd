// Prefill step 3 on Hopper warpgroup products (sm_90a wgmma; bf16 activations, K = 128, BT = 64):
// the state kernel with every product one asynchronous m64n32k16 chain, A from registers (loaded
// by ldmatrix from swizzled row-major tiles), B from core-layout tiles in shared memory
// (wgmma.hpp). Part of prefill.cu (included inside its anonymous namespace: Work, TokenRows,
// TileJob, chunk_len, kBV, kMaxBT).
//
// One block per (sequence, value head, 32-column tile of S), four warpgroups with fixed roles,
// one loop each:
//   WG0  K S (A = the raw k rows, B = S^T) -> R = V - exp(gc) kf K S -> R^T;
//        then Vn = Tb R -> Vn^T and Vd^T = (exp(gc_last - gc) kf Vn)^T.
//   WG1  the copies of the next chunk's Tb, Pm, v and its factors; Q S -> O = exp(gc) qf Q S,
//        kept in registers; then O += Pm Vn -> out.
//   WG2, WG3  the copies of q and k while K S runs; then S <- exp(gc_last) S + K^T Vd on their
//        64 state rows 64 (wg - 2) .. (fp32, in registers for the whole sequence) -> S^T for the
//        next chunk.
// A chunk: K S; a barrier of WG0's own (R^T is its own; the others take barriers of their own
// there); Tb R and Q S; a block barrier; the update and O += Pm Vn; a block barrier. q and k are
// copied two chunks ahead into swizzled row-major staging (three buffers, stage_qk), Tb, Pm and v
// too (copy_mats_v, three buffers; with one chunk's lead, their copies' latency was on the
// chain), the decays and norm factors a chunk ahead into registers; every A operand is ldmatrix'd
// from those tiles (.trans gives K^T), so nothing is moved into the core layout but the products'
// own outputs. The A fragments of the next chunk's K S and Q S are loaded before the chunk's last
// barrier.
// Bf16 products only (the layer's GDN_PRECISION_BF16: every operand rounded to bf16, the state
// itself kept in fp32): with split operands for fp32 accuracy (two or three products each) this
// kernel measured slower than state_mma_kernel on the H100 (docs/perf-notes.md, session 11), so
// that precision stays there.
#if GDN_HAVE_MMA
constexpr int kWgBT = 64, kWgK = 128, kWgThreads = 512;

// Shared memory (bf16 elements unless noted), all 128-byte aligned: the products' B operands (S^T,
// R^T, Vn^T, Vd^T) in the core layout (wgmma.hpp); q / k staging, Tb / Pm (swz_at) and v rows
// row-major; the output tile (out_at); the per-token factors (floats).
constexpr int kWgST = kBV * kWgK, kWgMT = kWgBT * kWgBT, kWgVT = kBV * kWgBT, kWgVin = kWgBT * kBV, kWgOut = kWgBT * kBV;
// q / k staging rows: [buffer][q, k] BT x K row-major, three buffers (a chunk's rows are read
// until its end while the next two chunks' are copied), each row's 16-byte pieces swizzled
// (swz_at) so that the 8 rows of an ldmatrix are 8 different bank groups and a copy's 8 pieces
// of a row fill one aligned 128-byte line.
constexpr int kWgStage = kWgBT * kWgK;
constexpr size_t kWgSmemBytes = size_t(6 * kWgStage + kWgST + 6 * kWgMT + 3 * kWgVT + 3 * kWgVin + kWgOut) * 2 +
                                2 * 4 * kWgBT * sizeof(float);

// Element (r, c) of a swizzled row-major bf16 tile with C columns (a multiple of 64): the 16-byte
// piece c / 8 of row r at piece (c / 8) ^ (r % 8) of its 128-byte line, so that a copy's 8 pieces
// of a row fill one aligned line and the 8 rows of an ldmatrix are 8 different bank groups.
template <int C>
__device__ __forceinline__ int swz_at(int r, int c) {
  const int piece = c >> 3;
  return r * C + ((piece & ~7) | ((piece ^ r) & 7)) * 8 + (c & 7);
}
// A fragment (mma.m16n8k16's layout; wgmma's register A) of rows r0 .. r0 + 15, columns c0 ..
// c0 + 15 of a swizzled tile t with C columns (r0 a multiple of 8, c0 of 16).
template <int C>
__device__ __forceinline__ void swz_a(const uint16_t* t, int r0, int c0, uint32_t (&a)[4]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int mat = lane / 8;  // a0: (r0, c0), a1: (r0 + 8, c0), a2: (r0, c0 + 8), a3: (r0 + 8, c0 + 8)
  ldmatrix_x4(a, reinterpret_cast<const uint32_t*>(t + swz_at<C>(r0 + lane % 8 + 8 * (mat % 2), c0 + 8 * (mat / 2))));
#else
  const int g = lane / 4, q = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int r = r0 + g + 8 * (i % 2), c = c0 + 2 * q + 8 * (i / 2);
    a[i] = uint32_t(t[swz_at<C>(r, c)]) | (uint32_t(t[swz_at<C>(r, c + 1)]) << 16);
  }
#endif
}
// The A fragment of the transposed tile: A rows m0 .. m0 + 15 = columns of t, contraction j0 ..
// j0 + 15 = rows of t (m0 a multiple of 8, j0 of 16).
template <int C>
__device__ __forceinline__ void swz_a_trans(const uint16_t* t, int m0, int j0, uint32_t (&a)[4]) {
  const int lane = threadIdx.x % 32;
#if GDN_LDMATRIX
  const int mat = lane / 8;  // a0: (m0, j0), a1: (m0 + 8, j0), a2: (m0, j0 + 8), a3: (m0 + 8, j0 + 8)
  ldmatrix_x4_trans(a, reinterpret_cast<const uint32_t*>(t + swz_at<C>(j0 + lane % 8 + 8 * (mat / 2), m0 + 8 * (mat % 2))));
#else
  const int g = lane / 4, q = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + g + 8 * (i % 2), j = j0 + 2 * q + 8 * (i / 2);
    a[i] = uint32_t(t[swz_at<C>(j, m)]) | (uint32_t(t[swz_at<C>(j + 1, m)]) << 16);
  }
#endif
}

// Element (r, c) of the output tile (BT x kBV bf16, 64-byte rows): the 16-byte piece c / 8 of row r
// at piece (c / 8) ^ ((r / 2) % 4), so that stmatrix's 8 rows of a matrix and a quarter warp's
// 16-byte reads of two rows are 8 different bank groups.
__device__ __forceinline__ int out_at(int r, int c) { return r * kBV + (((c >> 3) ^ (r >> 1)) & 3) * 8 + (c & 7); }

// Row and column of entry i (0..15) of a 64 x 32 accumulator held by warp w4 of a warpgroup as
// m16n8 fragments (lane = 4 g + q): rows 16 w4 + g (+ 8), columns 8 (i / 4) + 2 q (+ 1).
__device__ __forceinline__ int acc_row(int w4, int g, int i) { return 16 * w4 + g + 8 * ((i / 2) % 2); }
__device__ __forceinline__ int acc_col(int q, int i) { return 8 * (i / 4) + 2 * q + i % 2; }

// The pairs of a BT x kBV bf16 tile in out_at's layout (the raw v rows) at this thread's entries of
// a 64 x 32 accumulator (pair j: entries 2 j, 2 j + 1): two ldmatrix.x4, each 8 x 8 matrix one
// block of the fragment (the swizzle puts its 8 rows of 16 bytes in 8 bank groups).
__device__ __forceinline__ void v_pairs(const uint16_t* t, uint32_t (&vp)[8]) {
  const int lane = threadIdx.x % 32, w4 = (threadIdx.x / 32) % 4;
#if GDN_LDMATRIX
  const int r = 16 * w4 + lane % 8 + 8 * ((lane / 8) % 2);  // matrix lane / 8: rows + 8 (m % 2), columns + 8 (m / 2)
  for (int h = 0; h < 2; ++h) {
    uint32_t x[4];
    ldmatrix_x4(x, reinterpret_cast<const uint32_t*>(t + out_at(r, 16 * h + 8 * (lane / 16))));
    for (int m = 0; m < 4; ++m) vp[4 * h + m] = x[m];
  }
#else
  const int g = lane / 4, q = lane % 4;
  for (int j = 0; j < 8; ++j)
    vp[j] = *reinterpret_cast<const uint32_t*>(t + out_at(acc_row(w4, g, 2 * j), acc_col(q, 2 * j)));
#endif
}

// Rows 8 h .. 8 h + 7 of this warp's 16 rows of a 64 x 32 accumulator x as bf16 pairs, one word
// per 8 x 8 block (block q: columns 8 q ..): the fragments of four matrices as stmatrix takes them.
__device__ __forceinline__ void acc_pairs(const float (&x)[16], int h, uint32_t (&f)[4]) {
  for (int q = 0; q < 4; ++q) f[q] = pack_bf16x2(x[4 * q + 2 * h], x[4 * q + 2 * h + 1]);
}

// x (this warp's 16 rows of a 64 x 32 accumulator) rounded to bf16 into the BT x kBV tile t in
// out_at's layout, row for row: one stmatrix of four blocks for each 8 rows (v_pairs' inverse).
__device__ inline void store_acc_rows(uint16_t* t, const float (&x)[16]) {
  const int lane = threadIdx.x % 32, w4 = (threadIdx.x / 32) % 4;
#if GDN_WGMMA && GDN_LDMATRIX  // (stmatrix: sm_90)
  for (int h = 0; h < 2; ++h) {  // rows 16 w4 + 8 h ..; matrix q = columns 8 q ..
    uint32_t f[4];
    acc_pairs(x, h, f);
    stmatrix_x4(t + out_at(16 * w4 + 8 * h + lane % 8, 8 * (lane / 8)), f);
  }
#else
  const int g = lane / 4, q = lane % 4;
  for (int i = 0; i < 16; i += 2) {
    const int r = acc_row(w4, g, i), c = acc_col(q, i);
    const uint32_t p = pack_bf16x2(x[i], x[i + 1]);
    t[out_at(r, c)] = uint16_t(p & 0xffffu), t[out_at(r, c + 1)] = uint16_t(p >> 16);
  }
#endif
}

// x (a 64 x 32 accumulator of this thread's warpgroup, rows r0 .. of the product) rounded to
// bf16 and transposed into the core-layout tile `t` with C columns: element (column, r0 + row).
// Each 8 x 8 block of a warp's fragment is one core matrix of the transposed tile: two
// stmatrix.trans of four blocks each.
__device__ inline void store_acc_t(uint16_t* t, int C, int r0, const float (&x)[16]) {
  const int lane = threadIdx.x % 32, w4 = (threadIdx.x / 32) % 4;
#if GDN_WGMMA && GDN_LDMATRIX
  for (int h = 0; h < 2; ++h) {  // rows 16 w4 + 8 h .. + 7; block q = columns 8 q .. 8 q + 7
    uint32_t f[4];
    acc_pairs(x, h, f);
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
  uint16_t* stage = sm;            // [buffer][q, k]  BT x K  raw rows (swz_at)
  uint16_t* st = stage + 6 * kWgStage;  // NB x K  S^T
  uint16_t* mt = st + kWgST;       // [buffer][Tb, Pm]  BT x BT  (swz_at), three buffers
  uint16_t* rt = mt + 6 * kWgMT;   // NB x BT  R^T
  uint16_t* nt = rt + kWgVT;       // Vn^T
  uint16_t* vt = nt + kWgVT;       // Vd^T
  uint16_t* vin = vt + kWgVT;      // [buffer]  BT x NB  raw v rows (out_at), three buffers
  uint16_t* ot = vin + 3 * kWgVin;  // BT x NB  the output's bf16 rows (out_at), WG1's
  float* sc = reinterpret_cast<float*>(ot + kWgOut);  // [buffer][rf, of, uf, eg]  BT
  enum { kRf = 0, kOf = BT, kUf = 2 * BT, kEg = 3 * BT };

  const int64_t HV = p.d.HV, HK = p.d.HK;
  const TileJob job(p, w, tiles);  // NB == kBV columns a block
  if (!job.has_slot(p)) return job.none<ACT>(p);
  const int64_t h = job.h, hk = job.hk, v0 = job.v0, start = job.start, end = job.end, slot = job.slot;
  const bool initial = job.initial;
  const float *mats = job.mats, *gcs = job.gcs, *norms = job.norms;
  const int64_t mats_stride = job.mats_stride;
  const int tid = threadIdx.x, wg = tid / 128, w4 = (tid / 32) % 4, g = (tid % 32) / 4, q4 = tid % 4;
  auto row_of = [&](int i) { return acc_row(w4, g, i); };  // this thread's accumulator entry i
  auto col_of = [&](int i) { return acc_col(q4, i); };
  const TokenRows q_rows(p.q, hk), k_rows(p.k, hk), v_rows(p.v, h), out_rows(p.out, h);

  // q and k (32 KB a chunk) two chunks ahead: WG2 and WG3 copy the raw rows by cp.async into
  // row-major staging (a warp: 2 rows x 256 contiguous bytes, so the L2 requests merge -- 16-byte
  // copies straight into the core layout made one request each, and the request rate saturated
  // L2); the products take them from there by ldmatrix (the core layout's copy, 64 KB of shared
  // memory traffic a chunk beside Tb R, is gone). Rows past the chunk's end are zero (the products
  // read every row). Tb and Pm (their hi halves: bf16) and v
  // come by cp.async from WG1 (issued before Q S, awaited at the end of the chunk).
  // The per-thread part of every copy's addressing is fixed (row r2 + 16 u, piece x2); a chunk
  // adds c rows, and a full chunk takes no per-copy tests (ncu: ~29 instructions a copy, 64-bit
  // address math and a branch each, were a fifth of the kernel's instructions).
  const int t2 = tid % 256, r2 = t2 / 16, x2 = 8 * (t2 % 16);
  const char* q_src = q_rows.base + r2 * q_rows.stride + 2 * x2;
  const char* k_src = k_rows.base + r2 * k_rows.stride + 2 * x2;
  uint16_t* const stage_dst = stage + swz_at<K>(r2, x2);  // + 16 K a step of 16 rows
  auto stage_qk = [&](int64_t c, int sb) {  // one commit group, empty past the end
    if (c < end) {
      const int Lc = chunk_len<BT>(c, end);
      const char* qs = q_src + c * q_rows.stride;
      const char* ks = k_src + c * k_rows.stride;
      uint16_t* d = stage_dst + 2 * sb * kWgStage;
      if (Lc == BT) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          async_copy16(d + 16 * u * K, qs + 16 * u * q_rows.stride);
          async_copy16(d + kWgStage + 16 * u * K, ks + 16 * u * k_rows.stride);
        }
      } else {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          if (r2 + 16 * u < Lc) {
            async_copy16(d + 16 * u * K, qs + 16 * u * q_rows.stride);
            async_copy16(d + kWgStage + 16 * u * K, ks + 16 * u * k_rows.stride);
          } else {
            *reinterpret_cast<uint4*>(d + 16 * u * K) = make_uint4(0, 0, 0, 0);
            *reinterpret_cast<uint4*>(d + kWgStage + 16 * u * K) = make_uint4(0, 0, 0, 0);
          }
        }
      }
    }
    async_commit();
  };

  // WG1 (t1 = 0 .. 127): Tb and Pm rows t1 / 8 + 16 q (q = 0 .. 3), piece t1 % 8, into swizzled
  // row-major tiles (swz_at: a quarter warp's 8 pieces fill one 128-byte line; into the core
  // layout they were 8 pieces of one bank group, and an LDGSTS's shared writes follow its global
  // sectors, so no lane order served both: ncu measured 32 wavefronts and 32 sectors an
  // instruction, now 4 and 16); v rows t1 / 4 + 32 q (q = 0, 1), piece t1 % 4. Fixed per-thread
  // addressing as in stage_qk.
  const int t1 = tid % 128;
  const float* mats_src = mats + (t1 / 8) * mats_stride + 4 * (t1 % 8);
  const int mats_dst = swz_at<BT>(t1 / 8, 8 * (t1 % 8));  // + 16 BT a step of 16 rows
  const char* v_src = v_rows.base + (t1 / 4) * v_rows.stride + 2 * (v0 + 8 * (t1 % 4));
  const int v_dst = out_at(t1 / 4, 8 * (t1 % 4));  // the output tile's swizzle (+ 32 NB a step of 32 rows)
  auto copy_mats_v = [&](int64_t c, int b) {  // one commit group, empty past the end
    if (c >= end) return async_commit();
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

  // WG1's output pieces: rows 16 w4 + lane / 4 + 8 u (u = 0, 1) of the chunk, columns v0 + 8 (lane % 4) ..
  const int out_row = 16 * w4 + (tid % 32) / 4, out_pc = tid % 4;
  char* const out_c0 = out_rows.base + out_row * out_rows.stride + 2 * (v0 + 8 * out_pc);

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
      copy_mats_v(start + BT, 1);
      async_wait<1>();
    }
  }
  wgmma_proxy_fence();
  __syncthreads();

  // The chunks, one loop per role (so that each role's registers hold only its own values). Every
  // thread passes the same barriers a chunk: its warpgroup's named barrier after the first phase,
  // then two block barriers. b: the buffer of the factors (chunk index mod 2); sb: the q / k
  // staging and Tb / Pm / v (mod 3).
  auto after = [](int sb) { return sb == 2 ? 0 : sb + 1; };   // the next chunk's buffer (mod 3)
  auto before = [](int sb) { return sb == 0 ? 2 : sb - 1; };  // the last chunk's, the one after next
  auto next = [&](int& b, int& sb) { b ^= 1, sb = after(sb); };
  auto staging = [&](int sb, int kq) { return stage + (2 * sb + kq) * kWgStage; };
  // The A fragments (warp w4: rows 16 w4 ..) of staged rows: q (kq = 0) or k (1) of buffer sb.
  auto rows_a = [&](int sb, int kq, uint32_t (&a)[8][4]) {
    for (int k = 0; k < 8; ++k) swz_a<K>(staging(sb, kq), 16 * w4, 16 * k, a[k]);
  };
  if (wg == 0) {  // K S -> R^T; Vn = Tb R -> Vn^T, Vd^T
    int b = 0, sb = 0;
    uint32_t a[8][4];  // A = the k rows (warp w4: rows 16 w4 ..), loaded before the last chunk's end
    if (start < end) rows_a(0, 1, a);
    for (int64_t c0 = start; c0 < end; c0 += BT, next(b, sb)) {
      const int L = chunk_len<BT>(c0, end);
      const float* s = sc + b * 4 * BT;
      float acc[16] = {};
      wgmma_issue_m64n32_rs<8, K>(acc, a, st);
      uint32_t tbf[4][4];  // while the product runs: Tb (the A of Tb R), the v pairs and row factors of R
      for (int k = 0; k < 4; ++k) swz_a<BT>(mt + 2 * sb * kWgMT, 16 * w4, 16 * k, tbf[k]);
      uint32_t vp[8];  // v's pairs at the accumulator's entries (2 j, 2 j + 1)
      v_pairs(vin + sb * kWgVin, vp);
      const float rf[2] = {s[kRf + row_of(0)], s[kRf + row_of(2)]};
      wgmma_wait<0>(acc);
      float r[16];
      for (int i = 0; i < 16; ++i) {
        const float v = bf16_to_f32(uint16_t(vp[i / 2] >> (16 * (i % 2))));
        r[i] = row_of(i) < L ? v - rf[(i / 2) % 2] * acc[i] : 0.0f;
      }
      store_acc_t(rt, BT, 0, r);
      wgmma_proxy_fence();
      named_barrier_sync<1, 128>();  // R^T is WG0's own

      float vn[16] = {};
      wgmma_issue_m64n32_rs<4, BT>(vn, tbf, rt);
      const float uf[2] = {s[kUf + row_of(0)], s[kUf + row_of(2)]};
      wgmma_wait<0>(vn);
      store_acc_t(nt, BT, 0, vn);
      for (int i = 0; i < 16; ++i) vn[i] *= uf[(i / 2) % 2];
      store_acc_t(vt, BT, 0, vn);
      wgmma_proxy_fence();
      __syncthreads();
      if (c0 + BT < end) rows_a(after(sb), 1, a);  // the next chunk's k rows (visible since the last barrier)
      __syncthreads();  // (the update and O += Pm Vn)
    }
  } else if (wg == 1) {  // Tb, Pm, v two chunks ahead, the factors one; Q S -> O; O += Pm Vn -> out
    int b = 0, sb = 0;
    uint32_t qa[8][4];  // A = the q rows, loaded before the last chunk's end
    if (start < end) rows_a(0, 0, qa);
    for (int64_t c0 = start; c0 < end; c0 += BT, next(b, sb)) {
      const int L = chunk_len<BT>(c0, end);
      const int64_t c1 = c0 + BT;
      const float* s = sc + b * 4 * BT;
      copy_mats_v(c0 + 2 * BT, before(sb));  // into the buffer the last chunk's readers left
      if (c1 < end) {  // (factor buffer b ^ 1's last readers were the last chunk's)
        write_scalars(b ^ 1, chunk_len<BT>(c1, end));
        load_scalars(c1 + BT);
      }
      named_barrier_sync<2, 128>();
      // Q S -> O beside Tb R (off K S's phase: S^T and the q rows stay until the update).
      float o[16] = {};
      wgmma_issue_m64n32_rs<8, K>(o, qa, st);
      wgmma_wait<0>(o);
      uint32_t pmf[4][4];  // Pm (the A of Pm Vn), once Q S's registers are free
      for (int k = 0; k < 4; ++k) swz_a<BT>(mt + 2 * sb * kWgMT + kWgMT, 16 * w4, 16 * k, pmf[k]);
      const float of[2] = {s[kOf + row_of(0)], s[kOf + row_of(2)]};
      for (int i = 0; i < 16; ++i) o[i] *= of[(i / 2) % 2];
      __syncthreads();

      wgmma_issue_m64n32_rs<4, BT>(o, pmf, nt);
      wgmma_wait<0>(o);
      // The output: the warp's 16 rows as bf16 into the tile (stmatrix), then back as 16-byte
      // pieces, each a full quarter of a 64-byte row, to the output rows (a warp's store: 8 rows x
      // 64 bytes). 8 four-byte stores a thread (8 half-used sectors each) queued ahead of WG2 /
      // WG3's fence on the chunk's path; these are 2.
      store_acc_rows(ot, o);
      __syncwarp();
      char* ob = out_c0 + c0 * out_rows.stride;
#pragma unroll
      for (int u = 0; u < 2; ++u)
        if (L == BT || out_row + 8 * u < L)
          *reinterpret_cast<uint4*>(ob + 8 * u * out_rows.stride) =
              *reinterpret_cast<const uint4*>(ot + out_at(out_row + 8 * u, 8 * out_pc));
      async_wait<1>();  // the next chunk's copies (read by ldmatrix and plain loads: no proxy fence)
      if (c1 < end) rows_a(after(sb), 0, qa);  // the next chunk's q rows (visible since the last barrier)
      __syncthreads();
    }
  } else {  // the copies of q / k; S <- exp(gc_last) S + K^T Vd -> S^T
    int b = 0, sb = 0;
    for (int64_t c0 = start; c0 < end; c0 += BT, next(b, sb)) {
      const int L = chunk_len<BT>(c0, end);
      const float* s = sc + b * 4 * BT;
      stage_qk(c0 + 2 * BT, before(sb));  // into the staging the last chunk's rows left
      async_wait<1>();  // the next chunk's rows (this thread's copies; the block barrier: all of them)
      named_barrier_sync<3, 256>();

      uint32_t kt[4][4];  // A = K^T: state rows m0 + 16 w4 .., while WG0 runs Tb R
      for (int k = 0; k < 4; ++k) swz_a_trans<K>(staging(sb, 1), m0 + 16 * w4, 16 * k, kt[k]);
      const float e_last = s[kEg + L - 1];
      for (int i = 0; i < 16; ++i) sr[i] *= e_last;
      __syncthreads();

      wgmma_issue_m64n32_rs<4, BT>(sr, kt, vt);
      wgmma_wait<0>(sr);
      store_acc_t(st, K, m0, sr);
      wgmma_proxy_fence();
      __syncthreads();
    }
    for (int i = 0; i < 16; ++i) Elem<ST>::store(p.state.at(slot, h, m0 + row_of(i)), v0 + col_of(i), sr[i]);
  }
#else
  (void)p, (void)w, (void)tiles;
#endif
}
#endif  // GDN_HAVE_MMA
