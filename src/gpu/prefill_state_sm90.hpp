// Prefill step 3 on Hopper warpgroup products (sm_90a wgmma; bf16 activations, K = 128, BT = 64):
// the state kernel with every product one asynchronous m64n32k16 chain (wgmma.hpp). Part of
// prefill.cu (included inside its anonymous namespace: Work, TokenRows, TileJob, chunk_len, kBV,
// kMaxBT).
//
// One block per (sequence, value head, 32-column tile of S). The chain from one chunk to the next
// is shortened by the cross-chunk Gram matrix G_j = K_j K_{j-1}^T (chunk_kernel, Work::gram):
//   K_j S_{j-1} = e_{j-1} K_j S_{j-2} + G_j Vd_{j-1}
// (S_j = the state after chunk j, e_j its total decay, Vd_j = diag(exp(gc_last - gc) kf) Vn_j), so
// the state update and K_j S_{j-2} run beside the chain instead of on it. Chunk j, one block
// barrier at its end, four warpgroups with fixed roles:
//   WG0 (the chain)  R = V - diag(rf) (e_{j-1} X_j + G_j Vd_{j-1}) -> R^T; Vn = Tb R -> Vn^T, Vd^T;
//        its v words a chunk ahead in registers; the copy of Pm (it has the time: the copies, not
//        the chain, are the longest path of a chunk now).
//   WG1  O_{j-1} = diag(of) Q_{j-1} S_{j-2} + Pm_{j-1} Vn_{j-1} -> out (a chunk behind); the copies
//        of G, Tb (a chunk ahead) and the per-token factors.
//   WG2, WG3  state rows m0 = 64 (wg - 2) .. + 63 in fp32 registers for the whole sequence:
//        S_{j-1} = e_{j-1} S_{j-2} + K_{j-1}^T Vd_{j-1} -> S^T; then their rows' half of
//        X_{j+1} = K_{j+1} S_{j-1} (WG0 adds the halves: shared-memory float atomics are compare-
//        and-swap loops on the H100, and cost more than the rest of the update); the copies of q, k.
// q and k stay in row-major staging (cp.async, a chunk or two ahead) and enter the products as
// register operands (ldmatrix, .trans for K^T): no core-layout copies or transposes of them.
// Bf16 products only (the layer's GDN_PRECISION_BF16: every operand rounded to bf16, the state
// itself kept in fp32): with split operands for fp32 accuracy (two or three products each) the
// warpgroup kernel measured slower than state_mma_kernel on the H100 (docs/perf-notes.md, session
// 11), so that precision stays there.
#if GDN_HAVE_MMA
constexpr int kWgBT = 64, kWgK = 128, kWgThreads = 512;

// Shared memory (bytes), all 128-byte aligned: core-layout tiles (wgmma.hpp); q / k staging rows
// (row-major, padded by 16 bytes so that the 8 rows of an ldmatrix are 8 different bank groups).
constexpr int kWgSP = kWgK + 8, kWgStage = kWgBT * kWgSP;
constexpr int kWgST = kBV * kWgK, kWgMT = kWgBT * kWgBT, kWgVT = kBV * kWgBT;
constexpr size_t kWgSmemBytes = size_t(6 * kWgStage + 2 * kWgST + 6 * kWgMT + 5 * kWgVT) * 2 +
                                size_t(4 * kWgBT * kBV + 3 * 4 * kWgBT) * sizeof(float);

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

// A barrier of one warpgroup's 128 threads (ids 1 .. 4). Every warpgroup passes one a chunk, so
// that every thread passes the same number of barriers (what compute-sanitizer's racecheck needs
// to pair the block barriers right). The simulator has no named barriers: a block barrier there.
__device__ __forceinline__ void warpgroup_barrier(int wg) {
#if defined(GDN_GPU_SIM)
  (void)wg;
  __syncthreads();
#else
  asm volatile("bar.sync %0, 128;\n" ::"r"(wg + 1) : "memory");
#endif
}

template <int32_t ST>
__global__ void __launch_bounds__(kWgThreads) state_wgmma_kernel(GdnProblem p, Work w, int64_t tiles) {
#if GDN_WGMMA
  constexpr int BT = kWgBT, K = kWgK, NB = kBV, SP = kWgSP;
  constexpr int32_t ACT = GDN_DTYPE_BF16;
  GDN_DYNAMIC_SMEM(uint16_t, sm);
  uint16_t* kst = sm;                  // [4] BT x SP  raw k rows of chunk m in buffer m & 3
  uint16_t* qst = kst + 4 * kWgStage;  // [2] BT x SP  raw q rows, buffer m & 1
  uint16_t* st = qst + 2 * kWgStage;   // [2] NB x K   S_m^T in buffer m & 1 (the initial state: 1)
  uint16_t* gt = st + 2 * kWgST;       // [2] BT x BT  G_m, Tb_m, Pm_m in buffers m & 1
  uint16_t* tb = gt + 2 * kWgMT;
  uint16_t* pmt = tb + 2 * kWgMT;
  uint16_t* rt = pmt + 2 * kWgMT;      // NB x BT  R^T
  uint16_t* nt = rt + kWgVT;           // [2] Vn_m^T
  uint16_t* vt = nt + 2 * kWgVT;       // [2] Vd_m^T
  float* xs = reinterpret_cast<float*>(vt + 2 * kWgVT);  // [2][WG2, WG3][16][128]  X_m's two halves
  float* sc = xs + 4 * BT * NB;        // [3][rf, of, uf, eg] BT: chunk m's in buffer m % 3
  enum { kRf = 0, kOf = BT, kUf = 2 * BT, kEg = 3 * BT };

  const int64_t HV = p.d.HV, HK = p.d.HK;
  const TileJob job(p, w, tiles);  // NB == kBV columns a block
  if (!job.has_slot(p)) return job.none<ACT>(p);
  const int64_t h = job.h, hk = job.hk, v0 = job.v0, start = job.start, end = job.end, slot = job.slot;
  const bool initial = job.initial;
  const float *mats = job.mats, *gcs = job.gcs, *norms = job.norms;
  const int64_t mats_stride = job.mats_stride;
  const int J = int((end - start + BT - 1) / BT);  // chunks
  const int tid = threadIdx.x, wg = tid / 128, w4 = (tid / 32) % 4, g = (tid % 32) / 4, q4 = tid % 4, t1 = tid % 128;
  auto row_of = [&](int i) { return 16 * w4 + g + 8 * ((i / 2) % 2); };  // accumulator entry i
  auto col_of = [&](int i) { return 8 * (i / 4) + 2 * q4 + i % 2; };
  auto chunk_at = [&](int m) { return start + int64_t(m) * BT; };
  const TokenRows q_rows(p.q, hk), k_rows(p.k, hk), v_rows(p.v, h), out_rows(p.out, h);

  // WG2 / WG3 (t2 = 0 .. 255): q and k rows r2 + 16 u, 16-byte piece x2, by cp.async into the
  // staging rows (a warp: 2 rows x 256 contiguous bytes, so the L2 requests merge), zero past the
  // chunk's end (the products read every row). The per-thread part of the addressing is fixed; a
  // full chunk takes no per-copy tests.
  const int t2 = tid % 256, r2 = t2 / 16, x2 = 8 * (t2 % 16);
  auto stage_rows = [&](uint16_t* tile, const TokenRows& rows, int m) {
    const int64_t c = chunk_at(m);
    const int Lc = chunk_len<BT>(c, end);
    const char* src = rows.base + (c + r2) * rows.stride + 2 * x2;
    uint16_t* d = tile + r2 * SP + x2;
    if (Lc == BT) {
#pragma unroll
      for (int u = 0; u < 4; ++u) async_copy16(d + 16 * u * SP, src + 16 * u * rows.stride);
    } else {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        if (r2 + 16 * u < Lc)
          async_copy16(d + 16 * u * SP, src + 16 * u * rows.stride);
        else
          *reinterpret_cast<uint4*>(d + 16 * u * SP) = make_uint4(0, 0, 0, 0);
      }
    }
  };
  // WG1 (t1): 64 x 64 bf16 tiles into the core layout -- rows t1 / 8 + 16 u, piece t1 % 8 (16
  // bytes) -- and v rows t1 / 4 + 32 u, piece t1 % 4, zero past the chunk's end.
  const int tile_dst = core_at(t1 / 8, 8 * (t1 % 8), BT);
  auto copy_tile = [&](uint16_t* tile, const char* src, int64_t stride, int Lc) {  // src: this thread's row 0 piece
    uint16_t* d = tile + tile_dst;
    if (Lc == BT) {
#pragma unroll
      for (int u = 0; u < 4; ++u) async_copy16(d + 16 * BT * u, src + 16 * u * stride);
    } else {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        if (t1 / 8 + 16 * u < Lc)
          async_copy16(d + 16 * BT * u, src + 16 * u * stride);
        else
          *reinterpret_cast<uint4*>(d + 16 * BT * u) = make_uint4(0, 0, 0, 0);
      }
    }
  };
  const char* tb_src = reinterpret_cast<const char*>(mats + (t1 / 8) * mats_stride + 4 * (t1 % 8));  // Tb's hi words
  const char* pm_src = tb_src + kMaxBT * sizeof(float);
  const int64_t mats_bytes = mats_stride * int64_t(sizeof(float)), gram_bytes = HK * kMaxBT * 2;
  const char* g_src = reinterpret_cast<const char*>(w.gram + (t1 / 8) * HK * kMaxBT + hk * kMaxBT + 8 * (t1 % 8));
  // WG0: v of chunk m into registers, the words of its accumulator entries (i even: rows row_of(i),
  // columns col_of(i), col_of(i) + 1), zero past the chunk's end; loaded a chunk ahead.
  const char* v_c0 = v_rows.base + row_of(0) * v_rows.stride + 2 * (v0 + col_of(0));
  auto load_v = [&](int m, uint32_t (&vp)[8]) {
    const int64_t c = chunk_at(m);
    const int Lc = m < J ? chunk_len<BT>(c, end) : 0;
    const char* src = v_c0 + c * v_rows.stride;
#pragma unroll
    for (int i = 0; i < 16; i += 2) {
      const int hh = (i / 2) % 2;
      vp[i / 2] = Lc == BT || row_of(0) + 8 * hh < Lc
                      ? *reinterpret_cast<const uint32_t*>(src + 8 * hh * v_rows.stride + 16 * (i / 4)) : 0u;
    }
  };
  // Per-token factors of chunk m, a chunk ahead in registers (WG1, t1 < BT: one token each).
  float nx_gc = 0.0f, nx_last = 0.0f, nx_qf = 0.0f, nx_kf = 0.0f;
  auto load_scalars = [&](int m) {
    if (wg == 1 && t1 < BT && m < J) {
      const int64_t c = chunk_at(m);
      const int Lc = chunk_len<BT>(c, end);
      nx_last = gcs[(c + Lc - 1) * HV];
      nx_gc = t1 < Lc ? gcs[(c + t1) * HV] : 0.0f;
      nx_qf = t1 < Lc ? norms[(c + t1) * 2 * HK + 0] : 0.0f;
      nx_kf = t1 < Lc ? norms[(c + t1) * 2 * HK + 1] : 0.0f;
    }
  };
  auto write_scalars = [&](int m) {
    if (wg == 1 && t1 < BT) {
      const int Lc = chunk_len<BT>(chunk_at(m), end);
      const float eg = t1 < Lc ? expf(nx_gc) : 0.0f, ed = t1 < Lc ? expf(nx_last - nx_gc) : 0.0f;
      float* s = sc + (m % 3) * 4 * BT;
      s[kRf + t1] = eg * nx_kf, s[kOf + t1] = eg * nx_qf, s[kUf + t1] = ed * nx_kf, s[kEg + t1] = eg;
    }
  };
  // Chunk m's total decay (its factors are in shared memory from the chunk before it on).
  auto decay_of = [&](int m) { return sc[(m % 3) * 4 * BT + kEg + chunk_len<BT>(chunk_at(m), end) - 1]; };

  // WG1's output words: row r_out of a chunk, columns v0 + 2 q4 .. (row_of / col_of of entry 0).
  const int r_out = row_of(0);
  char* const out_c0 = out_rows.base + r_out * out_rows.stride + 2 * (v0 + col_of(0));
  // WG2 / WG3: state rows m0 .. m0 + 63, columns v0 ..: fp32 accumulators for the whole sequence.
  const int m0 = 64 * (wg - 2);
  float sr[16] = {};

  // Prologue: X_0 = K_0 S_init into xs[0]; the initial state's S^T in st[1]; chunk 0's Tb, v and
  // factors; k of chunks 0 and 1.
  uint32_t v_next[8] = {};
  if (wg == 0) load_v(0, v_next);
  if (wg >= 2) {
    for (int i = 0; i < 16; ++i)
      sr[i] = initial ? Elem<ST>::load(p.state.at(slot, h, m0 + row_of(i)), v0 + col_of(i)) : 0.0f;
    store_acc_t(st + kWgST, K, m0, sr);
    if (J > 0) stage_rows(kst, k_rows, 0);
    if (J > 1) stage_rows(kst + kWgStage, k_rows, 1);
    async_commit();
    async_wait<0>();
  } else if (wg == 1) {
    if (J > 0) {
      copy_tile(tb, tb_src + start * mats_bytes, mats_bytes, chunk_len<BT>(start, end));
    }
    async_commit();
    load_scalars(0);
    write_scalars(0);
    load_scalars(1);
    async_wait<0>();
  }
  wgmma_proxy_fence();
  __syncthreads();
  if (wg >= 2 && J > 0) {
    uint32_t a[4][4];
    const uint32_t* kw = reinterpret_cast<const uint32_t*>(kst);
    for (int s = 0; s < 4; ++s) load_a1(kw, SP / 2, 16 * w4, m0 / 2 + 8 * s, a[s]);
    float x[16] = {};
    wgmma_issue_m64n32_rs<4, K>(x, a, st + kWgST, m0);
    wgmma_wait<0>(x);
    for (int i = 0; i < 16; ++i) xs[(wg - 2) * 2048 + 128 * i + t1] = x[i];
  }
  __syncthreads();

  // Chunk j (j = J: only the last chunk's output and state update).
  for (int j = 0; j <= J; ++j) {
    const bool cur = j < J, prev = j > 0;
    const int64_t c = chunk_at(j);
    const int L = cur ? chunk_len<BT>(c, end) : 0, pb = j & 1, qb = pb ^ 1;

    if (wg == 0 && cur) {  // R = V - rf (e_{j-1} X_j + G_j Vd_{j-1}) -> R^T
      copy_tile(pmt + pb * kWgMT, pm_src + c * mats_bytes, mats_bytes, L);  // for WG1's next chunk
      async_commit();
      float acc[16] = {}, x[16], rf[2], e = 1.0f;
      uint32_t vp[8];
      for (int i = 0; i < 8; ++i) vp[i] = v_next[i];
      auto operands = [&] {  // while the product runs: X_j (its two halves), the factors
        const float* xj = xs + pb * 4096 + t1;
        for (int i = 0; i < 16; ++i) x[i] = xj[128 * i] + xj[2048 + 128 * i];
        const float* s = sc + (j % 3) * 4 * BT;
        rf[0] = s[kRf + row_of(0)], rf[1] = s[kRf + row_of(2)];
      };
      if (prev) {  // issue and wait in one branch (ptxas serialises products it cannot pair)
        wgmma_issue_m64n32<BT>(acc, gt + pb * kWgMT, 0, vt + qb * kWgVT);
        operands();
        e = decay_of(j - 1);
        wgmma_wait<0>(acc);
      } else {
        operands();
      }
      float r[16];
      for (int i = 0; i < 16; ++i) {
        const float v = bf16_to_f32(uint16_t(vp[i / 2] >> (16 * (i % 2))));
        r[i] = row_of(i) < L ? v - rf[(i / 2) % 2] * (e * x[i] + acc[i]) : 0.0f;
      }
      store_acc_t(rt, BT, 0, r);
      wgmma_proxy_fence();
      load_v(j + 1, v_next);  // the next chunk's v, under the rest of the chunk
    } else if (wg == 1) {  // the copies for the chunks ahead, the factors, then O_{j-1}
      if (j + 1 < J) {
        const int64_t c1 = chunk_at(j + 1);
        const int L1 = chunk_len<BT>(c1, end);
        copy_tile(gt + qb * kWgMT, g_src + c1 * gram_bytes, gram_bytes, L1);
        copy_tile(tb + qb * kWgMT, tb_src + c1 * mats_bytes, mats_bytes, L1);
      }
      async_commit();
      if (j + 1 < J) {
        write_scalars(j + 1);
        load_scalars(j + 2);
      }
      if (prev) {
        uint32_t a[8][4];
        const uint32_t* qw = reinterpret_cast<const uint32_t*>(qst + qb * kWgStage);
        for (int s = 0; s < 8; ++s) load_a1(qw, SP / 2, 16 * w4, 8 * s, a[s]);
        float o[16] = {};
        wgmma_issue_m64n32_rs<8, K>(o, a, st + pb * kWgST, 0);  // S_{j-2}^T
        const float* s = sc + ((j - 1) % 3) * 4 * BT;
        const float of[2] = {s[kOf + row_of(0)], s[kOf + row_of(2)]};
        wgmma_wait<0>(o);
        for (int i = 0; i < 16; ++i) o[i] *= of[(i / 2) % 2];
        wgmma_issue_m64n32<BT>(o, pmt + qb * kWgMT, 0, nt + qb * kWgVT);
        wgmma_wait<0>(o);
        // Columns col_of(i), col_of(i) + 1 as one word: rows r_out (hh = 0) and r_out + 8 (hh = 1),
        // 16-byte steps along the row (i / 4); a full chunk tests no row.
        const int64_t cp = chunk_at(j - 1);
        const int Lp = chunk_len<BT>(cp, end);
        char* ob = out_c0 + cp * out_rows.stride;
#pragma unroll
        for (int i = 0; i < 16; i += 2) {
          const int hh = (i / 2) % 2;
          if (Lp == BT || r_out + 8 * hh < Lp)
            *reinterpret_cast<uint32_t*>(ob + 8 * hh * out_rows.stride + 16 * (i / 4)) = pack_bf16x2(o[i], o[i + 1]);
        }
      }
    } else if (wg >= 2) {  // S_{j-1} = e_{j-1} S_{j-2} + K_{j-1}^T Vd_{j-1} -> S_{j-1}^T
      if (j + 2 < J) stage_rows(kst + ((j + 2) & 3) * kWgStage, k_rows, j + 2);
      if (cur) stage_rows(qst + pb * kWgStage, q_rows, j);
      async_commit();
      if (prev) {
        const float e = decay_of(j - 1);
        for (int i = 0; i < 16; ++i) sr[i] *= e;
        uint32_t a[4][4];
        const uint32_t* kw = reinterpret_cast<const uint32_t*>(kst + ((j - 1) & 3) * kWgStage);
        for (int s = 0; s < 4; ++s) load_a1_trans(kw, SP / 2, m0 + 16 * w4, 16 * s, a[s]);
        wgmma_issue_m64n32_rs<4, BT>(sr, a, vt + qb * kWgVT, 0);
        wgmma_wait<0>(sr);
        if (cur) {
          store_acc_t(st + qb * kWgST, K, m0, sr);
          wgmma_proxy_fence();
        }
      }
    }
    warpgroup_barrier(wg);

    if (wg == 0 && cur) {  // Vn = Tb R -> Vn^T, Vd^T
      float vn[16] = {};
      wgmma_issue_m64n32<BT>(vn, tb + pb * kWgMT, 0, rt);
      const float* s = sc + (j % 3) * 4 * BT;
      const float uf[2] = {s[kUf + row_of(0)], s[kUf + row_of(2)]};
      wgmma_wait<0>(vn);
      store_acc_t(nt + pb * kWgVT, BT, 0, vn);
      for (int i = 0; i < 16; ++i) vn[i] *= uf[(i / 2) % 2];
      store_acc_t(vt + pb * kWgVT, BT, 0, vn);
    } else if (wg >= 2 && j + 1 < J) {  // this warpgroup's rows of X_{j+1} = K_{j+1} S_{j-1}
      uint32_t a[4][4];
      const uint32_t* kw = reinterpret_cast<const uint32_t*>(kst + ((j + 1) & 3) * kWgStage);
      for (int s = 0; s < 4; ++s) load_a1(kw, SP / 2, 16 * w4, m0 / 2 + 8 * s, a[s]);
      float x[16] = {};
      wgmma_issue_m64n32_rs<4, K>(x, a, st + qb * kWgST, m0);
      wgmma_wait<0>(x);
      float* xd = xs + qb * 4096 + (wg - 2) * 2048 + t1;
      for (int i = 0; i < 16; ++i) xd[128 * i] = x[i];
    }
    async_wait<0>();  // this thread's copies (the barrier below: everyone's)
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
