// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace ayaflow {

std::shared_ptr<spdlog::logger> logger(const char* name) {
  if (auto existing = spdlog::get(name)) {
    return existing;
  }
  try {
    auto created = spdlog::stderr_color_mt(name);
    created->set_level(spdlog::get_level());
    return created;
  } catch (const spdlog::spdlog_ex&) {
    // Lost a creation race with another thread: the logger exists now.
    return spdlog::get(name);
  }
}

void configureLogging(bool quiet, bool verbose) {
  const auto level = quiet     ? spdlog::level::err
                     : verbose ? spdlog::level::debug
                               : spdlog::level::info;
  spdlog::set_level(level);  // applies to all registered loggers
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ [%n] %v");
}

}  // namespace ayaflow
