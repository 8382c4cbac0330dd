// Host-side validation of tensor views: dtypes, ranks, sizes, strides, alignment, overflow and
// aliasing. Every failure throws gdn::Error with the tensor's name in the message.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "../core/error.hpp"
#include "../core/views.hpp"

namespace gdn {

bool tensor_absent(const gdn_tensor& t);

// Collects the byte ranges of a call's tensors so outputs can be checked against all others.
class Operands {
 public:
  // Validates dtype, rank, sizes (-1 = any), strides, alignment, overflow; records the range.
  // Returns false (and records nothing) when the tensor is optional and absent.
  bool add(const gdn_tensor& t, const char* name, std::initializer_list<int32_t> dtypes,
           std::initializer_list<int64_t> shape, bool output, bool optional = false);
  // Same, for a tensor whose rank/shape the caller checked already (with check_shape()).
  void record(const gdn_tensor& t, const char* name, bool output);
  // A raw byte range (the workspace), always treated as written.
  void record_bytes(const void* p, size_t bytes, const char* name);
  // Throws GDN_ERROR_ALIASING if an output overlaps any other recorded tensor.
  void check_aliasing() const;

 private:
  struct Range {
    uintptr_t lo, hi;  // [lo, hi); empty tensors are not recorded
    const char* name;
    bool output;
  };
  Range ranges_[24];
  int n_ = 0;
};

// Common per-tensor checks (everything except the shape itself): present, dtype, sizes,
// strides, alignment, overflow.
void check_common(const gdn_tensor& t, const char* name, std::initializer_list<int32_t> dtypes);
void check_dtype(const gdn_tensor& t, const char* name, std::initializer_list<int32_t> dtypes);
void check_rank_shape(const gdn_tensor& t, const char* name, std::initializer_list<int64_t> shape);
int64_t numel(const gdn_tensor& t);

// Per-head tensor: [lead..., H, D] or, when groups > 0, [lead..., groups, H/groups, D]; D == 0
// means per-head scalars ([lead..., H] / [lead..., groups, H/groups]). lead: expected sizes.
HeadView head_view(Operands& ops, const gdn_tensor& t, const char* name, std::initializer_list<int64_t> lead,
                   int64_t H, int64_t groups, int64_t D, std::initializer_list<int32_t> dtypes, bool output,
                   bool optional = false);

VecView vec_view(Operands& ops, const gdn_tensor& t, const char* name, int64_t n,
                 std::initializer_list<int32_t> dtypes, bool optional = false);

#define GDN_FLOAT_TYPES GDN_DTYPE_F32, GDN_DTYPE_F16, GDN_DTYPE_BF16

}  // namespace gdn
