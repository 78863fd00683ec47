// SPDX-License-Identifier: MIT OR Apache-2.0
// The YAML configuration shipped in k8s/example.yaml is one the agent accepts.
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "ayaflow/app/config.h"

namespace ayaflow::app {
namespace {

TEST(DeployExample, ConfigMapHoldsAValidConfig) {
  std::string config_text;
  for (const YAML::Node& doc : YAML::LoadAllFromFile(AYAFLOW_SOURCE_DIR "/k8s/example.yaml")) {
    if (doc["kind"] && doc["kind"].as<std::string>() == "ConfigMap" && doc["data"]["config.yaml"]) {
      config_text = doc["data"]["config.yaml"].as<std::string>();
    }
  }
  ASSERT_FALSE(config_text.empty()) << "no ConfigMap with config.yaml in k8s/example.yaml";
  char path[] = "/tmp/ayaflow-example-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, config_text.data(), config_text.size()),
            static_cast<ssize_t>(config_text.size()));
  close(fd);
  const char* argv[] = {"ayaflow", "--config", path};
  ParseOutcome parsed;
  EXPECT_NO_THROW(parsed = parseConfig(3, argv, [](const char*) { return std::nullopt; }));
  unlink(path);
  EXPECT_FALSE(parsed.exit_now);
  // Node mode, as the DaemonSet ships it.
  EXPECT_EQ(parsed.config.capture.interfaces.include, std::vector<std::string>{"auto"});
  EXPECT_EQ(parsed.config.store.db_path, "/var/lib/ayaflow/traffic.db");
  EXPECT_EQ(parsed.config.capture.ring_buffer_size, 1024u * 1024u);
  EXPECT_TRUE(parsed.config.capture.enable_ipv6);
  EXPECT_FALSE(parsed.config.clickhouse.enabled());  // shown commented out, off as shipped
  EXPECT_FALSE(parsed.config.ipfix.enabled());
}

TEST(DeployExample, ItsFlowExportBlockUncommentedIsAValidConfig) {
  std::string config_text;
  for (const YAML::Node& doc : YAML::LoadAllFromFile(AYAFLOW_SOURCE_DIR "/k8s/example.yaml")) {
    if (doc["kind"] && doc["kind"].as<std::string>() == "ConfigMap" && doc["data"]["config.yaml"]) {
      config_text = doc["data"]["config.yaml"].as<std::string>();
    }
  }
  // Uncomment the lines between the markers, as a user would.
  std::string uncommented;
  bool inside = false;
  std::istringstream lines(config_text);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("# --- end of flow export") != std::string::npos) inside = false;
    if (inside && line.rfind("# ", 0) == 0) line = line.substr(2);
    if (line.find("# --- flow export") != std::string::npos) inside = true;
    uncommented += line + "\n";
  }
  char path[] = "/tmp/ayaflow-example-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, uncommented.data(), uncommented.size()),
            static_cast<ssize_t>(uncommented.size()));
  close(fd);
  const char* argv[] = {"ayaflow", "--config", path};
  ParseOutcome parsed;
  EXPECT_NO_THROW(parsed = parseConfig(3, argv, [](const char*) { return std::nullopt; }));
  unlink(path);
  EXPECT_EQ(parsed.config.clickhouse.url, "http://clickhouse.clickhouse.svc:8123");
  EXPECT_EQ(parsed.config.clickhouse_password_file, "/etc/ayaflow-clickhouse/password");
  EXPECT_TRUE(parsed.config.clickhouse.create_table);
  EXPECT_EQ(parsed.config.clickhouse.retention_days, std::optional<std::uint32_t>(30));
  EXPECT_EQ(parsed.config.ipfix.collectors,
            std::vector<std::string>{"ipfix-collector.monitoring.svc:4739"});
}

}  // namespace
}  // namespace ayaflow::app
