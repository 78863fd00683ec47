// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/tls.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "test_data.h"

namespace ayaflow::inspect {
namespace {

using testing::appendBe16;
using testing::Bytes;
using testing::putBe16;
using testing::readData;

const std::string kName = "www.example.test";

TlsParseResult parse(const Bytes& b) { return parseTlsClientHello(b.data(), b.size()); }
TlsParseResult parse(const Bytes& b, std::size_t len) { return parseTlsClientHello(b.data(), len); }

std::size_t be16(const Bytes& b, std::size_t at) { return (std::size_t{b[at]} << 8) | b[at + 1]; }

std::size_t findName(const Bytes& b, const std::string& name = kName) {
  const auto it = std::search(b.begin(), b.end(), name.begin(), name.end());
  return it == b.end() ? std::string::npos : static_cast<std::size_t>(it - b.begin());
}

/// Offsets in a single-record hello (as recorded): where the extensions block starts.
struct Layout {
  std::size_t ext_len_at;  // the 2-byte extensions length
  std::size_t ext_begin;   // first extension
};

Layout layout(const Bytes& h) {
  EXPECT_EQ(5 + be16(h, 3), h.size()) << "single record expected";
  std::size_t p = 5 + 4 + 2 + 32;
  p += 1 + h[p];
  p += 2 + be16(h, p);
  p += 1 + h[p];
  return {p, p + 2};
}

/// Fixes the record, handshake and extensions lengths after `delta` bytes were inserted
/// into the extensions block of a single-record hello.
void adjustLengths(Bytes& h, const Layout& l, std::ptrdiff_t delta) {
  putBe16(h, 3, be16(h, 3) + delta);
  const std::size_t hs = ((std::size_t{h[6]} << 16) | (std::size_t{h[7]} << 8) | h[8]) + delta;
  h[6] = static_cast<std::uint8_t>(hs >> 16);
  h[7] = static_cast<std::uint8_t>(hs >> 8);
  h[8] = static_cast<std::uint8_t>(hs);
  putBe16(h, l.ext_len_at, be16(h, l.ext_len_at) + delta);
}

Bytes extension(std::size_t type, const Bytes& body) {
  Bytes e;
  appendBe16(e, type);
  appendBe16(e, body.size());
  e.insert(e.end(), body.begin(), body.end());
  return e;
}

/// server_name extension with the given (name_type, name) entries.
Bytes sniExtension(const std::vector<std::pair<std::uint8_t, std::string>>& names) {
  Bytes list;
  for (const auto& [type, name] : names) {
    list.push_back(type);
    appendBe16(list, name.size());
    list.insert(list.end(), name.begin(), name.end());
  }
  Bytes body;
  appendBe16(body, list.size());
  body.insert(body.end(), list.begin(), list.end());
  return extension(0, body);
}

/// Inserts extensions at the start of a real hello's extensions block (before its SNI).
Bytes insertFirst(const Bytes& hello, const Bytes& exts) {
  Bytes h = hello;
  const Layout l = layout(h);
  h.insert(h.begin() + l.ext_begin, exts.begin(), exts.end());
  adjustLengths(h, l, static_cast<std::ptrdiff_t>(exts.size()));
  return h;
}

/// Removes every extension of `type` from a single-record hello.
Bytes removeExtension(const Bytes& hello, std::size_t type) {
  Bytes h = hello;
  const Layout l = layout(h);
  std::size_t p = l.ext_begin;
  while (p < h.size()) {
    const std::size_t len = 4 + be16(h, p + 2);
    if (be16(h, p) == type) {
      h.erase(h.begin() + p, h.begin() + p + len);
      adjustLengths(h, l, -static_cast<std::ptrdiff_t>(len));
    } else {
      p += len;
    }
  }
  return h;
}

/// A minimal hello built from scratch: TLS 1.2 version, zero random, one GREASE and one
/// real cipher suite, null compression, the given extensions block contents.
Bytes buildHello(const Bytes& exts, bool with_ext_block = true) {
  Bytes body = {0x03, 0x03};
  body.insert(body.end(), 32, 0x11);
  body.push_back(0);  // session id
  appendBe16(body, 4);
  body.insert(body.end(), {0x2a, 0x2a, 0x13, 0x01});
  body.insert(body.end(), {0x01, 0x00});
  if (with_ext_block) {
    appendBe16(body, exts.size());
    body.insert(body.end(), exts.begin(), exts.end());
  }
  Bytes h = {22, 3, 1};
  appendBe16(h, 4 + body.size());
  h.insert(h.end(),
           {1, static_cast<std::uint8_t>(body.size() >> 16),
            static_cast<std::uint8_t>(body.size() >> 8), static_cast<std::uint8_t>(body.size())});
  h.insert(h.end(), body.begin(), body.end());
  return h;
}

/// Re-frames a single-record hello's handshake bytes into records cut at `cuts`
/// (offsets into the handshake bytes, ascending).
Bytes splitRecords(const Bytes& hello, const std::vector<std::size_t>& cuts) {
  const Bytes hs(hello.begin() + 5, hello.end());
  Bytes out;
  std::size_t from = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(hs.size());
  for (const std::size_t to : ends) {
    out.insert(out.end(), {22, 3, 1});
    appendBe16(out, to - from);
    out.insert(out.end(), hs.begin() + from, hs.begin() + to);
    from = to;
  }
  return out;
}

// --- real captures (data/record.sh) -----------------------------------------------------------

struct RealCase {
  const char* file;
  std::size_t sni_offset;  // where the name starts in the stream
};

// OpenSSL 3.0 s_client (default, -groups P-521:X25519:P-256, every cipher), curl 7.88
// (padding extension to 512 bytes), and the 1.4 KB hello with a 1 KiB key share.
const RealCase kReal[] = {
    {"tls_openssl.bin", 153}, {"tls_openssl_groups.bin", 153},
    {"tls_curl.bin", 153},    {"tls_openssl_allciphers.bin", 265},
    {"tls_split.bin", 265},   {"tls_mss200.bin", 265},
};

TEST(TlsRealCapture, FindsSni) {
  for (const RealCase& c : kReal) {
    SCOPED_TRACE(c.file);
    const Bytes h = readData(c.file);
    ASSERT_EQ(findName(h), c.sni_offset);
    const TlsParseResult r = parse(h);
    EXPECT_EQ(r.status, TlsParseResult::kFound);
    EXPECT_EQ(r.sni, kName);
    EXPECT_EQ(r.sni_offset, c.sni_offset);
  }
}

TEST(TlsRealCapture, SniPastByte256FromARealClient) {
  // s_client -cipher ALL:@SECLEVEL=0 offers 87 suites: the SNI starts at byte 265.
  const Bytes h = readData("tls_openssl_allciphers.bin");
  EXPECT_EQ(parse(h, 256).status, TlsParseResult::kNeedMore);
  EXPECT_EQ(parse(h, 256).needed, 260u);                // the extension header
  EXPECT_EQ(parse(h, 260).needed, 265 + kName.size());  // the whole extension
  const TlsParseResult r = parse(h);
  EXPECT_EQ(r.status, TlsParseResult::kFound);
  EXPECT_GT(r.sni_offset, 256u);
}

// Every prefix: kNeedMore with a `needed` that is > len and never beyond the end of the
// name, until the whole server_name extension is there; then kFound.
TEST(TlsRealCapture, TruncatedAtEveryLength) {
  for (const RealCase& c : kReal) {
    SCOPED_TRACE(c.file);
    const Bytes h = readData(c.file);
    const std::size_t found_at = c.sni_offset + kName.size();
    for (std::size_t len = 0; len < h.size(); ++len) {
      const TlsParseResult r = parse(h, len);
      if (len >= found_at) {
        ASSERT_EQ(r.status, TlsParseResult::kFound) << len;
        ASSERT_EQ(r.sni, kName);
      } else {
        ASSERT_EQ(r.status, TlsParseResult::kNeedMore) << len;
        ASSERT_GT(r.needed, len);
        ASSERT_LE(r.needed, found_at) << len;
      }
    }
  }
}

TEST(TlsRealCapture, NeededValues) {
  const Bytes h = readData("tls_openssl.bin");
  EXPECT_EQ(parse(h, 0).needed, 9u);  // record header + handshake header
  EXPECT_EQ(parse(h, 3).needed, 9u);
  EXPECT_EQ(parse(h, 9).needed, 44u);            // ... + version + random + session id length
  EXPECT_EQ(parse(h, 44).needed, 44u + 32 + 2);  // the session id, cipher suites length
}

TEST(TlsRealCapture, SplitAcrossTwoRecordsAtEveryPoint) {
  const Bytes h = readData("tls_openssl.bin");
  const std::size_t hs_len = h.size() - 5;
  for (std::size_t cut = 1; cut < hs_len; ++cut) {
    const Bytes two = splitRecords(h, {cut});
    const TlsParseResult r = parse(two);
    ASSERT_EQ(r.status, TlsParseResult::kFound) << cut;
    ASSERT_EQ(r.sni, kName);
    // The name's first byte moves by one record header if the cut lies before it.
    ASSERT_EQ(r.sni_offset, cut <= 153 - 5 ? 153u + 5 : 153u) << cut;
  }
}

TEST(TlsRealCapture, SplitRecordsTruncatedAtEveryLength) {
  // Cut through the middle of the name: record 2 starts at handshake byte 155.
  const Bytes two = splitRecords(readData("tls_openssl.bin"), {155});
  const std::size_t found_at = 153 + 5 + kName.size();
  for (std::size_t len = 0; len < two.size(); ++len) {
    const TlsParseResult r = parse(two, len);
    if (len >= found_at) {
      ASSERT_EQ(r.status, TlsParseResult::kFound) << len;
    } else {
      ASSERT_EQ(r.status, TlsParseResult::kNeedMore) << len;
      ASSERT_GT(r.needed, len);
      ASSERT_LE(r.needed, found_at) << len;
    }
  }
  // Only record 1 present: the next header and the rest of the name are needed.
  EXPECT_EQ(parse(two, 5 + 155).needed, found_at);
}

TEST(TlsRealCapture, ManyRecords) {
  const Bytes h = readData("tls_openssl.bin");
  std::vector<std::size_t> cuts;
  for (std::size_t c = 16; c < h.size() - 5; c += 16) cuts.push_back(c);
  EXPECT_EQ(parse(splitRecords(h, cuts)).status, TlsParseResult::kFound);  // 20 records
  cuts.clear();
  for (std::size_t c = 1; c < h.size() - 5; ++c) cuts.push_back(c);
  // One byte per record: more than kTlsMaxRecords before the name.
  EXPECT_EQ(parse(splitRecords(h, cuts)).status, TlsParseResult::kMalformed);
}

TEST(TlsRealCapture, SniPast256Synthetic) {
  // A padding extension (type 21) of 300 bytes inserted before the SNI of a real hello.
  const Bytes h = insertFirst(readData("tls_openssl.bin"), extension(21, Bytes(300, 0)));
  const TlsParseResult r = parse(h);
  EXPECT_EQ(r.status, TlsParseResult::kFound);
  EXPECT_EQ(r.sni, kName);
  EXPECT_EQ(r.sni_offset, 153u + 304);
  EXPECT_EQ(findName(h), r.sni_offset);
}

TEST(TlsRealCapture, LargeKeyShareBeforeSni) {
  // A browser-like order: GREASE, a 1216-byte share (X25519MLKEM768 size), ECH GREASE,
  // then the SNI.
  Bytes share_body;
  appendBe16(share_body, 1220);
  appendBe16(share_body, 0x11ec);
  appendBe16(share_body, 1216);
  share_body.insert(share_body.end(), 1216, 0x5a);
  Bytes exts = extension(0x0a0a, {});
  const Bytes share = extension(0x0033, share_body);
  exts.insert(exts.end(), share.begin(), share.end());
  const Bytes ech = extension(0xfe0d, Bytes(250, 0x3c));  // ECH GREASE
  exts.insert(exts.end(), ech.begin(), ech.end());
  const Bytes h = insertFirst(readData("tls_curl.bin"), exts);
  const TlsParseResult r = parse(h);
  ASSERT_EQ(r.status, TlsParseResult::kFound);
  EXPECT_EQ(r.sni_offset, findName(h));
  EXPECT_GT(r.sni_offset, 1448u) << "the name lies in the second MSS-sized segment";
  const TlsParseResult first = parse(h, 1448);
  EXPECT_EQ(first.status, TlsParseResult::kNeedMore);
  EXPECT_EQ(first.needed, r.sni_offset - 5);  // the server_name extension's 4-byte header
}

TEST(TlsRealCapture, NoSniWhenTheExtensionIsRemoved) {
  const Bytes h = removeExtension(readData("tls_openssl.bin"), 0);
  EXPECT_EQ(findName(h), std::string::npos);
  EXPECT_EQ(parse(h).status, TlsParseResult::kNoSni);
  // The last extension (key_share, 38 bytes of body) is skipped by its length: the verdict
  // comes as soon as its header is in.
  for (std::size_t len = 0; len < h.size(); ++len) {
    ASSERT_EQ(parse(h, len).status,
              len >= h.size() - 38 ? TlsParseResult::kNoSni : TlsParseResult::kNeedMore)
        << len;
  }
}

TEST(TlsRealCapture, TrailingBytesAfterTheHelloAreIgnored) {
  Bytes h = readData("tls_openssl.bin");
  h.insert(h.end(), {20, 3, 3, 0, 1, 1});  // a ChangeCipherSpec record
  h.insert(h.end(), 50, 0xEE);
  EXPECT_EQ(parse(h).status, TlsParseResult::kFound);
}

// --- hostile input ----------------------------------------------------------------------------

TEST(TlsHostile, NotTls) {
  const std::string http = "GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n";
  EXPECT_EQ(parse(Bytes(http.begin(), http.end())).status, TlsParseResult::kNotTls);
  EXPECT_EQ(parse(Bytes{0x17, 3, 3, 0, 10}).status, TlsParseResult::kNotTls);  // app data
  EXPECT_EQ(parse(Bytes{0x80, 0x2e, 0x01}).status, TlsParseResult::kNotTls);   // SSLv2 hello
  EXPECT_EQ(parse(Bytes{22, 3, 5}).status, TlsParseResult::kNotTls);           // version 3.5
  EXPECT_EQ(parse(Bytes{22, 3, 0}).status, TlsParseResult::kNotTls);           // SSL 3.0
  EXPECT_EQ(parse(Bytes{22, 2}).status, TlsParseResult::kNotTls);
  EXPECT_EQ(parse(Bytes{22, 3, 1, 0, 0}).status, TlsParseResult::kNotTls);       // length 0
  EXPECT_EQ(parse(Bytes{22, 3, 1, 0x40, 1}).status, TlsParseResult::kNotTls);    // > 16384
  EXPECT_EQ(parse(Bytes{22, 3, 1, 0x40, 0}).status, TlsParseResult::kNeedMore);  // = 16384
  EXPECT_EQ(parseTlsClientHello(nullptr, 10).status, TlsParseResult::kNeedMore);
  Bytes server_hello = readData("tls_openssl.bin");
  server_hello[5] = 2;
  EXPECT_EQ(parse(server_hello).status, TlsParseResult::kNotTls);
  EXPECT_EQ(parse(server_hello, 6).status, TlsParseResult::kNotTls);
}

TEST(TlsHostile, LengthsLie) {
  const Bytes real = readData("tls_openssl.bin");
  const Layout l = layout(real);
  {
    Bytes h = real;  // handshake length 100 bytes longer than its contents
    h[8] = static_cast<std::uint8_t>(h[8] + 100);
    putBe16(h, 3, be16(h, 3) + 100);
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    Bytes h = real;  // extensions length one byte too long
    putBe16(h, l.ext_len_at, be16(h, l.ext_len_at) + 1);
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    Bytes h = real;  // SNI extension length overruns the block
    putBe16(h, l.ext_begin + 2, 0xFFF0);
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    Bytes h = real;  // server name list length lies
    putBe16(h, l.ext_begin + 4, be16(h, l.ext_begin + 4) + 1);
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    Bytes h = real;  // host name length lies (longer than the list)
    putBe16(h, l.ext_begin + 7, kName.size() + 1);
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    Bytes h = real;  // record shorter than the handshake, and the next record is junk
    const Bytes two = splitRecords(h, {100});
    Bytes bad = two;
    bad[5 + 100] = 23;  // record 2: application data
    EXPECT_EQ(parse(bad).status, TlsParseResult::kMalformed);
    bad = two;
    putBe16(bad, 5 + 100 + 3, 0);  // record 2: length 0
    EXPECT_EQ(parse(bad).status, TlsParseResult::kMalformed);
    // Cut inside the bad header: still waiting, as the header is not complete.
    EXPECT_EQ(parse(bad, 5 + 100 + 4).status, TlsParseResult::kNeedMore);
  }
  {
    Bytes h = buildHello(sniExtension({{0, kName}}));
    h[6] = 0x02;  // handshake length >= 2^17
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
}

TEST(TlsHostile, BadFixedFields) {
  const Bytes good = buildHello(sniExtension({{0, kName}}));
  ASSERT_EQ(parse(good).status, TlsParseResult::kFound);
  const std::size_t sid_at = 5 + 4 + 2 + 32;
  {
    Bytes h = good;
    h[sid_at] = 33;
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    Bytes h = good;
    putBe16(h, sid_at + 1, 3);  // odd cipher suites length
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
    putBe16(h, sid_at + 1, 0);
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
    putBe16(h, sid_at + 1, 0xFFFE);  // past the handshake's end
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    Bytes h = good;
    h[sid_at + 1 + 2 + 4] = 0;  // no compression methods
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
  {
    // A hello that ends inside the fixed fields.
    Bytes body = {0x03, 0x03};
    body.insert(body.end(), 10, 0);
    Bytes h = {22, 3, 1};
    appendBe16(h, 4 + body.size());
    h.insert(h.end(), {1, 0, 0, static_cast<std::uint8_t>(body.size())});
    h.insert(h.end(), body.begin(), body.end());
    EXPECT_EQ(parse(h).status, TlsParseResult::kMalformed);
  }
}

TEST(TlsHostile, NoExtensionsAtAll) {
  EXPECT_EQ(parse(buildHello({}, false)).status, TlsParseResult::kNoSni);
  EXPECT_EQ(parse(buildHello({})).status, TlsParseResult::kNoSni);  // empty block
}

TEST(TlsHostile, ZeroLengthExtensions) {
  Bytes exts;
  for (std::size_t type : {23, 22, 49, 0x3374, 0xff01}) {
    const Bytes e = extension(type, {});
    exts.insert(exts.end(), e.begin(), e.end());
  }
  const Bytes sni = sniExtension({{0, kName}});
  Bytes all = exts;
  all.insert(all.end(), sni.begin(), sni.end());
  EXPECT_EQ(parse(buildHello(all)).status, TlsParseResult::kFound);
  // An empty server_name extension (legal in a ServerHello only).
  EXPECT_EQ(parse(buildHello(extension(0, {}))).status, TlsParseResult::kMalformed);
  // A server_name with an empty list.
  EXPECT_EQ(parse(buildHello(extension(0, {0, 0}))).status, TlsParseResult::kMalformed);
}

TEST(TlsHostile, Grease) {
  Bytes exts;
  for (std::size_t type : {0x0a0a, 0x1a1a, 0xfafa}) {
    const Bytes e = extension(type, Bytes(type == 0x1a1a ? 1 : 0, 0));
    exts.insert(exts.end(), e.begin(), e.end());
  }
  const Bytes h = insertFirst(readData("tls_curl.bin"), exts);
  const TlsParseResult r = parse(h);
  EXPECT_EQ(r.status, TlsParseResult::kFound);
  EXPECT_EQ(r.sni, kName);
}

TEST(TlsHostile, DuplicateSni) {
  // Two host_name entries in one list.
  EXPECT_EQ(parse(buildHello(sniExtension({{0, "a.test"}, {0, "b.test"}}))).status,
            TlsParseResult::kMalformed);
  // Two server_name extensions, the first without a host_name.
  Bytes exts = sniExtension({{1, "x"}});
  const Bytes second = sniExtension({{0, kName}});
  exts.insert(exts.end(), second.begin(), second.end());
  EXPECT_EQ(parse(buildHello(exts)).status, TlsParseResult::kMalformed);
  // Two server_name extensions, the first with a host_name: decided at the first.
  Bytes first_wins = sniExtension({{0, "a.test"}});
  first_wins.insert(first_wins.end(), second.begin(), second.end());
  const TlsParseResult r = parse(buildHello(first_wins));
  EXPECT_EQ(r.status, TlsParseResult::kFound);
  EXPECT_EQ(r.sni, "a.test");
}

TEST(TlsHostile, OtherNameTypes) {
  const TlsParseResult r = parse(buildHello(sniExtension({{1, "opaque"}, {0, kName}})));
  EXPECT_EQ(r.status, TlsParseResult::kFound);
  EXPECT_EQ(r.sni, kName);
  EXPECT_EQ(parse(buildHello(sniExtension({{1, "opaque"}, {7, ""}}))).status,
            TlsParseResult::kNoSni);
}

TEST(TlsHostile, NamesAreValidated) {
  auto sniOf = [](const std::string& name) { return parse(buildHello(sniExtension({{0, name}}))); };
  EXPECT_EQ(sniOf("WWW.Example.TEST.").sni, kName);
  const std::string l63(63, 'a');
  const std::string n253 = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  EXPECT_EQ(sniOf(n253).sni, n253);
  for (const std::string& bad :
       {n253 + "b", std::string(""), std::string("www.exa mple.test"), std::string("www\0.test", 9),
        std::string("caf\xc3\xa9.test"), std::string("10.0.0.1"), std::string(64, 'a') + ".test",
        std::string("a..test"), std::string("\x1b[2J.test")}) {
    const TlsParseResult r = sniOf(bad);
    EXPECT_EQ(r.status, TlsParseResult::kMalformed) << bad;
    EXPECT_TRUE(r.sni.empty());
  }
}

TEST(TlsHostile, ExtensionCap) {
  Bytes exts;
  for (std::size_t i = 0; i < kTlsMaxExtensions; ++i) {
    const Bytes e = extension(0x7a7a, {});
    exts.insert(exts.end(), e.begin(), e.end());
  }
  const Bytes sni = sniExtension({{0, kName}});
  exts.insert(exts.end(), sni.begin(), sni.end());
  EXPECT_EQ(parse(buildHello(exts)).status, TlsParseResult::kMalformed);
}

TEST(TlsHostile, StatusText) {
  EXPECT_STREQ(toString(TlsParseResult::kFound), "found");
  EXPECT_STREQ(toString(TlsParseResult::kNeedMore), "need more");
  EXPECT_STREQ(toString(TlsParseResult::kNotTls), "not tls");
  EXPECT_STREQ(toString(TlsParseResult::kNoSni), "no sni");
  EXPECT_STREQ(toString(TlsParseResult::kMalformed), "malformed");
}

}  // namespace
}  // namespace ayaflow::inspect
