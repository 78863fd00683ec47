// SPDX-License-Identifier: MIT OR Apache-2.0
// ayaflow: eBPF network traffic analyzer. The only code tests do not link.
#include <cstdio>
#include <exception>

#include "ayaflow/app/app.h"
#include "ayaflow/app/config.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

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
