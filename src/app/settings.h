// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_config: the table of settings. One row per setting holds everything
// about it: its flag, environment variable and YAML key, its help, how a value becomes a
// Config field, and how the default is shown. Adding a setting is adding a row (and the
// field to its component's options).
#pragma once

#include <cstddef>
#include <string>

#include "ayaflow/app/config.h"
#include "config_values.h"

namespace ayaflow::app::detail {

/// What a YAML value must look like before its text is parsed; also how CLI11 takes it.
enum class ValueType { kInteger, kBoolean, kString, kSize, kList };

struct Setting {
  const char* flags;      ///< CLI11 names, e.g. "-p,--port"
  const char* long_flag;  ///< the name errors use, e.g. "--port"
  const char* env;        ///< "AYAFLOW_PORT"
  const char* yaml;       ///< "port"
  ValueType type;
  const char* placeholder;                        ///< CLI11 placeholder; nullptr for boolean flags
  const char* help;                               ///< one line, without the default
  void (*apply)(const Raw& raw, Config& config);  ///< parses raw into its field (throws)
  std::string (*shown)(const Config& config);     ///< the field as help and docs show it
};

/// The rows, in --help order.
const Setting* settingsBegin();
const Setting* settingsEnd();

}  // namespace ayaflow::app::detail
