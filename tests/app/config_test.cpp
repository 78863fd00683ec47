// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/app/config.h"

#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <map>

#include "ayaflow/common/system_error.h"

namespace ayaflow::app {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "ayaflow_config_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    for (const std::string& f : files_) std::remove(f.c_str());
    ::chmod(dir_.c_str(), 0700);
    ::rmdir((dir_ + "/ro").c_str());
    ::rmdir((dir_ + "/sub").c_str());
    ::rmdir(dir_.c_str());
  }

  EnvLookup env() const {
    return [this](const char* name) -> std::optional<std::string> {
      const auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
  }

  ParseOutcome parse(std::initializer_list<std::string> args) {
    std::vector<std::string> all{"ayaflow"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<const char*> argv;
    for (const std::string& a : all) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    return parseConfig(static_cast<int>(all.size()), argv.data(), env());
  }

  /// Parses expecting a ConfigError; returns its message (checked to be one line).
  std::string parseError(std::initializer_list<std::string> args) {
    try {
      parse(args);
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_FALSE(msg.empty());
      return msg;
    }
    ADD_FAILURE() << "no ConfigError thrown";
    return {};
  }

  /// Writes a YAML file in the test's temp dir and returns its absolute path.
  std::string writeYaml(const std::string& text, const std::string& name = "config.yaml") {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }

  /// YAML file given through -c; returns the ConfigError message with the file's absolute path
  /// shown as "config.yaml", as if run from the temp dir.
  std::string yamlError(const std::string& text) {
    const std::string path = writeYaml(text);
    std::string msg = parseError({"-c", path});
    if (msg.compare(0, path.size(), path) == 0) msg.replace(0, path.size(), "config.yaml");
    return msg;
  }

  std::string dir_;
  std::vector<std::string> files_;
  std::map<std::string, std::string> env_;
};

// ---------------------------------------------------------------------------------------------
// Defaults and precedence

TEST_F(ConfigTest, DefaultsWithNoInput) {
  const ParseOutcome out = parse({});
  EXPECT_FALSE(out.exit_now);
  const Config& c = out.config;
  EXPECT_EQ(c.capture.interfaces.include, std::vector<std::string>{"eth0"});
  EXPECT_EQ(c.http.port, 3000);
  EXPECT_EQ(c.http.address, "0.0.0.0");
  EXPECT_EQ(c.store.db_path, "traffic.db");
  EXPECT_EQ(c.capture.connection_timeout_s, 60u);
  EXPECT_FALSE(c.store.retention_s.has_value());
  EXPECT_EQ(c.pipeline.aggregation_window_s, 0u);
  EXPECT_TRUE(c.http.allowed_ips.empty());
  EXPECT_FALSE(c.config_path.has_value());
  EXPECT_FALSE(c.log.quiet);
  EXPECT_FALSE(c.log.verbose);
  EXPECT_FALSE(c.capture.deep_inspect);
  EXPECT_FALSE(c.capture.enable_ipv6);
  EXPECT_FALSE(c.resolve_dns);
  EXPECT_TRUE(c.capture.tcp_state);
  EXPECT_TRUE(c.health.rtt);
  EXPECT_TRUE(c.health.retransmits);
  EXPECT_TRUE(c.health.drops);
  EXPECT_EQ(c.capture.ring_buffer_size, 262144u);
  EXPECT_EQ(c.capture.flow_table_size, 16384u);
  EXPECT_EQ(c.capture.attach_mode, bpf::HookMode::kAuto);
}

constexpr const char* kFullYaml = R"(
interface: [yaml0, yaml1]
port: 8080
listen_address: "::"
db_path: /yaml/traffic.db
connection_timeout: 120
data_retention_seconds: 3600
aggregation_window_seconds: 10
allowed_ips: [10.0.0.0/8, "2001:db8::/32"]
quiet: true
verbose: yes
deep_inspect: on
enable_ipv6: true
resolve_dns: true
ring_buffer_size: 1M
flow_table_size: 65536
attach_mode: tc
tcp_state: false
tcp_rtt: off
tcp_retransmits: no
drop_reasons: false
drop_flow_budget: 500
)";

TEST_F(ConfigTest, YamlOverridesDefaults) {
  const Config c = parse({"-c", writeYaml(kFullYaml)}).config;
  EXPECT_EQ(c.capture.interfaces.include, (std::vector<std::string>{"yaml0", "yaml1"}));
  EXPECT_EQ(c.http.port, 8080);
  EXPECT_EQ(c.http.address, "::");
  EXPECT_EQ(c.store.db_path, "/yaml/traffic.db");
  EXPECT_EQ(c.capture.connection_timeout_s, 120u);
  EXPECT_EQ(c.store.retention_s, std::optional<std::uint64_t>(3600));
  EXPECT_EQ(c.pipeline.aggregation_window_s, 10u);
  ASSERT_EQ(c.http.allowed_ips.size(), 2u);
  EXPECT_EQ(c.http.allowed_ips[0].toString(), "10.0.0.0/8");
  EXPECT_EQ(c.http.allowed_ips[1].toString(), "2001:db8::/32");
  EXPECT_TRUE(c.log.quiet);
  EXPECT_TRUE(c.log.verbose);
  EXPECT_TRUE(c.capture.deep_inspect);
  EXPECT_TRUE(c.capture.enable_ipv6);
  EXPECT_TRUE(c.resolve_dns);
  EXPECT_EQ(c.capture.ring_buffer_size, 1u << 20);
  EXPECT_EQ(c.capture.flow_table_size, 65536u);
  EXPECT_EQ(c.capture.attach_mode, bpf::HookMode::kTc);
  EXPECT_FALSE(c.capture.tcp_state);
  EXPECT_FALSE(c.health.rtt);
  EXPECT_FALSE(c.health.retransmits);
  EXPECT_FALSE(c.health.drops);
  EXPECT_EQ(c.health.drop_flow_budget, 500u);
  EXPECT_EQ(c.config_path, writeYaml(kFullYaml));
}

TEST_F(ConfigTest, EnvOverridesYaml) {
  env_ = {{"AYAFLOW_INTERFACE", "env0,env1"},
          {"AYAFLOW_PORT", "9090"},
          {"AYAFLOW_LISTEN_ADDRESS", "127.0.0.1"},
          {"AYAFLOW_DB_PATH", "/env/t.db"},
          {"AYAFLOW_CONNECTION_TIMEOUT", "30"},
          {"AYAFLOW_DATA_RETENTION", "7200"},
          {"AYAFLOW_AGGREGATION_WINDOW", "5"},
          {"AYAFLOW_ALLOWED_IPS", "192.168.0.0/16"},
          {"AYAFLOW_QUIET", "false"},
          {"AYAFLOW_VERBOSE", "0"},
          {"AYAFLOW_DEEP_INSPECT", "no"},
          {"AYAFLOW_ENABLE_IPV6", "OFF"},
          {"AYAFLOW_RESOLVE_DNS", "False"},
          {"AYAFLOW_RING_BUFFER_SIZE", "4096"},
          {"AYAFLOW_FLOW_TABLE_SIZE", "2048"},
          {"AYAFLOW_ATTACH_MODE", "tcx"},
          {"AYAFLOW_TCP_STATE", "true"},
          {"AYAFLOW_TCP_RTT", "on"},
          {"AYAFLOW_TCP_RETRANSMITS", "yes"},
          {"AYAFLOW_DROP_REASONS", "1"},
          {"AYAFLOW_DROP_FLOW_BUDGET", "0"}};
  const Config c = parse({"-c", writeYaml(kFullYaml)}).config;
  EXPECT_EQ(c.capture.interfaces.include, (std::vector<std::string>{"env0", "env1"}));
  EXPECT_EQ(c.http.port, 9090);
  EXPECT_EQ(c.http.address, "127.0.0.1");
  EXPECT_EQ(c.store.db_path, "/env/t.db");
  EXPECT_EQ(c.capture.connection_timeout_s, 30u);
  EXPECT_EQ(c.store.retention_s, std::optional<std::uint64_t>(7200));
  EXPECT_EQ(c.pipeline.aggregation_window_s, 5u);
  ASSERT_EQ(c.http.allowed_ips.size(), 1u);
  EXPECT_EQ(c.http.allowed_ips[0].toString(), "192.168.0.0/16");
  EXPECT_FALSE(c.log.quiet);
  EXPECT_FALSE(c.log.verbose);
  EXPECT_FALSE(c.capture.deep_inspect);
  EXPECT_FALSE(c.capture.enable_ipv6);
  EXPECT_FALSE(c.resolve_dns);
  EXPECT_EQ(c.capture.ring_buffer_size, 4096u);
  EXPECT_EQ(c.capture.flow_table_size, 2048u);
  EXPECT_EQ(c.capture.attach_mode, bpf::HookMode::kTcx);
  EXPECT_TRUE(c.capture.tcp_state);
  EXPECT_TRUE(c.health.rtt);
  EXPECT_TRUE(c.health.retransmits);
  EXPECT_TRUE(c.health.drops);
  EXPECT_EQ(c.health.drop_flow_budget, 0u);
}

TEST_F(ConfigTest, DropFlowBudgetBounds) {
  EXPECT_EQ(parse({}).config.health.drop_flow_budget, 10000u);
  EXPECT_EQ(parse({"--drop-flow-budget", "1000000"}).config.health.drop_flow_budget, 1000000u);
  EXPECT_NE(parseError({"--drop-flow-budget", "1000001"}).find("--drop-flow-budget"),
            std::string::npos);
  EXPECT_NE(parseError({"--drop-flow-budget", "-1"}).find("--drop-flow-budget"), std::string::npos);
}

TEST_F(ConfigTest, FlagsOverrideEnvAndYaml) {
  env_ = {{"AYAFLOW_INTERFACE", "env0"},
          {"AYAFLOW_PORT", "9090"},
          {"AYAFLOW_DB_PATH", "/env/t.db"},
          {"AYAFLOW_CONNECTION_TIMEOUT", "30"},
          {"AYAFLOW_DATA_RETENTION", "7200"},
          {"AYAFLOW_ALLOWED_IPS", "192.168.0.0/16"},
          {"AYAFLOW_QUIET", "0"},
          {"AYAFLOW_RING_BUFFER_SIZE", "4096"},
          {"AYAFLOW_ATTACH_MODE", "tcx"},
          {"AYAFLOW_LISTEN_ADDRESS", "127.0.0.1"}};
  const Config c = parse({"-c",
                          writeYaml(kFullYaml),
                          "-i",
                          "flag0",
                          "-p",
                          "7070",
                          "--db-path",
                          "/flag/t.db",
                          "--connection-timeout",
                          "15",
                          "--data-retention",
                          "60",
                          "--allowed-ips",
                          "172.16.0.0/12",
                          "-q",
                          "--ring-buffer-size",
                          "256K",
                          "--attach-mode",
                          "auto",
                          "--listen-address",
                          "::1"})
                       .config;
  EXPECT_EQ(c.capture.interfaces.include, std::vector<std::string>{"flag0"});
  EXPECT_EQ(c.http.port, 7070);
  EXPECT_EQ(c.store.db_path, "/flag/t.db");
  EXPECT_EQ(c.capture.connection_timeout_s, 15u);
  EXPECT_EQ(c.store.retention_s, std::optional<std::uint64_t>(60));
  ASSERT_EQ(c.http.allowed_ips.size(), 1u);
  EXPECT_EQ(c.http.allowed_ips[0].toString(), "172.16.0.0/12");
  EXPECT_TRUE(c.log.quiet);
  EXPECT_EQ(c.capture.ring_buffer_size, 262144u);
  EXPECT_EQ(c.capture.attach_mode, bpf::HookMode::kAuto);
  EXPECT_EQ(c.http.address, "::1");
  // Not given as flags: env wins over YAML, YAML over default.
  EXPECT_EQ(c.pipeline.aggregation_window_s, 10u);
  EXPECT_TRUE(c.log.verbose);
}

TEST_F(ConfigTest, GivenFlagEqualToDefaultStillWins) {
  // The original's bug: `--port 3000` could not override `port: 8080` from YAML.
  const std::string yaml = writeYaml(kFullYaml);
  env_ = {{"AYAFLOW_CONNECTION_TIMEOUT", "30"}};
  const Config c = parse({"-c",
                          yaml,
                          "--port",
                          "3000",
                          "--aggregation-window",
                          "0",
                          "--connection-timeout",
                          "60",
                          "--ring-buffer-size",
                          "262144",
                          "--attach-mode",
                          "auto",
                          "-i",
                          "eth0",
                          "--db-path",
                          "traffic.db",
                          "--listen-address",
                          "0.0.0.0",
                          "--quiet=false",
                          "--verbose=false"})
                       .config;
  EXPECT_EQ(c.http.port, 3000);
  EXPECT_EQ(c.pipeline.aggregation_window_s, 0u);
  EXPECT_EQ(c.capture.connection_timeout_s, 60u);
  EXPECT_EQ(c.capture.ring_buffer_size, 262144u);
  EXPECT_EQ(c.capture.attach_mode, bpf::HookMode::kAuto);
  EXPECT_EQ(c.capture.interfaces.include, std::vector<std::string>{"eth0"});
  EXPECT_EQ(c.store.db_path, "traffic.db");
  EXPECT_EQ(c.http.address, "0.0.0.0");
  EXPECT_FALSE(c.log.quiet);
  EXPECT_FALSE(c.log.verbose);
}

TEST_F(ConfigTest, EnvEqualToDefaultStillWinsOverYaml) {
  env_ = {{"AYAFLOW_PORT", "3000"}, {"AYAFLOW_QUIET", "false"}};
  const Config c = parse({"-c", writeYaml(kFullYaml)}).config;
  EXPECT_EQ(c.http.port, 3000);
  EXPECT_FALSE(c.log.quiet);
}

TEST_F(ConfigTest, EmptyEnvVarCountsAsUnset) {
  env_ = {{"AYAFLOW_PORT", ""}, {"AYAFLOW_QUIET", ""}, {"AYAFLOW_INTERFACE", ""}};
  const Config c = parse({"-c", writeYaml(kFullYaml)}).config;
  EXPECT_EQ(c.http.port, 8080);
  EXPECT_TRUE(c.log.quiet);
  EXPECT_EQ(c.capture.interfaces.include, (std::vector<std::string>{"yaml0", "yaml1"}));
}

TEST_F(ConfigTest, ConfigPathFromEnvAndFlagWins) {
  env_ = {{"AYAFLOW_CONFIG", writeYaml("port: 1111\n", "env.yaml")}};
  EXPECT_EQ(parse({}).config.http.port, 1111);
  EXPECT_EQ(parse({}).config.config_path, env_["AYAFLOW_CONFIG"]);
  const std::string flag_yaml = writeYaml("port: 2222\n", "flag.yaml");
  EXPECT_EQ(parse({"--config", flag_yaml}).config.http.port, 2222);
  // The flag wins even when the env var names a file that does not exist.
  env_["AYAFLOW_CONFIG"] = dir_ + "/missing.yaml";
  EXPECT_EQ(parse({"-c", flag_yaml}).config.http.port, 2222);
  EXPECT_EQ(parse({"-c", flag_yaml}).config.config_path, flag_yaml);
}

TEST_F(ConfigTest, EmptyYamlFileMeansDefaults) {
  const Config c = parse({"-c", writeYaml("# nothing here\n")}).config;
  EXPECT_EQ(c.http.port, 3000);
  EXPECT_EQ(c.capture.interfaces.include, std::vector<std::string>{"eth0"});
}

// ---------------------------------------------------------------------------------------------
// Lists

TEST_F(ConfigTest, InterfacesFromRepeatedFlagsAndCommaLists) {
  EXPECT_EQ(parse({"-i", "a", "-i", "b,c", "--interface=d", "--interface", "e"})
                .config.capture.interfaces.include,
            (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

TEST_F(ConfigTest, InterfacesDeduplicatedInOrder) {
  EXPECT_EQ(parse({"-i", "b,a,b", "-i", "a", "-i", "c"}).config.capture.interfaces.include,
            (std::vector<std::string>{"b", "a", "c"}));
}

TEST_F(ConfigTest, InterfacesFromEnvTrimmed) {
  env_ = {{"AYAFLOW_INTERFACE", "eth1, eth2 ,eth1"}};
  EXPECT_EQ(parse({}).config.capture.interfaces.include,
            (std::vector<std::string>{"eth1", "eth2"}));
}

TEST_F(ConfigTest, InterfacesFromYamlStringOrList) {
  EXPECT_EQ(parse({"-c", writeYaml("interface: eth1\n")}).config.capture.interfaces.include,
            std::vector<std::string>{"eth1"});
  EXPECT_EQ(parse({"-c", writeYaml("interface: eth1,eth2\n")}).config.capture.interfaces.include,
            (std::vector<std::string>{"eth1", "eth2"}));
  EXPECT_EQ(parse({"-c", writeYaml("interface:\n  - eth1\n  - eth2\n  - eth1\n")})
                .config.capture.interfaces.include,
            (std::vector<std::string>{"eth1", "eth2"}));
}

TEST_F(ConfigTest, InterfaceNameLimits) {
  const std::string max15(15, 'x');
  EXPECT_EQ(parse({"-i", max15}).config.capture.interfaces.include,
            std::vector<std::string>{max15});
  const std::string long16(16, 'x');
  EXPECT_EQ(parseError({"-i", long16}),
            "--interface: '" + long16 +
                "' is not an interface name (1-15 characters, no '/', ':' or spaces)");
  EXPECT_THAT(parseError({"-i", "a/b"}), StartsWith("--interface: 'a/b' is not an interface"));
  EXPECT_THAT(parseError({"-i", "a:1"}), StartsWith("--interface: 'a:1' is not an interface"));
  EXPECT_THAT(parseError({"-i", ".."}), StartsWith("--interface: '..' is not an interface"));
}

TEST_F(ConfigTest, EmptyInterfaceNamesRejected) {
  EXPECT_EQ(parseError({"-i", "a,,b"}), "--interface: empty item in 'a,,b'");
  EXPECT_EQ(parseError({"-i", "a,"}), "--interface: empty item in 'a,'");
  EXPECT_EQ(parseError({"-i", ""}), "--interface: empty item in ''");
  env_ = {{"AYAFLOW_INTERFACE", " , "}};
  EXPECT_EQ(parseError({}), "AYAFLOW_INTERFACE: empty item in ' , '");
}

TEST_F(ConfigTest, EmptyYamlInterfaceListRejected) {
  const std::string path = writeYaml("interface: []\n");
  EXPECT_EQ(parseError({"-c", path}), path + ": 'interface': at least one interface is needed");
}

TEST_F(ConfigTest, AllowedIpsFromFlagsEnvAndYaml) {
  const Config c = parse({"--allowed-ips", "10.0.0.0/8,192.168.1.5", "--allowed-ips",
                          "2001:db8::/32", "--allowed-ips", "::1,10.1.2.3/8"})
                       .config;
  std::vector<std::string> got;
  for (const auto& cidr : c.http.allowed_ips) got.push_back(cidr.toString());
  // A bare address is a host route; 10.1.2.3/8 masks to 10.0.0.0/8, a duplicate.
  EXPECT_EQ(got,
            (std::vector<std::string>{"10.0.0.0/8", "192.168.1.5/32", "2001:db8::/32", "::1/128"}));

  env_ = {{"AYAFLOW_ALLOWED_IPS", "127.0.0.1, ::1"}};
  ASSERT_EQ(parse({}).config.http.allowed_ips.size(), 2u);
  EXPECT_EQ(parse({}).config.http.allowed_ips[1].toString(), "::1/128");
  env_.clear();

  const Config single = parse({"-c", writeYaml("allowed_ips: 10.0.0.0/8\n")}).config;
  ASSERT_EQ(single.http.allowed_ips.size(), 1u);
  EXPECT_EQ(single.http.allowed_ips[0].toString(), "10.0.0.0/8");
  EXPECT_TRUE(parse({"-c", writeYaml("allowed_ips: []\n")}).config.http.allowed_ips.empty());
}

TEST_F(ConfigTest, MalformedCidrIsAnError) {
  env_ = {{"AYAFLOW_ALLOWED_IPS", "10.0.0.0/8,10.0.0.0/33"}};
  EXPECT_EQ(parseError({}), "AYAFLOW_ALLOWED_IPS: '10.0.0.0/33' is not a valid CIDR");
  env_.clear();
  EXPECT_EQ(parseError({"--allowed-ips", "nonsense"}),
            "--allowed-ips: 'nonsense' is not a valid CIDR");
  EXPECT_EQ(parseError({"--allowed-ips", "10.0.0.0/8,"}),
            "--allowed-ips: empty item in '10.0.0.0/8,'");
  const std::string path = writeYaml("allowed_ips:\n  - 10.0.0.0/8\n  - 300.0.0.0/8\n");
  EXPECT_EQ(parseError({"-c", path}), path + ": 'allowed_ips': '300.0.0.0/8' is not a valid CIDR");
}

// ---------------------------------------------------------------------------------------------
// Scalars: validation errors name the source and show the value.

TEST_F(ConfigTest, PortErrors) {
  EXPECT_EQ(parseError({"--port", "70000"}), "--port: 70000 is not a port (1-65535)");
  EXPECT_EQ(parseError({"-p", "0"}), "--port: 0 is not a port (1-65535)");
  EXPECT_EQ(parseError({"-p", "-1"}), "--port: -1 is not a port (1-65535)");
  EXPECT_EQ(parseError({"-p", "80x"}), "--port: '80x' is not a port (1-65535)");
  EXPECT_EQ(parseError({"-p", " 80"}), "--port: ' 80' is not a port (1-65535)");
  EXPECT_EQ(parseError({"-p", "+80"}), "--port: +80 is not a port (1-65535)");
  EXPECT_EQ(parseError({"-p", "99999999999999999999999"}),
            "--port: 99999999999999999999999 is not a port (1-65535)");
  env_ = {{"AYAFLOW_PORT", "abc"}};
  EXPECT_EQ(parseError({}), "AYAFLOW_PORT: 'abc' is not a port (1-65535)");
  env_.clear();
  const std::string path = writeYaml("port: 65536\n");
  EXPECT_EQ(parseError({"-c", path}), path + ": 'port': 65536 is not a port (1-65535)");
  EXPECT_EQ(parse({"-p", "65535"}).config.http.port, 65535);
  EXPECT_EQ(parse({"-p", "1"}).config.http.port, 1);
}

TEST_F(ConfigTest, TimeoutRetentionAndWindowErrors) {
  EXPECT_EQ(parseError({"--connection-timeout", "0"}),
            "--connection-timeout: 0 is not a timeout in seconds (1-4294967295)");
  EXPECT_EQ(parseError({"--connection-timeout", "4294967296"}),
            "--connection-timeout: 4294967296 is not a timeout in seconds (1-4294967295)");
  EXPECT_EQ(parseError({"--connection-timeout", "60s"}),
            "--connection-timeout: '60s' is not a timeout in seconds (1-4294967295)");
  EXPECT_EQ(parseError({"--data-retention", "0"}),
            "--data-retention: 0 is not a retention in seconds (1-3153600000); omit it to keep "
            "rows forever");
  EXPECT_THAT(parseError({"--data-retention", "-5"}), StartsWith("--data-retention: -5 is not"));
  EXPECT_THAT(parseError({"--data-retention", "3153600001"}),
              StartsWith("--data-retention: 3153600001 is not"));
  EXPECT_EQ(parse({"--data-retention", "3153600000"}).config.store.retention_s,
            std::optional<std::uint64_t>(3153600000));
  EXPECT_EQ(parseError({"--aggregation-window", "-1"}),
            "--aggregation-window: -1 is not a window in seconds (0-4294967295)");
  EXPECT_EQ(parse({"--aggregation-window", "0"}).config.pipeline.aggregation_window_s, 0u);
  env_ = {{"AYAFLOW_CONNECTION_TIMEOUT", "0"}};
  EXPECT_THAT(parseError({}), StartsWith("AYAFLOW_CONNECTION_TIMEOUT: 0 is not"));
  env_ = {{"AYAFLOW_DATA_RETENTION", "1e3"}};
  EXPECT_THAT(parseError({}), StartsWith("AYAFLOW_DATA_RETENTION: '1e3' is not"));
}

TEST_F(ConfigTest, FlowTableSizes) {
  EXPECT_EQ(parse({"--flow-table-size", "1024"}).config.capture.flow_table_size, 1024u);
  EXPECT_EQ(parse({"--flow-table-size", "1048576"}).config.capture.flow_table_size, 1048576u);
  const std::string range = " is not a number of flows (1024-1048576)";
  EXPECT_EQ(parseError({"--flow-table-size", "1023"}), "--flow-table-size: 1023" + range);
  EXPECT_EQ(parseError({"--flow-table-size", "1048577"}), "--flow-table-size: 1048577" + range);
  EXPECT_THAT(parseError({"--flow-table-size", "64K"}),
              StartsWith("--flow-table-size: '64K' is not"));
  EXPECT_THAT(parseError({"-c", writeYaml("flow_table_size: -5\n")}), HasSubstr("flow_table_size"));
}

// The limits that keep memory and the HTTP server bounded (docs/security.md).
TEST_F(ConfigTest, HardeningLimits) {
  const Config defaults = parse({}).config;
  EXPECT_EQ(defaults.capture.max_connections, 180000u);
  EXPECT_EQ(defaults.http.max_connections, 1024u);
  EXPECT_EQ(defaults.http.max_connections_per_client, 64u);
  EXPECT_EQ(defaults.store.query_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(defaults.pipeline.checkpoint_interval, std::chrono::seconds(2));
  EXPECT_EQ(defaults.inspection.domains.max_dns_entries, 16384u);
  EXPECT_EQ(defaults.resolver.max_entries, 16384u);

  env_ = {{"AYAFLOW_MAX_LIVE_CONNECTIONS", "50000"}, {"AYAFLOW_CHECKPOINT_INTERVAL", "0"}};
  const Config c = parse({"--http-max-connections", "256", "--http-max-connections-per-client", "0",
                          "--history-query-timeout", "500", "--max-domain-names", "1000",
                          "--reverse-dns-cache-size", "300"})
                       .config;
  EXPECT_EQ(c.capture.max_connections, 50000u);
  EXPECT_EQ(c.pipeline.checkpoint_interval, std::chrono::seconds(0));
  EXPECT_EQ(c.http.max_connections, 256u);
  EXPECT_EQ(c.http.max_connections_per_client, 0u);
  EXPECT_EQ(c.store.query_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c.inspection.domains.max_dns_entries, 1000u);
  EXPECT_EQ(c.inspection.domains.max_sni_entries, 1000u);
  EXPECT_EQ(c.resolver.max_entries, 300u);
  env_.clear();

  EXPECT_EQ(parseError({"--max-live-connections", "1000"}),
            "--max-live-connections: 1000 is not a number of connections (1024-4194304)");
  EXPECT_EQ(parseError({"--http-max-connections", "63"}),
            "--http-max-connections: 63 is not a number of connections (64-65536)");
  EXPECT_EQ(parseError({"--history-query-timeout", "99"}),
            "--history-query-timeout: 99 is not a time in milliseconds (100-60000)");
  EXPECT_EQ(parseError({"--checkpoint-interval", "3601"}),
            "--checkpoint-interval: 3601 is not an interval in seconds (0-3600)");
  EXPECT_THAT(parseError({"-c", writeYaml("max_domain_names: 10\n")}),
              HasSubstr("max_domain_names"));
}

TEST_F(ConfigTest, RingBufferSizes) {
  const auto size = [&](const char* text) {
    return parse({"--ring-buffer-size", text}).config.capture.ring_buffer_size;
  };
  EXPECT_EQ(size("256K"), 262144u);
  EXPECT_EQ(size("256k"), 262144u);
  EXPECT_EQ(size("1M"), 1048576u);
  EXPECT_EQ(size("4096"), 4096u);
  EXPECT_EQ(size("4K"), 4096u);
  EXPECT_EQ(size("1G"), 1073741824u);
  EXPECT_EQ(size("1048576"), 1048576u);
  env_ = {{"AYAFLOW_RING_BUFFER_SIZE", "2M"}};
  EXPECT_EQ(parse({}).config.capture.ring_buffer_size, 2u << 20);
  env_.clear();
  EXPECT_EQ(parse({"-c", writeYaml("ring_buffer_size: 65536\n")}).config.capture.ring_buffer_size,
            65536u);
  EXPECT_EQ(parse({"-c", writeYaml("ring_buffer_size: 64K\n")}).config.capture.ring_buffer_size,
            65536u);

  const std::string range = " is not a power of two from 4096 (4K) to 1073741824 (1G)";
  EXPECT_EQ(parseError({"--ring-buffer-size", "3000"}), "--ring-buffer-size: 3000" + range);
  EXPECT_EQ(parseError({"--ring-buffer-size", "0"}), "--ring-buffer-size: 0" + range);
  EXPECT_EQ(parseError({"--ring-buffer-size", "2048"}), "--ring-buffer-size: 2048" + range);
  EXPECT_EQ(parseError({"--ring-buffer-size", "2G"}), "--ring-buffer-size: '2G'" + range);
  EXPECT_EQ(parseError({"--ring-buffer-size", "3K"}), "--ring-buffer-size: '3K'" + range);
  EXPECT_EQ(parseError({"--ring-buffer-size", "99999999999999999999G"}),
            "--ring-buffer-size: '99999999999999999999G' is not a size (bytes, or a number with "
            "a K/M/G suffix)");
  EXPECT_EQ(parseError({"--ring-buffer-size", "18014398509481984K"}),  // 2^54 KiB: overflows
            "--ring-buffer-size: '18014398509481984K'" + range);
  EXPECT_EQ(parseError({"--ring-buffer-size", "-4096"}),
            "--ring-buffer-size: -4096 is not a size (bytes, or a number with a K/M/G suffix)");
  for (const char* bad : {"256KB", "K", "0x1000", "256 K", "1.5M", ""}) {
    EXPECT_THAT(parseError({"--ring-buffer-size", bad}),
                StartsWith(std::string("--ring-buffer-size: '") + bad + "' is not a size"))
        << bad;
  }
}

TEST_F(ConfigTest, DiskBudget) {
  // Defaults: a 1 GiB budget, a floor of 5 % of the file system but at most 512 MiB.
  const Config d = parse({}).config;
  EXPECT_EQ(d.store.max_db_bytes, 1ull << 30);
  EXPECT_EQ(d.store.min_free_bytes, 512ull << 20);
  EXPECT_EQ(d.store.min_free_percent, 5u);

  const auto size = [&](const char* text) {
    return parse({"--max-db-size", text}).config.store.max_db_bytes;
  };
  EXPECT_EQ(size("512M"), 512ull << 20);
  EXPECT_EQ(size("2G"), 2ull << 30);
  EXPECT_EQ(size("2g"), 2ull << 30);
  EXPECT_EQ(size("1T"), 1ull << 40);
  EXPECT_EQ(size("0"), 0u);  // unlimited
  EXPECT_EQ(size("4194304"), 4194304u);
  env_ = {{"AYAFLOW_MAX_DB_SIZE", "64M"}, {"AYAFLOW_MIN_FREE_DISK", "10%"}};
  Config c = parse({}).config;
  EXPECT_EQ(c.store.max_db_bytes, 64ull << 20);
  EXPECT_EQ(c.store.min_free_percent, 10u);
  EXPECT_EQ(c.store.min_free_bytes, 0u);
  env_.clear();
  c = parse({"-c", writeYaml("max_db_size: 100M\nmin_free_disk: 1G\n")}).config;
  EXPECT_EQ(c.store.max_db_bytes, 100ull << 20);
  EXPECT_EQ(c.store.min_free_bytes, 1ull << 30);
  EXPECT_EQ(c.store.min_free_percent, 0u);
  c = parse({"-c", writeYaml("max_db_size: 0\nmin_free_disk: 0\n")}).config;
  EXPECT_EQ(c.store.max_db_bytes, 0u);
  EXPECT_EQ(c.store.min_free_bytes, 0u);
  EXPECT_EQ(c.store.min_free_percent, 0u);
  c = parse({"--min-free-disk", "0%"}).config;
  EXPECT_EQ(c.store.min_free_bytes, 0u);
  EXPECT_EQ(c.store.min_free_percent, 0u);

  const std::string range = " is not a database size from 4M to 1024T (0 = unlimited)";
  EXPECT_EQ(parseError({"--max-db-size", "1M"}), "--max-db-size: '1M'" + range);
  EXPECT_EQ(parseError({"--max-db-size", "4194303"}), "--max-db-size: 4194303" + range);
  EXPECT_EQ(parseError({"--max-db-size", "2048T"}), "--max-db-size: '2048T'" + range);
  for (const char* bad : {"1GB", "G", "-1", "1.5G", "", "99999999999999999999", "20000000T"}) {
    const std::string error = parseError({"--max-db-size", bad});
    EXPECT_THAT(error, StartsWith("--max-db-size: ")) << bad;
    EXPECT_THAT(error, HasSubstr(" is not a size (bytes, or a number with a K/M/G/T suffix; 0 = "
                                 "unlimited)"))
        << bad;
  }
  EXPECT_EQ(parseError({"--min-free-disk", "51%"}),
            "--min-free-disk: '51%' is not a percentage of the file system (0%-50%)");
  EXPECT_EQ(parseError({"--min-free-disk", "x%"}),
            "--min-free-disk: 'x%' is not a percentage of the file system (0%-50%)");
  EXPECT_THAT(parseError({"--min-free-disk", "5 %"}), HasSubstr("is not a"));
  EXPECT_EQ(parseError({"--min-free-disk", "lots"}),
            "--min-free-disk: 'lots' is not a free space (bytes with a K/M/G/T suffix, or a "
            "percentage such as 5%; 0 = no floor)");
  EXPECT_THAT(parseError({"-c", writeYaml("max_db_size: [1]\n")}), HasSubstr("max_db_size"));
}

TEST_F(ConfigTest, ListenAddress) {
  EXPECT_EQ(parse({"--listen-address", "::"}).config.http.address, "::");
  EXPECT_EQ(parse({"--listen-address", "127.0.0.1"}).config.http.address, "127.0.0.1");
  EXPECT_EQ(parseError({"--listen-address", "localhost"}),
            "--listen-address: 'localhost' is not an IPv4 or IPv6 address");
  EXPECT_EQ(parseError({"--listen-address", "0.0.0.0:80"}),
            "--listen-address: '0.0.0.0:80' is not an IPv4 or IPv6 address");
  EXPECT_EQ(parseError({"--listen-address", "[::1]"}),
            "--listen-address: '[::1]' is not an IPv4 or IPv6 address");
}

TEST_F(ConfigTest, AttachMode) {
  EXPECT_EQ(parse({"--attach-mode", "tcx"}).config.capture.attach_mode, bpf::HookMode::kTcx);
  EXPECT_EQ(parse({"--attach-mode", "TC"}).config.capture.attach_mode, bpf::HookMode::kTc);
  EXPECT_EQ(parse({"--attach-mode", "auto"}).config.capture.attach_mode, bpf::HookMode::kAuto);
  EXPECT_EQ(parseError({"--attach-mode", "xdp"}),
            "--attach-mode: 'xdp' is not an attach mode (auto, tcx or tc)");
  EXPECT_STREQ(bpf::toString(bpf::HookMode::kAuto), "auto");
  EXPECT_STREQ(bpf::toString(bpf::HookMode::kTcx), "tcx");
  EXPECT_STREQ(bpf::toString(bpf::HookMode::kTc), "tc");
}

TEST_F(ConfigTest, DbPathMustBeNonEmpty) {
  EXPECT_EQ(parseError({"--db-path", ""}), "--db-path: '' is not a file path");
}

TEST_F(ConfigTest, EnvBooleanWords) {
  const std::pair<const char*, bool> cases[] = {
      {"1", true},      {"0", false},  {"true", true}, {"false", false}, {"TRUE", true},
      {"False", false}, {"yes", true}, {"NO", false},  {"on", true},     {"Off", false}};
  for (const auto& [word, expected] : cases) {
    env_ = {{"AYAFLOW_QUIET", word}, {"AYAFLOW_DEEP_INSPECT", word}};
    const Config c = parse({}).config;
    EXPECT_EQ(c.log.quiet, expected) << word;
    EXPECT_EQ(c.capture.deep_inspect, expected) << word;
  }
  env_ = {{"AYAFLOW_ENABLE_IPV6", "maybe"}};
  EXPECT_EQ(parseError({}),
            "AYAFLOW_ENABLE_IPV6: 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)");
  env_ = {{"AYAFLOW_VERBOSE", "2"}};
  EXPECT_THAT(parseError({}), StartsWith("AYAFLOW_VERBOSE: 2 is not a boolean"));
}

TEST_F(ConfigTest, BooleanFlags) {
  const Config c = parse({"-q", "-v", "--deep-inspect", "--enable-ipv6", "--resolve-dns"}).config;
  EXPECT_TRUE(c.log.quiet);
  EXPECT_TRUE(c.log.verbose);
  EXPECT_TRUE(c.capture.deep_inspect);
  EXPECT_TRUE(c.capture.enable_ipv6);
  EXPECT_TRUE(c.resolve_dns);
  env_ = {{"AYAFLOW_RESOLVE_DNS", "true"}};
  EXPECT_FALSE(parse({"--resolve-dns=false"}).config.resolve_dns);
}

TEST_F(ConfigTest, ContainerRuntimeSocketAndNodeName) {
  const Config d = parse({}).config;
  EXPECT_EQ(d.pods.cri_socket, "auto");
  EXPECT_EQ(d.pods.node_name, "");  // the app takes the host name
  EXPECT_EQ(parse({"--cri-socket", "NONE"}).config.pods.cri_socket, "none");
  EXPECT_EQ(parse({"--cri-socket", "/run/k3s/containerd/containerd.sock"}).config.pods.cri_socket,
            "/run/k3s/containerd/containerd.sock");
  EXPECT_EQ(parse({"--cri-socket", "unix:///run/crio/crio.sock"}).config.pods.cri_socket,
            "unix:///run/crio/crio.sock");
  EXPECT_EQ(parseError({"--cri-socket", "containerd.sock"}),
            "--cri-socket: 'containerd.sock' is not auto, none, an absolute socket path or "
            "unix:///path");
  EXPECT_EQ(parseError({"--cri-socket", "unix://run/x.sock"}),
            "--cri-socket: 'unix://run/x.sock' is not auto, none, an absolute socket path or "
            "unix:///path");
  env_ = {{"AYAFLOW_NODE_NAME", "ip-10-0-1-17.eu-west-1.compute.internal"}};
  EXPECT_EQ(parse({}).config.pods.node_name, "ip-10-0-1-17.eu-west-1.compute.internal");
  EXPECT_EQ(parse({"--node-name", "node-b"}).config.pods.node_name, "node-b");
  EXPECT_EQ(parseError({"--node-name", "Node_A"}),
            "--node-name: 'Node_A' is not a node name (1-253 characters: lower-case letters, "
            "digits, '-', '.')");
  env_.clear();
  EXPECT_EQ(yamlError("node_name: [a]\n"), "config.yaml: 'node_name' must be a string");
}

// ---------------------------------------------------------------------------------------------
// YAML errors

TEST_F(ConfigTest, UnknownYamlKeySuggestsClosest) {
  const std::string path = writeYaml("port: 80\nprot: 8080\n");
  EXPECT_EQ(parseError({"-c", path}), path + ": unknown key 'prot' (did you mean 'port'?)");
  EXPECT_EQ(yamlError("interfaces: [eth0]\n"),
            "config.yaml: unknown key 'interfaces' (did you mean 'interface'?)");
}

TEST_F(ConfigTest, UnknownYamlKeyWithoutCloseMatchListsKnownKeys) {
  const std::string msg = yamlError("config: other.yaml\n");
  EXPECT_THAT(msg, StartsWith("config.yaml: unknown key 'config' (known keys: interface, "
                              "exclude_interface, port, listen_address, db_path,"));
  EXPECT_THAT(msg, HasSubstr("attach_mode"));
  EXPECT_THAT(msg, HasSubstr("ipfix_flush_interval_ms)"));  // the last row (flow export)
}

TEST_F(ConfigTest, DuplicateYamlKey) {
  EXPECT_EQ(yamlError("port: 80\nport: 81\n"), "config.yaml: duplicate key 'port'");
}

TEST_F(ConfigTest, YamlWrongTypes) {
  const auto expect = [&](const std::string& yaml, const std::string& tail) {
    EXPECT_EQ(yamlError(yaml), "config.yaml: " + tail) << yaml;
  };
  expect("port: abc\n", "'port' must be an integer");
  expect("port: \"8080\"\n", "'port' must be an integer");
  expect("port: [8080]\n", "'port' must be an integer");
  expect("port: 80.5\n", "'port' must be an integer");
  expect("port:\n", "'port' must be an integer");
  expect("connection_timeout: {a: 1}\n", "'connection_timeout' must be an integer");
  expect("quiet: maybe\n", "'quiet': 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)");
  expect("quiet: \"true\"\n", "'quiet' must be a boolean (true or false)");
  expect("quiet: [true]\n", "'quiet' must be a boolean (true or false)");
  expect("db_path: [a, b]\n", "'db_path' must be a string");
  expect("db_path: ~\n", "'db_path' must be a string");
  expect("attach_mode: {x: y}\n", "'attach_mode' must be a string");
  expect("ring_buffer_size: [1]\n",
         "'ring_buffer_size' must be a size in bytes (e.g. 262144 or 256K)");
  expect("interface: {eth0: 1}\n", "'interface' must be a string or a list of strings");
  expect("allowed_ips: [[10.0.0.0/8]]\n", "'allowed_ips' must be a list of strings");
  expect("allowed_ips:\n", "'allowed_ips' must be a string or a list of strings");
}

TEST_F(ConfigTest, YamlTopLevelMustBeMapping) {
  EXPECT_EQ(yamlError("- port\n- 80\n"), "config.yaml: top level must be a mapping of key: value");
  EXPECT_EQ(yamlError("just a string\n"), "config.yaml: top level must be a mapping of key: value");
}

TEST_F(ConfigTest, YamlSyntaxErrorNamesFileAndLine) {
  const std::string msg = yamlError("port: 3000\nquiet: true\nallowed_ips: [10.0.0.0/8\n");
  EXPECT_THAT(msg, StartsWith("config.yaml:4:"));
  EXPECT_THAT(msg, HasSubstr("YAML syntax error: "));
  const std::string bad_indent = yamlError("port: 3000\n  quiet: true\n");
  EXPECT_THAT(bad_indent, StartsWith("config.yaml:2:"));
}

TEST_F(ConfigTest, MissingOrUnreadableConfigFile) {
  const std::string missing = dir_ + "/missing.yaml";
  EXPECT_EQ(parseError({"-c", missing}),
            missing + ": cannot read config file: No such file or directory");
  env_ = {{"AYAFLOW_CONFIG", missing}};
  EXPECT_EQ(parseError({}), missing + ": cannot read config file: No such file or directory");
  env_.clear();
  EXPECT_EQ(parseError({"-c", dir_}),
            dir_ + ": config file must be a regular file, not a directory");
  EXPECT_EQ(parseError({"-c", ""}), "--config: '' is not a file path");
}

// A FIFO with no writer would block open() (and a writer could feed it forever): refused at
// once, without waiting.
TEST_F(ConfigTest, FifoOrDeviceConfigFileRefusedWithoutWaiting) {
  const std::string fifo = dir_ + "/fifo.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  files_.push_back(fifo);
  EXPECT_EQ(parseError({"-c", fifo}), fifo + ": config file must be a regular file, not a FIFO");
  EXPECT_EQ(parseError({"-c", "/dev/zero"}),
            "/dev/zero: config file must be a regular file, not a character device");
}

TEST_F(ConfigTest, YamlNestedTooDeepSaysSo) {
  const std::string deep = "port: " + std::string(600, '[') + std::string(600, ']') + "\n";
  const std::string msg = yamlError(deep);
  EXPECT_THAT(msg, StartsWith("config.yaml:1:"));
  EXPECT_THAT(msg, HasSubstr("YAML nested too deep: more than "));
  EXPECT_THAT(msg, HasSubstr("levels of lists or mappings"));
  // Nesting that yaml-cpp accepts reaches the type check as usual.
  EXPECT_EQ(yamlError("port: [[[1]]]\n"), "config.yaml: 'port' must be an integer");
}

TEST_F(ConfigTest, ErrorValuesWithNewlinesStayOneLine) {
  env_ = {{"AYAFLOW_PORT", "80\n81"}};
  EXPECT_EQ(parseError({}), "AYAFLOW_PORT: '80 81' is not a port (1-65535)");
}

// ---------------------------------------------------------------------------------------------
// CLI11 errors, --help, --version

TEST_F(ConfigTest, CommandLineSyntaxErrorsAreOneLine) {
  EXPECT_THAT(parseError({"--bogus"}), HasSubstr("--bogus"));
  EXPECT_THAT(parseError({"--port"}), HasSubstr("--port"));
  EXPECT_THAT(parseError({"-i"}), HasSubstr("--interface"));
  EXPECT_THAT(parseError({"stray"}), HasSubstr("stray"));
  EXPECT_THAT(parseError({"-p", "1", "-p", "2"}), HasSubstr("--port"));
  EXPECT_THAT(parseError({"--quiet=maybe"}), HasSubstr("--quiet"));
}

TEST_F(ConfigTest, HelpListsEveryFlagWithItsEnvVar) {
  const ParseOutcome out = parse({"--help"});
  EXPECT_TRUE(out.exit_now);
  EXPECT_EQ(out.exit_code, 0);
  for (const char* text : {"--interface",
                           "--port",
                           "--listen-address",
                           "--db-path",
                           "--connection-timeout",
                           "--data-retention",
                           "--aggregation-window",
                           "--allowed-ips",
                           "--config",
                           "--quiet",
                           "--verbose",
                           "--deep-inspect",
                           "--enable-ipv6",
                           "--resolve-dns",
                           "--ring-buffer-size",
                           "--attach-mode",
                           "--version",
                           "AYAFLOW_INTERFACE",
                           "AYAFLOW_PORT",
                           "AYAFLOW_LISTEN_ADDRESS",
                           "AYAFLOW_DB_PATH",
                           "AYAFLOW_CONNECTION_TIMEOUT",
                           "AYAFLOW_DATA_RETENTION",
                           "AYAFLOW_AGGREGATION_WINDOW",
                           "AYAFLOW_ALLOWED_IPS",
                           "AYAFLOW_CONFIG",
                           "AYAFLOW_QUIET",
                           "AYAFLOW_VERBOSE",
                           "AYAFLOW_DEEP_INSPECT",
                           "AYAFLOW_ENABLE_IPV6",
                           "AYAFLOW_RESOLVE_DNS",
                           "AYAFLOW_RING_BUFFER_SIZE",
                           "AYAFLOW_ATTACH_MODE"}) {
    EXPECT_THAT(out.output, HasSubstr(text));
  }
  EXPECT_TRUE(parse({"-h"}).exit_now);
}

TEST_F(ConfigTest, HelpDoesNotReadTheConfigFile) {
  const ParseOutcome out = parse({"-c", dir_ + "/missing.yaml", "--help"});
  EXPECT_TRUE(out.exit_now);
  EXPECT_EQ(out.exit_code, 0);
}

TEST_F(ConfigTest, Version) {
  const ParseOutcome out = parse({"--version"});
  EXPECT_TRUE(out.exit_now);
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_THAT(out.output, ::testing::MatchesRegex("ayaflow [0-9]+\\.[0-9]+\\.[0-9]+\n"));
}

TEST_F(ConfigTest, NoArgvAtAll) {
  EXPECT_EQ(parseConfig(0, nullptr, env()).config.http.port, 3000);
}

TEST(ProcessEnvironmentTest, ReadsRealEnvironment) {
  ASSERT_EQ(::setenv("AYAFLOW_TEST_ONLY_VAR", "42", 1), 0);
  const EnvLookup env = processEnvironment();
  EXPECT_EQ(env("AYAFLOW_TEST_ONLY_VAR"), std::optional<std::string>("42"));
  ::unsetenv("AYAFLOW_TEST_ONLY_VAR");
  EXPECT_EQ(env("AYAFLOW_TEST_ONLY_VAR"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// validateEnvironment

class ValidateEnvironmentTest : public ConfigTest {
 protected:
  Config good() const {
    Config c;
    c.capture.interfaces.include = {"lo"};
    c.store.db_path = dir_ + "/traffic.db";
    return c;
  }
};

TEST_F(ValidateEnvironmentTest, LoopbackAndWritableDirPass) {
  EXPECT_NO_THROW(validateEnvironment(good()));
  Config memory = good();
  memory.store.db_path = ":memory:";
  EXPECT_NO_THROW(validateEnvironment(memory));
  Config existing = good();
  existing.store.db_path = writeYaml("", "existing.db");
  EXPECT_NO_THROW(validateEnvironment(existing));
}

TEST_F(ValidateEnvironmentTest, MissingInterface) {
  Config c = good();
  c.capture.interfaces.include = {"lo", "nonexistent0"};
  try {
    validateEnvironment(c);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "--interface: no such interface 'nonexistent0' (No such device)");
  }
}

std::string validateError(const Config& c) {
  try {
    validateEnvironment(c);
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos);
    return msg;
  }
  ADD_FAILURE() << "no ConfigError thrown";
  return {};
}

TEST_F(ValidateEnvironmentTest, MissingDirectory) {
  Config c = good();
  c.store.db_path = dir_ + "/nodir/traffic.db";
  EXPECT_EQ(validateError(c), "--db-path: directory '" + dir_ + "/nodir' of '" + c.store.db_path +
                                  "' is not accessible: No such file or directory");
}

TEST_F(ValidateEnvironmentTest, ParentIsAFile) {
  Config c = good();
  const std::string file = writeYaml("", "plain");
  c.store.db_path = file + "/traffic.db";
  EXPECT_EQ(validateError(c),
            "--db-path: '" + file + "' in '" + c.store.db_path + "' is not a directory");
}

TEST_F(ValidateEnvironmentTest, DbPathIsADirectory) {
  Config c = good();
  ASSERT_EQ(::mkdir((dir_ + "/sub").c_str(), 0700), 0);
  c.store.db_path = dir_ + "/sub";
  EXPECT_EQ(validateError(c), "--db-path: '" + c.store.db_path + "' is a directory");
}

TEST_F(ValidateEnvironmentTest, UnwritableDirectory) {
  // Root ignores permissions, so the check runs in a child process (a death test forks) that
  // drops to nobody first when it is root.
  const std::string ro = dir_ + "/ro";
  ASSERT_EQ(::mkdir(ro.c_str(), 0555), 0);
  ASSERT_EQ(::chmod(ro.c_str(), 0555), 0);    // mkdir applies the umask
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);  // nobody must be able to reach ro
  Config c = good();
  c.store.db_path = ro + "/traffic.db";
  const std::string expected = "--db-path: directory '" + ro + "' of '" + c.store.db_path +
                               "' is not writable: Permission denied";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        constexpr uid_t kNobody = 65534;
        if (::geteuid() == 0 &&
            (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)) {
          std::fprintf(stderr, "cannot drop privileges\n");
          std::_Exit(2);
        }
        try {
          validateEnvironment(c);
        } catch (const ConfigError& e) {
          std::fprintf(stderr, "%s\n", e.what());
          std::_Exit(e.what() == expected ? 0 : 1);
        }
        std::_Exit(1);
      },
      ::testing::ExitedWithCode(0), "is not writable");
}

// ---- flow export (issue 17) ----

TEST_F(ConfigTest, ExportIsOffByDefault) {
  const Config c = parse({}).config;
  EXPECT_FALSE(c.clickhouse.enabled());
  EXPECT_FALSE(c.ipfix.enabled());
  EXPECT_EQ(c.clickhouse.table, "ayaflow_flows");
  EXPECT_EQ(c.ipfix.transport, exporter::IpfixTransport::kUdp);
}

TEST_F(ConfigTest, ClickHouseSettingsFromFlagsEnvAndYaml) {
  env_["AYAFLOW_CLICKHOUSE_PASSWORD"] = "s3cret";
  env_["AYAFLOW_CLICKHOUSE_DATABASE"] = "flows";
  const std::string yaml = writeYaml(
      "clickhouse_table: node_flows\nclickhouse_retention_days: 30\n"
      "clickhouse_create_table: true\n");
  const Config c =
      parse({"--config", yaml, "--clickhouse-url", "https://ch.example:8443", "--clickhouse-user",
             "ayaflow", "--clickhouse-spool-records", "5000", "--clickhouse-flush-interval", "250"})
          .config;
  EXPECT_EQ(c.clickhouse.url, "https://ch.example:8443");
  EXPECT_EQ(c.clickhouse.database, "flows");
  EXPECT_EQ(c.clickhouse.table, "node_flows");
  EXPECT_EQ(c.clickhouse.user, "ayaflow");
  EXPECT_EQ(c.clickhouse.password, "s3cret");
  EXPECT_EQ(c.clickhouse.retention_days, std::optional<std::uint32_t>(30));
  EXPECT_TRUE(c.clickhouse.create_table);
  EXPECT_EQ(c.clickhouse.spool_records, 5000u);
  EXPECT_EQ(c.clickhouse.flush_interval, std::chrono::milliseconds(250));
}

TEST_F(ConfigTest, ClickHouseBadValuesNameTheFlag) {
  EXPECT_NE(parseError({"--clickhouse-url", "ftp://x"}).find("--clickhouse-url"),
            std::string::npos);
  EXPECT_NE(parseError({"--clickhouse-url", "http://user:pw@x:8123"}).find("no credentials"),
            std::string::npos);
  EXPECT_NE(parseError({"--clickhouse-table", "flows; DROP"}).find("--clickhouse-table"),
            std::string::npos);
  EXPECT_NE(parseError({"--clickhouse-retention-days", "0"}).find("--clickhouse-retention-days"),
            std::string::npos);
  // No password flag: it would show in ps and shell history.
  EXPECT_NE(parseError({"--clickhouse-password", "x"}).find("clickhouse-password"),
            std::string::npos);
}

TEST_F(ConfigTest, IpfixSettings) {
  const Config c =
      parse({"--ipfix-collector", "10.0.0.5:4739,[fd00::5]:4739", "--ipfix-collector",
             "collector.example:2055", "--ipfix-transport", "TCP", "--ipfix-observation-domain",
             "42", "--ipfix-template-refresh", "5", "--ipfix-max-message", "9000"})
          .config;
  EXPECT_EQ(c.ipfix.collectors, (std::vector<std::string>{"10.0.0.5:4739", "[fd00::5]:4739",
                                                          "collector.example:2055"}));
  EXPECT_EQ(c.ipfix.transport, exporter::IpfixTransport::kTcp);
  EXPECT_EQ(c.ipfix.observation_domain, 42u);
  EXPECT_EQ(c.ipfix.template_refresh, std::chrono::seconds(5));
  EXPECT_EQ(c.ipfix.max_message, 9000u);
  EXPECT_NE(parseError({"--ipfix-collector", "fd00::5:4739"}).find("[address]:port"),
            std::string::npos);
  EXPECT_NE(parseError({"--ipfix-collector", "host"}).find("--ipfix-collector"), std::string::npos);
  EXPECT_NE(parseError({"--ipfix-transport", "sctp"}).find("udp or tcp"), std::string::npos);
  EXPECT_NE(parseError({"--ipfix-max-message", "100"}).find("--ipfix-max-message"),
            std::string::npos);
}
// ---- end of flow export ----

}  // namespace
}  // namespace ayaflow::app
