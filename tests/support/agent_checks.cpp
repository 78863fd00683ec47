// SPDX-License-Identifier: MIT OR Apache-2.0
#include "agent_checks.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <thread>

namespace ayaflow::test {

using namespace std::chrono_literals;

Totals linkTotals(const std::map<LinkCounter::Key, LinkCounter::Count>& counts) {
  Totals t;
  for (const auto& [key, c] : counts) {
    t.packets += c.packets;
    t.bytes += c.bytes;
  }
  return t;
}

std::string endpoint(const std::string& addr, std::uint16_t port) {
  return addr.find(':') != std::string::npos ? "[" + addr + "]:" + std::to_string(port)
                                             : addr + ":" + std::to_string(port);
}

std::uint64_t metricValue(const std::string& text, const std::string& name) {
  std::size_t pos = 0;
  while ((pos = text.find(name + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      return static_cast<std::uint64_t>(std::stod(text.substr(pos + name.size() + 1)));
    }
    pos += name.size();
  }
  return UINT64_MAX;
}

nlohmann::json waitForStats(AgentProcess& agent, std::uint64_t packets,
                            std::chrono::milliseconds timeout) {
  nlohmann::json stats;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    stats = nlohmann::json::parse(agent.get("/api/stats").body);
    if (stats.at("total_packets").get<std::uint64_t>() >= packets) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return stats;
}

std::uint64_t waitForMetric(AgentProcess& agent, const std::string& name, std::uint64_t value) {
  std::uint64_t seen = UINT64_MAX;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    seen = metricValue(agent.get("/metrics").body, name);
    if (seen == value) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return seen;
}

std::vector<std::vector<std::string>> queryRows(const std::string& db_path,
                                                const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  sqlite3* db = nullptr;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << db_path << ": " << sqlite3_errmsg(db) << " in " << sql;
  } else {
    while (sqlite3_step(st) == SQLITE_ROW) {
      auto& row = rows.emplace_back();
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const auto* text = sqlite3_column_text(st, i);
        row.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
      }
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

std::vector<std::string> queryRow(const std::string& db_path, const std::string& sql) {
  auto rows = queryRows(db_path, sql);
  return rows.empty() ? std::vector<std::string>{} : std::move(rows.front());
}

}  // namespace ayaflow::test
