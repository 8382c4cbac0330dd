// What the opaque handles of gdn.h hold, and the helpers every ABI entry point uses.
#pragma once

#include <cstring>
#include <memory>

#include "../core/backend.hpp"
#include "../core/error.hpp"

struct gdn_context_s {
  gdn_backend backend;
  int32_t device;
  std::unique_ptr<gdn::Backend> impl;
};

struct gdn_layer_s {
  gdn_context ctx;
  gdn_layer_config cfg;
  gdn::LayerDims dims;
  float scale;
};

namespace gdn {

void set_last_error(const char* message);
const char* last_error();

// Runs body, turning gdn::Error and any other exception into a status + message.
template <class F>
gdn_status guarded(F&& body) noexcept {
  try {
    body();
    set_last_error("");
    return GDN_SUCCESS;
  } catch (const Error& e) {
    set_last_error(e.message);
    return e.status;
  } catch (const std::bad_alloc&) {
    set_last_error("host allocation failed");
    return GDN_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(e.what());
    return GDN_ERROR_INTERNAL;
  } catch (...) {
    set_last_error("unknown internal error");
    return GDN_ERROR_INTERNAL;
  }
}

// Copies a versioned struct (first field uint32_t struct_size) into a zeroed local of the
// library's version. Older, smaller structs than `min_size` and unknown non-zero tails fail.
template <class S>
S read_versioned(const S* in, const char* name, size_t min_size = sizeof(S)) {
  if (in == nullptr) fail(GDN_ERROR_NULL_POINTER, "%s is NULL", name);
  const uint32_t size = in->struct_size;
  if (size < min_size)
    fail(GDN_ERROR_BAD_VERSION, "%s.struct_size = %u, expected at least %zu (set it to sizeof(%s))", name, size,
         min_size, name);
  S out;
  std::memset(&out, 0, sizeof out);
  std::memcpy(&out, in, size < sizeof(S) ? size : sizeof(S));
  const unsigned char* tail = reinterpret_cast<const unsigned char*>(in);
  for (size_t i = sizeof(S); i < size; ++i)
    if (tail[i] != 0)
      fail(GDN_ERROR_BAD_VERSION, "%s has fields unknown to libgdn %d.%d (struct_size %u > %zu) that are set", name,
           GDN_VERSION_MAJOR, GDN_VERSION_MINOR, size, sizeof(S));
  out.struct_size = uint32_t(sizeof(S));
  return out;
}

inline const gdn_layer_s& layer_ref(gdn_layer layer) {
  if (layer == nullptr) fail(GDN_ERROR_NULL_POINTER, "layer is NULL");
  return *layer;
}

}  // namespace gdn
