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
  const int64_t W = p.d.W, W1 = W - 1, n = c1 - c0;
  // The block's weights [n][W], windows [n][W-1] and bias, each one row conversion when it is
  // contiguous in memory (the usual layouts), else element by element.
  float w[kBlock * kMaxW], win[kBlock * kMaxW], bias[kBlock];
  if (p.weight.s_col == 1 && p.weight.s_row == W) {
    load_row(p.weight.at(c0, 0), p.weight.dt, n * W, w);
  } else {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < W; ++j) w[i * W + j] = load_float(p.weight.at(c0 + i, j), p.weight.dt);
  }
  const bool state_rows = p.state.s_w == 1 && p.state.s_c == W1;
  if (!initial) {
    for (int64_t i = 0; i < n * W1; ++i) win[i] = 0.0f;
  } else if (state_rows) {
    load_row(p.state.at(slot, c0, 0), p.state.dt, n * W1, win);
  } else {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < W1; ++j) win[i * W1 + j] = load_float(p.state.at(slot, c0 + i, j), p.state.dt);
  }
  if (!p.bias.present()) {
    for (int64_t i = 0; i < n; ++i) bias[i] = 0.0f;
  } else if (p.bias.s == 1) {
    load_row(p.bias.at(c0), p.bias.dt, n, bias);
  } else {
    for (int64_t i = 0; i < n; ++i) bias[i] = p.bias.f(c0 + i);
  }
  int64_t col[kBlock];
  for (int64_t i = 0; i < n; ++i) col[i] = p.d.conv_column(c0 + i);
  float xs[kBlock], ys[kBlock];
  for (int64_t t = t0; t < t1; ++t) {
    gather_row(p.x.at(seq, t, 0), p.x.dt, col, n, xs);
    for (int64_t i = 0; i < n; ++i) {
      const float x = xs[i], *wi = w + i * W;
      float* wn = win + i * W1;
      float acc = bias[i] + wi[W - 1] * x;
      for (int64_t j = 0; j < W1; ++j) acc += wi[j] * wn[j];
      for (int64_t j = 0; j + 1 < W1; ++j) wn[j] = wn[j + 1];
      if (W1 > 0) wn[W1 - 1] = x;
      ys[i] = acc;
    }
    if (p.silu) silu_row(ys, n);
    store_row(p.out.at(seq, t, c0), p.out.dt, n, ys);
  }
  if (state_rows) {
    store_row(p.state.at(slot, c0, 0), p.state.dt, n * W1, win);
  } else {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < W1; ++j) store_float(p.state.at(slot, c0 + i, j), p.state.dt, win[i * W1 + j]);
  }
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
