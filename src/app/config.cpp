// SPDX-License-Identifier: MIT OR Apache-2.0
// Where settings come from: flags (CLI11), AYAFLOW_* environment variables and a YAML file,
// with precedence flag > env > YAML > default per setting. What the settings are lives in
// the table of settings.cpp; how values are parsed in config_values.cpp.
#include "ayaflow/app/config.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string_view>
#include <utility>

// CLI11 is header-only and slow to compile: this is the only file that includes it.
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>
#include <CLI/CLI.hpp>

#include "ayaflow/common/system_error.h"
#include "config_values.h"
#include "settings.h"

#ifndef AYAFLOW_VERSION
#define AYAFLOW_VERSION "unknown"
#endif

namespace ayaflow::app {
namespace {

using detail::fail;
using detail::failType;
using detail::lower;
using detail::Raw;
using detail::Setting;
using detail::show;
using detail::ValueType;

constexpr const char* kConfigEnv = "AYAFLOW_CONFIG";

/// Raw command-line values as CLI11 stored them, by setting.
struct FlagValues {
  std::map<const Setting*, CLI::Option*> options;
  std::map<const Setting*, std::vector<std::string>> lists;
  std::map<const Setting*, std::string> scalars;
  std::map<const Setting*, bool> bools;
  std::string config_path;
  CLI::Option* config_option = nullptr;
};

// ---------------------------------------------------------------------------------------------
// YAML

/// The top-level mapping of the config file, keys validated.
struct YamlFile {
  std::string path;
  std::map<std::string, YAML::Node> values;
};

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

[[noreturn]] void failUnknownKey(const std::string& path, const std::string& key) {
  const char* best = nullptr;
  std::size_t best_distance = 3;  // suggest only close matches (typos, plurals)
  std::string known;
  for (const Setting* s = detail::settingsBegin(); s != detail::settingsEnd(); ++s) {
    const std::size_t d = editDistance(lower(key), s->yaml);
    if (d < best_distance) best_distance = d, best = s->yaml;
    known += known.empty() ? "" : ", ";
    known += s->yaml;
  }
  const std::string hint =
      best ? " (did you mean '" + std::string(best) + "'?)" : " (known keys: " + known + ")";
  fail(path, "unknown key " + show(key) + hint);
}

/// "a FIFO", "a directory"...: what a non-regular file is, for a message.
std::string fileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

std::string readFile(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. The
  // flag only matters for the open; a regular file reads the same with it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail(path, std::string("cannot read config file: ") + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(::fdopen(fd, "rb"), &std::fclose);
  if (!file) {
    const int err = errno;
    ::close(fd);
    fail(path, std::string("cannot read config file: ") + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    fail(path, std::string("cannot read config file: ") + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    fail(path, "config file must be a regular file, not " + fileKind(st.st_mode));
  }
  std::string text;
  char buf[8192];
  while (true) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, file.get());
    text.append(buf, n);
    if (text.size() > detail::kMaxConfigFileBytes) fail(path, "config file is larger than 1 MiB");
    if (n < sizeof buf) break;
  }
  if (std::ferror(file.get())) {
    fail(path, std::string("cannot read config file: ") + std::strerror(errno));
  }
  return text;
}

YamlFile loadYaml(const std::string& path) {
  YamlFile file{path, {}};
  YAML::Node root;
  try {
    root = YAML::Load(readFile(path));
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp says only "bad file" here.
    fail(path + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1),
         "YAML nested too deep: more than " + std::to_string(e.depth() - 1) +
             " levels of lists or mappings (settings nest at most 2 levels)");
  } catch (const YAML::Exception& e) {
    // Marks are 0-based; editors count lines from 1.
    std::string where = path;
    if (!e.mark.is_null()) {
      where += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    fail(where, "YAML syntax error: " + e.msg);
  }
  if (root.IsNull()) return file;  // empty file or comments only
  if (!root.IsMap()) fail(path, "top level must be a mapping of key: value");
  for (const auto& entry : root) {
    if (!entry.first.IsScalar()) fail(path, "keys must be plain strings");
    const std::string key = entry.first.Scalar();
    const bool known = std::any_of(detail::settingsBegin(), detail::settingsEnd(),
                                   [&](const Setting& s) { return key == s.yaml; });
    if (!known) failUnknownKey(path, key);
    if (!file.values.emplace(key, entry.second).second) {
      fail(path, "duplicate key " + show(key));
    }
  }
  return file;
}

/// Checks a YAML value's type and turns it into Raw text for the common parsers.
Raw rawFromYaml(const YamlFile& file, const Setting& s, const YAML::Node& node) {
  const std::string key_label = file.path + ": '" + s.yaml + "'";
  // A plain (unquoted) scalar has tag "?", a quoted one "!".
  const bool plain = node.IsScalar() && node.Tag() == "?";
  switch (s.type) {
    case ValueType::kInteger: {
      const std::string& text = plain ? node.Scalar() : std::string();
      const bool integer =
          plain && !text.empty() &&
          text.find_first_not_of("0123456789", text[0] == '-' ? 1 : 0) == std::string::npos &&
          text != "-";
      if (!integer) failType(key_label, "an integer");
      break;
    }
    case ValueType::kBoolean:
      if (!plain) failType(key_label, "a boolean (true or false)");
      break;
    case ValueType::kString:
      if (!node.IsScalar()) failType(key_label, "a string");
      break;
    case ValueType::kSize:
      if (!node.IsScalar()) failType(key_label, "a size in bytes (e.g. 262144 or 256K)");
      break;
    case ValueType::kList:
      if (node.IsSequence()) {
        Raw raw{key_label, {}, false};
        for (const auto& item : node) {
          if (!item.IsScalar()) failType(key_label, "a list of strings");
          raw.items.push_back(item.Scalar());
        }
        return raw;
      }
      if (!node.IsScalar()) failType(key_label, "a string or a list of strings");
      break;
  }
  return Raw{key_label, {node.Scalar()}, true};
}

// ---------------------------------------------------------------------------------------------
// Source selection: flag > env > YAML > default, per setting.

std::optional<std::string> envValue(const EnvLookup& env, const char* name) {
  auto value = env ? env(name) : std::nullopt;
  if (value && value->empty()) return std::nullopt;  // empty = unset
  return value;
}

std::optional<Raw> pickSource(const Setting& s, const FlagValues& flags, const EnvLookup& env,
                              const YamlFile* yaml) {
  if (flags.options.at(&s)->count() > 0) {
    Raw raw{s.long_flag, {}, true};
    if (s.type == ValueType::kList) {
      raw.items = flags.lists.at(&s);
    } else if (s.type == ValueType::kBoolean) {
      raw.items = {flags.bools.at(&s) ? "true" : "false"};
    } else {
      raw.items = {flags.scalars.at(&s)};
    }
    return raw;
  }
  if (auto value = envValue(env, s.env)) return Raw{s.env, {std::move(*value)}, true};
  if (yaml) {
    if (const auto it = yaml->values.find(s.yaml); it != yaml->values.end()) {
      return rawFromYaml(*yaml, s, it->second);
    }
  }
  return std::nullopt;
}

std::string envHelp(const char* env) { return std::string(" [env ") + env + "]"; }

/// Declares every flag; values land in `flags`, which must outlive parsing.
void declareFlags(CLI::App& app, FlagValues& flags) {
  app.set_help_flag("-h,--help", "Print this help and exit");
  app.set_version_flag("--version", std::string("ayaflow ") + AYAFLOW_VERSION,
                       "Print the version and exit");
  flags.config_option =
      app.add_option(
             "-c,--config", flags.config_path,
             std::string("YAML config file (keys as below, e.g. port: 3000)") + envHelp(kConfigEnv))
          ->type_name("FILE");
  const Config defaults;
  for (const Setting* s = detail::settingsBegin(); s != detail::settingsEnd(); ++s) {
    const std::string help = std::string(s->help) + " (default " + s->shown(defaults) + ")" +
                             envHelp(s->env) + " [yaml " + s->yaml + "]";
    CLI::Option* option = nullptr;
    switch (s->type) {
      case ValueType::kList:
        // One value per occurrence (-i a -i b,c); never swallow following words.
        option = app.add_option(s->flags, flags.lists[s], help)->allow_extra_args(false);
        break;
      case ValueType::kBoolean:
        option = app.add_flag(s->flags, flags.bools[s], help);
        break;
      default:
        option = app.add_option(s->flags, flags.scalars[s], help);
        break;
    }
    if (s->placeholder) option->type_name(s->placeholder);
    flags.options[s] = option;
  }
  app.footer(
      "Precedence: flag > environment variable > YAML file > default. Empty environment "
      "variables count as unset; booleans accept 1/0, true/false, yes/no, on/off.");
}

}  // namespace

EnvLookup processEnvironment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

ParseOutcome parseConfig(int argc, const char* const* argv, const EnvLookup& env) {
  ParseOutcome outcome;
  CLI::App app{"ayaflow: eBPF network traffic analyzer", "ayaflow"};
  FlagValues flags;
  declareFlags(app, flags);

  static const char* const kNoArgs[] = {"ayaflow", nullptr};
  if (argc < 1 || argv == nullptr) argc = 1, argv = kNoArgs;
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    std::ostringstream out;
    std::ostringstream err;
    outcome.exit_code = app.exit(e, out, err);
    outcome.exit_now = true;
    outcome.output = out.str();
    return outcome;
  } catch (const CLI::ParseError& e) {
    throw ConfigError(detail::oneLine(e.what()));
  }

  // The YAML file itself: flag > env.
  Config& config = outcome.config;
  if (flags.config_option->count() > 0) {
    config.config_path = flags.config_path;
  } else if (auto path = envValue(env, kConfigEnv)) {
    config.config_path = std::move(*path);
  }
  std::optional<YamlFile> yaml;
  if (config.config_path) {
    if (config.config_path->empty()) fail("--config", "'' is not a file path");
    yaml = loadYaml(*config.config_path);
  }

  for (const Setting* s = detail::settingsBegin(); s != detail::settingsEnd(); ++s) {
    if (auto raw = pickSource(*s, flags, env, yaml ? &*yaml : nullptr)) s->apply(*raw, config);
  }
  // Flow export: the ClickHouse password only ever comes from the environment or a file
  // (read at start-up, see App), never from a flag or the YAML file.
  if (auto password = envValue(env, "AYAFLOW_CLICKHOUSE_PASSWORD")) {
    config.clickhouse.password = std::move(*password);
  }
  return outcome;
}

void validateEnvironment(const Config& config) {
  if (config.capture.interfaces.include.empty()) {
    fail("--interface", "at least one interface is needed");
  }
  for (const std::string& name : config.capture.interfaces.names()) {
    if (if_nametoindex(name.c_str()) == 0) {
      fail("--interface", "no such interface " + show(name) + " (" + std::strerror(errno) + ")");
    }
  }

  const std::string& path = config.store.db_path;
  if (path == ":memory:") return;  // SQLite in-memory database: nothing on disk
  if (path.empty()) fail("--db-path", "'' is not a file path");
  // SQLite creates the file plus -wal/-shm/-journal next to it, so the directory must be
  // writable even when the file already exists.
  const auto slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    fail("--db-path", "directory " + show(dir) + " of " + show(path) +
                          " is not accessible: " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    fail("--db-path", show(dir) + " in " + show(path) + " is not a directory");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    fail("--db-path", "directory " + show(dir) + " of " + show(path) +
                          " is not writable: " + std::strerror(errno));
  }
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("--db-path", show(path) + " is a directory");
    if (::access(path.c_str(), R_OK | W_OK) != 0) {
      fail("--db-path", show(path) + " is not writable: " + std::strerror(errno));
    }
  }
}

std::vector<SettingDoc> settingDocs() {
  const Config defaults;
  std::vector<SettingDoc> out;
  for (const Setting* s = detail::settingsBegin(); s != detail::settingsEnd(); ++s) {
    out.push_back({s->long_flag, s->env, s->yaml, s->shown(defaults)});
  }
  return out;
}

}  // namespace ayaflow::app
