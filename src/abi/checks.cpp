#include "checks.hpp"

#include <utility>
#include <cstdio>
#include <cstring>

namespace gdn {

namespace {
constexpr int64_t kMaxBytes = int64_t(1) << 60;

void shape_string(const gdn_tensor& t, char* buf, size_t n) {
  size_t at = std::snprintf(buf, n, "[");
  for (int i = 0; i < t.ndim && i < GDN_MAX_DIMS && at < n; ++i)
    at += std::snprintf(buf + at, n - at, i ? ", %lld" : "%lld", static_cast<long long>(t.shape[i]));
  if (at < n) std::snprintf(buf + at, n - at, "]");
}

void expect_string(std::initializer_list<int64_t> shape, char* buf, size_t n) {
  size_t at = std::snprintf(buf, n, "[");
  int i = 0;
  for (int64_t s : shape) {
    if (at >= n) break;
    if (s < 0)
      at += std::snprintf(buf + at, n - at, i ? ", *" : "*");
    else
      at += std::snprintf(buf + at, n - at, i ? ", %lld" : "%lld", static_cast<long long>(s));
    ++i;
  }
  if (at < n) std::snprintf(buf + at, n - at, "]");
}

// Highest element offset of the view, with overflow checks.
int64_t last_offset(const gdn_tensor& t, const char* name) {
  int64_t off = 0;
  for (int i = 0; i < t.ndim; ++i) {
    int64_t term;
    if (__builtin_mul_overflow(t.shape[i] - 1, t.strides[i], &term) || __builtin_add_overflow(off, term, &off) ||
        off > kMaxBytes)
      fail(GDN_ERROR_SIZE_OVERFLOW, "%s: shape x strides overflows the address space", name);
  }
  return off;
}

// Outputs must not overlap themselves: sorted by stride, each stride exceeds the span of the
// dimensions inside it.
void check_no_self_overlap(const gdn_tensor& t, const char* name) {
  int order[GDN_MAX_DIMS];
  int m = 0;
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] > 1) order[m++] = i;
  for (int j = 1; j < m; ++j)  // insertion sort by stride (m <= GDN_MAX_DIMS)
    for (int i = j; i > 0 && t.strides[order[i]] < t.strides[order[i - 1]]; --i) std::swap(order[i], order[i - 1]);
  int64_t span = 0;
  for (int j = 0; j < m; ++j) {
    const int i = order[j];
    if (t.strides[i] <= span)
      fail(GDN_ERROR_BAD_STRIDE, "%s: output view overlaps itself (stride %lld in dim %d)", name,
           (long long)t.strides[i], i);
    span += (t.shape[i] - 1) * t.strides[i];
  }
}
}  // namespace

bool tensor_absent(const gdn_tensor& t) { return t.data == nullptr && t.ndim == 0; }

int64_t numel(const gdn_tensor& t) {
  int64_t n = 1;
  for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return n;
}

void check_dtype(const gdn_tensor& t, const char* name, std::initializer_list<int32_t> dtypes) {
  for (int32_t d : dtypes)
    if (t.dtype == d) return;
  char list[160];
  size_t at = 0;
  list[0] = 0;
  for (int32_t d : dtypes)
    if (at < sizeof list) at += std::snprintf(list + at, sizeof list - at, at ? ", %s" : "%s", gdn_dtype_name(gdn_dtype(d)));
  fail(GDN_ERROR_BAD_DTYPE, "%s: dtype %s, expected one of {%s}", name, gdn_dtype_name(gdn_dtype(t.dtype)), list);
}

void check_rank_shape(const gdn_tensor& t, const char* name, std::initializer_list<int64_t> shape) {
  bool ok = t.ndim == int32_t(shape.size());
  int i = 0;
  for (int64_t s : shape) {
    if (!ok) break;
    if (s >= 0 && t.shape[i] != s) ok = false;
    ++i;
  }
  if (!ok) {
    char got[160], want[160];
    shape_string(t, got, sizeof got);
    expect_string(shape, want, sizeof want);
    fail(GDN_ERROR_BAD_SHAPE, "%s: shape %s, expected %s", name, got, want);
  }
}

void check_common(const gdn_tensor& t, const char* name, std::initializer_list<int32_t> dtypes) {
  if (tensor_absent(t)) fail(GDN_ERROR_NULL_POINTER, "%s is missing (data NULL, ndim 0)", name);
  if (t.ndim < 0 || t.ndim > GDN_MAX_DIMS)
    fail(GDN_ERROR_BAD_SHAPE, "%s: ndim %d out of range 0..%d", name, t.ndim, GDN_MAX_DIMS);
  check_dtype(t, name, dtypes);
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0) fail(GDN_ERROR_BAD_SHAPE, "%s: negative size %lld in dim %d", name, (long long)t.shape[i], i);
    if (t.strides[i] < 0)
      fail(GDN_ERROR_BAD_STRIDE, "%s: negative stride %lld in dim %d", name, (long long)t.strides[i], i);
  }
  // Element count overflow.
  int64_t n = 1;
  for (int i = 0; i < t.ndim; ++i)
    if (__builtin_mul_overflow(n, t.shape[i], &n) || n > kMaxBytes)
      fail(GDN_ERROR_SIZE_OVERFLOW, "%s: element count overflows", name);
  if (n == 0) return;
  if (t.data == nullptr) fail(GDN_ERROR_NULL_POINTER, "%s: data is NULL", name);
  const size_t es = gdn_dtype_size(gdn_dtype(t.dtype));
  if (reinterpret_cast<uintptr_t>(t.data) % es != 0)
    fail(GDN_ERROR_MISALIGNED, "%s: data %p not aligned to its %zu-byte elements", name, t.data, es);
  const int64_t last = last_offset(t, name);
  if (uintptr_t(last + 1) * es > UINTPTR_MAX - reinterpret_cast<uintptr_t>(t.data))
    fail(GDN_ERROR_SIZE_OVERFLOW, "%s: view runs past the end of the address space", name);
}

bool Operands::add(const gdn_tensor& t, const char* name, std::initializer_list<int32_t> dtypes,
                   std::initializer_list<int64_t> shape, bool output, bool optional) {
  if (optional && tensor_absent(t)) return false;
  check_common(t, name, dtypes);
  check_rank_shape(t, name, shape);
  record(t, name, output);
  return true;
}

void Operands::record(const gdn_tensor& t, const char* name, bool output) {
  if (numel(t) == 0) return;
  if (output) check_no_self_overlap(t, name);
  if (n_ >= int(sizeof ranges_ / sizeof ranges_[0])) fail(GDN_ERROR_INTERNAL, "too many operands");
  const size_t es = gdn_dtype_size(gdn_dtype(t.dtype));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data);
  ranges_[n_++] = Range{lo, lo + uintptr_t(last_offset(t, name) + 1) * es, name, output};
}

void Operands::record_bytes(const void* p, size_t bytes, const char* name) {
  if (p == nullptr || bytes == 0) return;
  if (n_ >= int(sizeof ranges_ / sizeof ranges_[0])) fail(GDN_ERROR_INTERNAL, "too many operands");
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p);
  if (bytes > UINTPTR_MAX - lo) fail(GDN_ERROR_SIZE_OVERFLOW, "%s: range runs past the end of the address space", name);
  ranges_[n_++] = Range{lo, lo + bytes, name, true};
}

void Operands::check_aliasing() const {
  for (int i = 0; i < n_; ++i) {
    if (!ranges_[i].output) continue;
    for (int j = 0; j < n_; ++j) {
      if (i == j) continue;
      if (ranges_[i].lo < ranges_[j].hi && ranges_[j].lo < ranges_[i].hi)
        fail(GDN_ERROR_ALIASING, "%s overlaps %s in memory", ranges_[i].name, ranges_[j].name);
    }
  }
}

HeadView head_view(Operands& ops, const gdn_tensor& t, const char* name, std::initializer_list<int64_t> lead,
                   int64_t H, int64_t groups, int64_t D, std::initializer_list<int32_t> dtypes, bool output,
                   bool optional) {
  HeadView v;
  if (optional && tensor_absent(t)) return v;
  check_common(t, name, dtypes);
  const int L = int(lead.size());
  const int plain_rank = L + 1 + (D > 0 ? 1 : 0);
  const bool grouped = groups > 0 && t.ndim == plain_rank + 1;
  if (grouped) {
    int64_t shape[GDN_MAX_DIMS];
    int i = 0;
    for (int64_t s : lead) shape[i++] = s;
    shape[i++] = groups;
    shape[i++] = H / groups;
    if (D > 0) shape[i++] = D;
    switch (i) {  // initializer_list from the array
      case 3: check_rank_shape(t, name, {shape[0], shape[1], shape[2]}); break;
      case 4: check_rank_shape(t, name, {shape[0], shape[1], shape[2], shape[3]}); break;
      case 5: check_rank_shape(t, name, {shape[0], shape[1], shape[2], shape[3], shape[4]}); break;
      default: fail(GDN_ERROR_INTERNAL, "%s: unexpected rank", name);
    }
  } else {
    int64_t shape[GDN_MAX_DIMS];
    int i = 0;
    for (int64_t s : lead) shape[i++] = s;
    shape[i++] = H;
    if (D > 0) shape[i++] = D;
    switch (i) {
      case 2: check_rank_shape(t, name, {shape[0], shape[1]}); break;
      case 3: check_rank_shape(t, name, {shape[0], shape[1], shape[2]}); break;
      case 4: check_rank_shape(t, name, {shape[0], shape[1], shape[2], shape[3]}); break;
      default: fail(GDN_ERROR_INTERNAL, "%s: unexpected rank", name);
    }
  }
  if (D > 1 && t.strides[t.ndim - 1] != 1)
    fail(GDN_ERROR_BAD_STRIDE, "%s: innermost dimension must have stride 1 (got %lld)", name,
         (long long)t.strides[t.ndim - 1]);
  ops.record(t, name, output);
  v.p = static_cast<char*>(t.data);
  v.dt = t.dtype;
  v.s0 = t.strides[0];
  v.s1 = L > 1 ? t.strides[1] : 0;
  if (grouped) {
    v.r = FastDiv(uint32_t(H / groups));
    v.s_grp = t.strides[L];
    v.s_in = t.strides[L + 1];
  } else {
    v.r = FastDiv(1);
    v.s_grp = t.strides[L];
    v.s_in = 0;
  }
  return v;
}

VecView vec_view(Operands& ops, const gdn_tensor& t, const char* name, int64_t n, std::initializer_list<int32_t> dtypes,
                 bool optional) {
  VecView v;
  if (!ops.add(t, name, dtypes, {n}, false, optional)) return v;
  v.p = static_cast<char*>(t.data);
  v.dt = t.dtype;
  v.n = n;
  v.s = t.strides[0];
  return v;
}

}  // namespace gdn
