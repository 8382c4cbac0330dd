// Internal error type: thrown by validation and backends, turned into a status at the C ABI.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <exception>

#include "gdn.h"

namespace gdn {

struct Error : std::exception {
  gdn_status status;
  char message[512];
  const char* what() const noexcept override { return message; }
};

[[noreturn]] __attribute__((format(printf, 2, 3))) inline void fail(gdn_status status, const char* fmt, ...) {
  Error e;
  e.status = status;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  throw e;
}

}  // namespace gdn
