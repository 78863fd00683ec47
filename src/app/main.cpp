// SPDX-License-Identifier: MIT OR Apache-2.0
// ayaflow: eBPF network traffic analyzer. The only code tests do not link.
#include <sys/resource.h>

#include <cstdio>
#include <exception>

#include "ayaflow/app/app.h"
#include "ayaflow/app/config.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

namespace {

/// The soft limit on open files is often 1024, below --max-connections plus the agent's own
/// descriptors (BPF maps and links, the database): HTTP accepts would fail with EMFILE
/// before the server's own connection limits act. The hard limit is the operator's (or the
/// container runtime's) word on it; the server uses epoll, so no select() limit applies.
void raiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);  // best effort: the server counts accept errors
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ayaflow;
  try {
    app::ParseOutcome parsed = app::parseConfig(argc, argv, app::processEnvironment());
    if (parsed.exit_now) {
      std::fputs(parsed.output.c_str(), parsed.exit_code == 0 ? stdout : stderr);
      return parsed.exit_code;
    }
    configureLogging(parsed.config.log.quiet, parsed.config.log.verbose);
    app::validateEnvironment(parsed.config);
    raiseOpenFileLimit();
    app::App agent(std::move(parsed.config));
    return agent.run();
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "ayaflow: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ayaflow: error: %s\n", e.what());
    return 1;
  }
}
