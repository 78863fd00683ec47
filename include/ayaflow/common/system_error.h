// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace ayaflow {

/// Control-plane failure (config, load, attach, bind). Carries an errno-style
/// code and a message naming the action and the object. Never thrown from
/// packet handlers or C callbacks.
class SystemError : public std::system_error {
 public:
  SystemError(int err, const std::string& what)
      : std::system_error(err, std::generic_category(), what) {}
};

/// A user-facing configuration error: one line, names the flag or key.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The file name without its directories (for short error locations).
constexpr const char* sourceBasename(const char* path) {
  const char* base = path;
  for (const char* p = path; *p != '\0'; ++p) {
    if (*p == '/') {
      base = p + 1;
    }
  }
  return base;
}

}  // namespace ayaflow

/// Throws ayaflow::SystemError with "[file.cpp:line] context: strerror(err)".
#define AYAFLOW_SYSTEM_ERROR(err, context)                                                     \
  throw ::ayaflow::SystemError((err), std::string("[") + ::ayaflow::sourceBasename(__FILE__) + \
                                          ":" + std::to_string(__LINE__) + "] " + (context))
