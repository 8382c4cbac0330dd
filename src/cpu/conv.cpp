// Causal depthwise conv1d (width W, optional SiLU) for decode updates and varlen prefill.
// Work items are (sequence, block of 64 channels); tokens run in order inside an item, the
// window of the last W-1 inputs kept in registers-sized arrays.
#include "token_inputs.hpp"

namespace gdn::cpu {

namespace {
constexpr int64_t kBlock = 64;
constexpr int kMaxW = 8;

void conv_block(const ConvProblem& p, int64_t seq, int64_t t0, int64_t t1, int64_t slot, bool initial, int64_t c0,
                int64_t c1) {
  const int64_t W = p.d.W, n = c1 - c0;
  float w[kBlock][kMaxW], win[kBlock][kMaxW], bias[kBlock];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = c0 + i;
    for (int64_t j = 0; j < W; ++j) w[i][j] = load_float(p.weight.at(c, j), p.weight.dt);
    bias[i] = p.bias.present() ? p.bias.f(c) : 0.0f;
    for (int64_t j = 0; j < W - 1; ++j) win[i][j] = initial ? load_float(p.state.at(slot, c, j), p.state.dt) : 0.0f;
  }
  int64_t col[kBlock];
  for (int64_t i = 0; i < n; ++i) col[i] = p.d.conv_column(c0 + i);
  float xs[kBlock], ys[kBlock];
  for (int64_t t = t0; t < t1; ++t) {
    gather_row(p.x.at(seq, t, 0), p.x.dt, col, n, xs);
    for (int64_t i = 0; i < n; ++i) {
      const float x = xs[i];
      float acc = bias[i] + w[i][W - 1] * x;
      for (int64_t j = 0; j < W - 1; ++j) acc += w[i][j] * win[i][j];
      for (int64_t j = 0; j + 1 < W - 1; ++j) win[i][j] = win[i][j + 1];
      if (W > 1) win[i][W - 2] = x;
      ys[i] = p.silu ? silu(acc) : acc;
    }
    store_row(p.out.at(seq, t, c0), p.out.dt, n, ys);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < W - 1; ++j) store_float(p.state.at(slot, c0 + i, j), p.state.dt, win[i][j]);
}

void zero_block(const ConvProblem& p, int64_t seq, int64_t t0, int64_t t1, int64_t c0, int64_t c1) {
  for (int64_t t = t0; t < t1; ++t) zero_row(p.out.at(seq, t, c0), p.out.dt, c1 - c0);
}

}  // namespace

void conv_update(ThreadPool& pool, const ConvProblem& p) {
  const int64_t C = p.d.conv_dim(), blocks = (C + kBlock - 1) / kBlock;
  pool.parallel_for(p.num_seqs * blocks, 4, [&](int64_t begin, int64_t end, int32_t) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / blocks, c0 = (item % blocks) * kBlock, c1 = c0 + kBlock < C ? c0 + kBlock : C;
      const int64_t slot = p.slot_idx.idx(b);
      if (slot_ok(slot, p.state.num_slots))
        conv_block(p, b, 0, p.tokens_per_seq, slot, true, c0, c1);
      else
        zero_block(p, b, 0, p.tokens_per_seq, c0, c1);
    }
  });
}

void conv_prefill(ThreadPool& pool, const ConvProblem& p) {
  const int64_t C = p.d.conv_dim(), blocks = (C + kBlock - 1) / kBlock;
  pool.parallel_for(p.num_seqs * blocks, 1, [&](int64_t begin, int64_t end, int32_t) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks, c0 = (item % blocks) * kBlock, c1 = c0 + kBlock < C ? c0 + kBlock : C;
      const int64_t t0 = p.cu_seqlens.idx(n), t1 = p.cu_seqlens.idx(n + 1);
      const int64_t slot = p.slot_idx.idx(n);
      const bool initial = !p.has_initial.present() || p.has_initial.idx(n) != 0;
      if (slot_ok(slot, p.state.num_slots))
        conv_block(p, 0, t0, t1, slot, initial, c0, c1);
      else
        zero_block(p, 0, t0, t1, c0, c1);
    }
  });
}

}  // namespace gdn::cpu
