// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

// The properties the fuzz targets check on every input. Shared by the libFuzzer targets
// (fuzz_*.cpp) and by tests/inspect/corpus_replay_test.cpp, which replays the committed
// corpora and regressions in every build. A violated property aborts (libFuzzer then saves
// the input; the replay test dies).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "ayaflow/inspect/dns.h"
#include "ayaflow/inspect/domain_map.h"
#include "ayaflow/inspect/host_name.h"
#include "ayaflow/inspect/stream_reassembler.h"
#include "ayaflow/inspect/tls.h"

#define AYAFLOW_FUZZ_CHECK(cond)                                                         \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace ayaflow::inspect::fuzz {

inline bool isNormalizedName(const std::string& name) {
  std::string again;
  return normalizeHostName(name, again) && again == name;
}

/// DNS: every name reported is a valid lower-case host name; addresses answer the question;
/// caps hold; TCP framing parses the same message; a cut copy keeps the question.
inline void checkDns(const std::uint8_t* data, std::size_t len) {
  const auto m = parseDnsMessage(data, len);
  if (!m) return;
  AYAFLOW_FUZZ_CHECK(isNormalizedName(m->qname));
  AYAFLOW_FUZZ_CHECK(m->qdcount >= 1 && m->qdcount <= kDnsMaxQuestions);
  AYAFLOW_FUZZ_CHECK(m->aliases.size() <= kDnsMaxCnameChain);
  AYAFLOW_FUZZ_CHECK(m->addresses.size() <= kDnsMaxAnswers);
  for (const auto& a : m->aliases) AYAFLOW_FUZZ_CHECK(isNormalizedName(a));
  for (const auto& a : m->addresses) {
    AYAFLOW_FUZZ_CHECK(a.name == m->qname);
    AYAFLOW_FUZZ_CHECK(isNormalizedName(a.owner));
  }
  if (!m->is_response) AYAFLOW_FUZZ_CHECK(m->addresses.empty() && m->aliases.empty());

  std::string framed(2 + len, '\0');
  framed[0] = static_cast<char>(len >> 8);
  framed[1] = static_cast<char>(len);
  if (len > 0) std::memcpy(&framed[2], data, len);
  if (len <= 0xFFFF) {
    const auto t =
        parseDnsTcpMessage(reinterpret_cast<const std::uint8_t*>(framed.data()), framed.size());
    AYAFLOW_FUZZ_CHECK(t && t->qname == m->qname && t->addresses.size() == m->addresses.size());
  }
  const auto cut = parseDnsMessage(data, len - 1);
  if (cut) AYAFLOW_FUZZ_CHECK(cut->qname == m->qname);

  static DomainMap map;
  map.learnDnsResponse(*m, flow::IpAddress{});
  for (const auto& a : m->addresses) {
    flow::FlowKey k;
    k.remote = a.address;
    k.remote_port = 443;
    (void)map.lookup(k);
  }
  if (map.dnsSize() > 4096) map.expire();
}

/// TLS: verdict invariants, and prefix consistency: a prefix yields kNeedMore or the whole
/// input's verdict, and never reaches kFound/kNoSni before `needed`.
inline void checkTls(const std::uint8_t* data, std::size_t len) {
  const TlsParseResult whole = parseTlsClientHello(data, len);
  switch (whole.status) {
    case TlsParseResult::kFound:
      AYAFLOW_FUZZ_CHECK(isNormalizedName(whole.sni));
      AYAFLOW_FUZZ_CHECK(whole.sni_offset < len);
      break;
    case TlsParseResult::kNeedMore:
      AYAFLOW_FUZZ_CHECK(whole.needed > len);
      AYAFLOW_FUZZ_CHECK(whole.sni.empty());
      break;
    default:
      AYAFLOW_FUZZ_CHECK(whole.sni.empty());
  }
  const std::size_t cuts[] = {len / 2, len - len / 4, len > 0 ? len - 1 : 0,
                              len > 0 ? data[0] % (len + 1) : 0};
  for (const std::size_t cut : cuts) {
    if (cut >= len) continue;
    const TlsParseResult p = parseTlsClientHello(data, cut);
    if (p.status == TlsParseResult::kNeedMore) {
      AYAFLOW_FUZZ_CHECK(p.needed > cut);
      if (whole.status == TlsParseResult::kFound || whole.status == TlsParseResult::kNoSni) {
        AYAFLOW_FUZZ_CHECK(len >= p.needed);
      }
    } else {
      AYAFLOW_FUZZ_CHECK(p.status == whole.status);
      AYAFLOW_FUZZ_CHECK(p.sni == whole.sni);
      AYAFLOW_FUZZ_CHECK(p.sni_offset == whole.sni_offset);
    }
  }
}

/// Reassembler: a differential check against a byte-map model for streams whose start is
/// declared (keys 0-7), plain invariants for streams that find their own start (8-15).
///
/// Input: a sequence of operations, each [op][key] then op-specific bytes:
///   op % 6 = 0-2 add: seq delta (2 bytes, signed, from 0xFFFFFF00), length (2 bytes, % 1024),
///                     payload;  3 startAt: seq delta (2 bytes);  4 finish;  5 erase.
/// Limits are set so the model's streams are never evicted nor dropped.
inline void checkReassembler(const std::uint8_t* data, std::size_t len) {
  constexpr std::size_t kWindow = 2048;
  constexpr std::uint32_t kBase = 0xFFFFFF00u;
  StreamReassembler::Options o;
  o.max_stream_bytes = kWindow;
  o.max_streams = 16;
  o.max_total_bytes = 1u << 30;
  o.max_ranges = kWindow;  // never kDropped for the model's keys
  StreamReassembler r(o);

  struct Model {
    std::uint32_t base = 0;
    bool finished = false;
    std::array<std::int16_t, kWindow> bytes;  // -1: not received
  };
  std::map<int, Model> model;
  std::uint64_t now = 0;  // advances by one per operation
  std::size_t p = 0;
  auto next = [&]() -> std::uint8_t { return p < len ? data[p++] : 0; };
  auto keyOf = [](int k) {
    flow::FlowKey key;
    key.local_port = static_cast<std::uint16_t>(k);
    key.protocol = 6;
    return key;
  };

  while (p < len) {
    const std::uint8_t op = next() % 6;
    const int k = next() % 16;
    const flow::FlowKey key = keyOf(k);
    const bool modelled = k < 8;
    ++now;
    switch (op) {
      case 0:
      case 1:
      case 2: {
        const auto delta = static_cast<std::int16_t>((next() << 8) | next());
        const std::uint32_t seq = kBase + static_cast<std::uint32_t>(std::int32_t{delta});
        std::size_t n = ((std::size_t{next()} << 8) | next()) % 1024;
        n = std::min(n, len - p);
        const std::uint8_t* payload = data + p;
        p += n;
        if (modelled && model.count(k) == 0) {
          r.startAt(key, kBase, now);
          Model m;
          m.base = kBase;
          m.bytes.fill(-1);
          model[k] = m;
        }
        const auto v = r.add(key, seq, payload, n, now);
        AYAFLOW_FUZZ_CHECK(v.len <= kWindow);
        if (!modelled) break;
        Model& m = model[k];
        if (m.finished) {
          AYAFLOW_FUZZ_CHECK(n == 0 || v.status == StreamReassembler::Status::kFinished);
          break;
        }
        for (std::size_t i = 0; i < n; ++i) {
          const auto off = static_cast<std::int32_t>(seq + static_cast<std::uint32_t>(i) - m.base);
          if (off >= 0 && static_cast<std::size_t>(off) < kWindow) m.bytes[off] = payload[i];
        }
        std::size_t contiguous = 0;
        while (contiguous < kWindow && m.bytes[contiguous] >= 0) ++contiguous;
        AYAFLOW_FUZZ_CHECK(v.len == contiguous);
        for (std::size_t i = 0; i < contiguous; ++i) {
          AYAFLOW_FUZZ_CHECK(v.data[i] == static_cast<std::uint8_t>(m.bytes[i]));
        }
        if (v.status == StreamReassembler::Status::kGrew) {
          (void)parseTlsClientHello(v.data, v.len);
        }
        break;
      }
      case 3: {
        const auto delta = static_cast<std::int16_t>((next() << 8) | next());
        if (modelled) break;  // modelled streams keep the start set on creation
        r.startAt(key, kBase + static_cast<std::uint32_t>(std::int32_t{delta}), now);
        break;
      }
      case 4:
        r.finish(key);
        if (modelled && model.count(k) != 0) {
          model[k].finished = true;
          AYAFLOW_FUZZ_CHECK(r.view(key).len == 0);
        }
        break;
      case 5:
        r.erase(key);
        if (modelled) model.erase(k);
        AYAFLOW_FUZZ_CHECK(r.view(key).len == 0);
        break;
    }
    AYAFLOW_FUZZ_CHECK(r.size() <= o.max_streams);
  }
  // Memory accounting matches once everything is released.
  for (int k = 0; k < 16; ++k) r.erase(keyOf(k));
  AYAFLOW_FUZZ_CHECK(r.size() == 0 && r.bufferedBytes() == 0);

  // The same operations on a tight reassembler (evictions, holes dropped, expiry; op 3 is
  // expire here): bounds only.
  StreamReassembler::Options t;
  t.max_stream_bytes = 512;
  t.max_streams = 3;
  t.max_total_bytes = 1200;
  t.max_ranges = 4;
  t.idle_timeout_ns = 5;
  StreamReassembler tight(t);
  p = 0;
  now = 0;
  while (p < len) {
    const std::uint8_t op = next() % 6;
    const flow::FlowKey key = keyOf(next() % 16);
    now += 1 + (op == 3 ? next() % 8 : 0);
    if (op <= 2) {
      const auto delta = static_cast<std::int16_t>((next() << 8) | next());
      std::size_t n = ((std::size_t{next()} << 8) | next()) % 1024;
      n = std::min(n, len - p);
      const auto v =
          tight.add(key, kBase + static_cast<std::uint32_t>(std::int32_t{delta}), data + p, n, now);
      p += n;
      AYAFLOW_FUZZ_CHECK(v.len <= t.max_stream_bytes);
    } else if (op == 3) {
      tight.expire(now);
    } else if (op == 4) {
      tight.finish(key);
    } else {
      tight.erase(key);
    }
    AYAFLOW_FUZZ_CHECK(tight.size() <= t.max_streams);
    // Over budget only when one stream alone exceeds it.
    AYAFLOW_FUZZ_CHECK(tight.bufferedBytes() <= t.max_total_bytes || tight.size() <= 1);
  }
  tight.expire(now + 100);
  AYAFLOW_FUZZ_CHECK(tight.size() == 0 && tight.bufferedBytes() == 0);
}

}  // namespace ayaflow::inspect::fuzz
