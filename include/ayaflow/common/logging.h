// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <spdlog/spdlog.h>
#include <memory>

namespace ayaflow {

/// One named logger per layer ("bpf", "flow", "api", "app", "store").
/// Created on first use with the default sink; thread-safe.
std::shared_ptr<spdlog::logger> logger(const char* name);

/// Sets the level of every ayaflow logger (existing and future).
/// quiet: errors only; verbose: debug (includes libbpf debug output).
void configureLogging(bool quiet, bool verbose);

}  // namespace ayaflow
