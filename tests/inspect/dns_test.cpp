// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/dns.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_data.h"

namespace ayaflow::inspect {
namespace {

using testing::Bytes;
using ::testing::ElementsAre;
using testing::putBe16;
using testing::readData;

flow::IpAddress ip(const char* text) { return *flow::IpAddress::parse(text); }

std::optional<DnsMessage> parse(const Bytes& b) { return parseDnsMessage(b.data(), b.size()); }

// --- builder for hand-made messages ---------------------------------------------------------

void appendName(Bytes& b, const std::string& dotted) {
  std::size_t start = 0;
  while (start < dotted.size()) {
    std::size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    b.push_back(static_cast<std::uint8_t>(dot - start));
    b.insert(b.end(), dotted.begin() + start, dotted.begin() + dot);
    start = dot + 1;
  }
  b.push_back(0);
}

void appendPtr(Bytes& b, std::size_t offset) {
  b.push_back(static_cast<std::uint8_t>(0xC0 | (offset >> 8)));
  b.push_back(static_cast<std::uint8_t>(offset));
}

void append16(Bytes& b, std::size_t v) { testing::appendBe16(b, v); }

void append32(Bytes& b, std::uint32_t v) {
  append16(b, v >> 16);
  append16(b, v & 0xFFFF);
}

/// Header: id 0x1234, response (QR, RD, RA) unless query; counts as given.
Bytes header(std::size_t qd, std::size_t an, bool response = true, std::uint8_t rcode = 0) {
  Bytes b;
  append16(b, 0x1234);
  append16(b, (response ? 0x8180 : 0x0100) | rcode);
  append16(b, qd);
  append16(b, an);
  append16(b, 0);
  append16(b, 0);
  return b;
}

/// Header + question "name" IN A; the question name sits at offset 12.
Bytes withQuestion(const std::string& name, std::size_t an, std::uint16_t qtype = 1) {
  Bytes b = header(1, an);
  appendName(b, name);
  append16(b, qtype);
  append16(b, 1);
  return b;
}

/// Appends a record whose owner is a pointer to `owner_at`.
void appendA(Bytes& b, std::size_t owner_at, std::uint32_t v4, std::uint32_t ttl = 60) {
  appendPtr(b, owner_at);
  append16(b, 1);
  append16(b, 1);
  append32(b, ttl);
  append16(b, 4);
  append32(b, v4);
}

/// Appends CNAME owner(ptr) -> target (uncompressed); returns the target's offset.
std::size_t appendCname(Bytes& b, std::size_t owner_at, const std::string& target) {
  appendPtr(b, owner_at);
  append16(b, 5);
  append16(b, 1);
  append32(b, 60);
  Bytes rdata;
  appendName(rdata, target);
  append16(b, rdata.size());
  const std::size_t at = b.size();
  b.insert(b.end(), rdata.begin(), rdata.end());
  return at;
}

// --- real captures (data/record.sh: dig against dnsmasq) -----------------------------------

TEST(DnsRealCapture, QueryA) {
  const auto m = parse(readData("dns_a.query.bin"));
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->is_response);
  EXPECT_EQ(m->opcode, 0);
  EXPECT_EQ(m->qdcount, 1);
  EXPECT_EQ(m->ancount, 0);
  EXPECT_EQ(m->qname, "www.example.test");
  EXPECT_EQ(m->qtype, 1);
  EXPECT_EQ(m->qclass, 1);
  EXPECT_TRUE(m->addresses.empty());
  EXPECT_TRUE(m->aliases.empty());
}

TEST(DnsRealCapture, ResponseA) {
  const auto q = parse(readData("dns_a.query.bin"));
  const auto m = parse(readData("dns_a.response.bin"));
  ASSERT_TRUE(q && m);
  EXPECT_EQ(m->id, q->id);
  EXPECT_TRUE(m->is_response);
  EXPECT_EQ(m->rcode, 0);
  EXPECT_FALSE(m->truncated);
  EXPECT_EQ(m->qname, "www.example.test");
  EXPECT_EQ(m->ancount, 1);
  EXPECT_TRUE(m->answers_complete);
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].address, ip("10.215.0.7"));
  EXPECT_EQ(m->addresses[0].name, "www.example.test");
  EXPECT_EQ(m->addresses[0].owner, "www.example.test");
  EXPECT_EQ(m->addresses[0].ttl, 300u);
}

TEST(DnsRealCapture, ResponseAaaa) {
  const auto m = parse(readData("dns_aaaa.response.bin"));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->qtype, 28);
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].address, ip("fd00:215::7"));
  EXPECT_EQ(m->addresses[0].name, "www.example.test");
}

TEST(DnsRealCapture, ResponseCnameChain) {
  // chain.example.test CNAME alias.example.test CNAME www.example.test A 10.215.0.7,
  // the CNAME targets compressed against earlier names.
  const auto m = parse(readData("dns_cname.response.bin"));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->qname, "chain.example.test");
  EXPECT_EQ(m->ancount, 3);
  EXPECT_THAT(m->aliases, ElementsAre("alias.example.test", "www.example.test"));
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].address, ip("10.215.0.7"));
  EXPECT_EQ(m->addresses[0].name, "chain.example.test");
  EXPECT_EQ(m->addresses[0].owner, "www.example.test");
  EXPECT_TRUE(m->answers_complete);
}

TEST(DnsRealCapture, Nxdomain) {
  const auto m = parse(readData("dns_nxdomain.response.bin"));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->qname, "missing.example.test");
  EXPECT_EQ(m->rcode, 3);
  EXPECT_TRUE(m->addresses.empty());
}

TEST(DnsRealCapture, MixedCaseIsLowered) {
  const auto q = parse(readData("dns_mixed_case.query.bin"));
  const auto m = parse(readData("dns_mixed_case.response.bin"));
  ASSERT_TRUE(q && m);
  EXPECT_EQ(q->qname, "www.example.test");
  EXPECT_EQ(m->qname, "www.example.test");
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].name, "www.example.test");
}

// Every prefix of every capture: nothing until the question is complete, then the header
// and question with a partial answer section, and the full result only at full length.
TEST(DnsRealCapture, TruncatedAtEveryLength) {
  for (const char* file :
       {"dns_a.query.bin", "dns_a.response.bin", "dns_aaaa.response.bin", "dns_cname.response.bin",
        "dns_nxdomain.response.bin", "dns_mixed_case.response.bin"}) {
    SCOPED_TRACE(file);
    const Bytes full = readData(file);
    const auto whole = parse(full);
    ASSERT_TRUE(whole);
    const std::size_t question_end = 12 + whole->qname.size() + 2 + 4;
    for (std::size_t len = 0; len < full.size(); ++len) {
      const Bytes cut(full.begin(), full.begin() + len);
      const auto m = parse(cut);
      if (len < question_end) {
        EXPECT_FALSE(m) << len;
        continue;
      }
      ASSERT_TRUE(m) << len;
      EXPECT_EQ(m->qname, whole->qname);
      EXPECT_LE(m->addresses.size(), whole->addresses.size());
      if (whole->ancount > 0 && whole->is_response) {
        // Cut inside the answers: known to be incomplete.
        const bool all_answers =
            m->addresses.size() == whole->addresses.size() && m->aliases == whole->aliases;
        EXPECT_TRUE(!m->answers_complete || all_answers) << len;
      }
    }
  }
}

// --- hostile input ----------------------------------------------------------------------------

TEST(DnsHostile, TooShortOrNull) {
  EXPECT_FALSE(parseDnsMessage(nullptr, 100));
  const Bytes h = header(1, 0);
  EXPECT_FALSE(parse(h));  // header only: the question is missing
}

TEST(DnsHostile, QuestionCounts) {
  Bytes b = withQuestion("a.test", 0);
  putBe16(b, 4, 0);
  EXPECT_FALSE(parse(b)) << "qdcount 0";
  putBe16(b, 4, kDnsMaxQuestions + 1);
  EXPECT_FALSE(parse(b)) << "qdcount above the cap";
  putBe16(b, 4, 2);
  EXPECT_FALSE(parse(b)) << "qdcount 2, one question present";
  appendName(b, "b.test");
  append16(b, 1);
  append16(b, 1);
  const auto m = parse(b);
  ASSERT_TRUE(m) << "two real questions";
  EXPECT_EQ(m->qname, "a.test");
}

TEST(DnsHostile, PointerToItself) {
  Bytes b = header(1, 0);
  appendPtr(b, 12);  // the question name points at itself
  append16(b, 1);
  append16(b, 1);
  EXPECT_FALSE(parse(b));
}

TEST(DnsHostile, ForwardPointer) {
  Bytes b = header(1, 0);
  appendPtr(b, 18);  // points forward, at a valid name
  append16(b, 1);
  append16(b, 1);
  appendName(b, "a.test");
  EXPECT_FALSE(parse(b));
}

TEST(DnsHostile, PointerIntoCurrentName) {
  // "a" then a pointer back to offset 12, the start of the same name: backwards, yet a loop.
  Bytes b = header(1, 0);
  b.push_back(1);
  b.push_back('a');
  appendPtr(b, 12);
  append16(b, 1);
  append16(b, 1);
  EXPECT_FALSE(parse(b));
}

TEST(DnsHostile, ForwardPointerEndsAnswerSection) {
  // Two owners pointing at each other need one forward pointer: it ends the section.
  Bytes b = withQuestion("a.test", 2);
  const std::size_t x = b.size();
  appendPtr(b, x + 2);  // forward: rejected
  append16(b, 1);
  append16(b, 1);
  append32(b, 1);
  append16(b, 4);
  append32(b, 0x0a000001);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->answers_complete);
  EXPECT_TRUE(m->addresses.empty());
}

TEST(DnsHostile, DeepPointerChainIsCapped) {
  // Question "a.test" at 12, then a long run of pointers each pointing at the previous one:
  // valid backwards jumps, but more than kDnsMaxPointerJumps of them.
  Bytes b = withQuestion("a.test", 1);
  std::size_t prev = 12;
  for (std::size_t i = 0; i < kDnsMaxPointerJumps + 1; ++i) {
    const std::size_t at = b.size();
    appendPtr(b, prev);
    prev = at;
  }
  appendA(b, prev, 0x0a000001);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->answers_complete);
  EXPECT_TRUE(m->addresses.empty());
}

TEST(DnsHostile, LabelTooLong) {
  Bytes b = header(1, 0);
  b.push_back(64);  // 0x40: an extended label type, not a length
  b.insert(b.end(), 64, 'a');
  b.push_back(0);
  append16(b, 1);
  append16(b, 1);
  EXPECT_FALSE(parse(b));
  Bytes ok = withQuestion(std::string(63, 'a') + ".test", 0);
  const auto m = parse(ok);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->qname, std::string(63, 'a') + ".test");
}

TEST(DnsHostile, NameTooLong) {
  const std::string l63(63, 'a');
  const std::string n253 = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  const auto m = parse(withQuestion(n253, 0));  // 255 wire bytes: the limit
  ASSERT_TRUE(m);
  EXPECT_EQ(m->qname, n253);
  EXPECT_FALSE(parse(withQuestion(n253 + "b", 0)));         // 256 wire bytes
  EXPECT_FALSE(parse(withQuestion(n253 + ".c.d.e.f", 0)));  // labels keep coming
}

TEST(DnsHostile, NameTooLongThroughPointers) {
  // Each segment is short, but following pointers makes the name exceed 255 bytes.
  const std::string l63(63, 'a');
  Bytes b = withQuestion(l63 + "." + l63 + "." + l63, 1);  // 193 wire bytes at 12
  b.push_back(63);
  b.insert(b.end(), 63, 'c');
  appendPtr(b, 12);  // 64 + 193 = 257 wire bytes
  append16(b, 1);
  append16(b, 1);
  append32(b, 1);
  append16(b, 4);
  append32(b, 1);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->answers_complete);
}

TEST(DnsHostile, InvalidCharactersInQuestion) {
  for (std::string bad : {std::string("a b.test"), std::string("a\0b.test", 8),
                          std::string("a\xff.test"), std::string("a\x1b[31m.test")}) {
    EXPECT_FALSE(parse(withQuestion(bad, 0))) << bad;
  }
  EXPECT_FALSE(parse(withQuestion("10.0.0.1", 0)));  // address literal as a name
  Bytes root = header(1, 0);
  root.push_back(0);
  append16(root, 2);
  append16(root, 1);
  EXPECT_FALSE(parse(root)) << "root question";
}

TEST(DnsHostile, InvalidOwnerSkipsRecordOnly) {
  Bytes b = withQuestion("a.test", 2);
  appendName(b, "b\x01.test");  // owner with a control byte
  append16(b, 1);
  append16(b, 1);
  append32(b, 1);
  append16(b, 4);
  append32(b, 0x0a000009);
  appendA(b, 12, 0x0a000001);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->answers_complete);
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].address, ip("10.0.0.1"));
}

TEST(DnsHostile, AncountLies) {
  Bytes b = withQuestion("a.test", 50);
  appendA(b, 12, 0x0a000001);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->answers_complete);
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].address, ip("10.0.0.1"));
}

TEST(DnsHostile, AnswerCapIsEnforced) {
  Bytes b = withQuestion("a.test", kDnsMaxAnswers + 10);
  for (std::size_t i = 0; i < kDnsMaxAnswers + 10; ++i) {
    appendA(b, 12, 0x0a000000 + static_cast<std::uint32_t>(i));
  }
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->answers_complete);
  EXPECT_EQ(m->addresses.size(), kDnsMaxAnswers);
}

TEST(DnsHostile, RdlengthLies) {
  Bytes b = withQuestion("a.test", 1);
  appendA(b, 12, 0x0a000001);
  putBe16(b, b.size() - 6, 200);  // rdlength 200, 4 bytes present
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->answers_complete);
  EXPECT_TRUE(m->addresses.empty());
}

TEST(DnsHostile, WrongSizesAndClassesAreSkipped) {
  Bytes b = withQuestion("a.test", 4);
  // A with 5 bytes of RDATA.
  appendPtr(b, 12);
  append16(b, 1);
  append16(b, 1);
  append32(b, 1);
  append16(b, 5);
  append32(b, 0x0a000009);
  b.push_back(0);
  // AAAA with 4 bytes.
  appendPtr(b, 12);
  append16(b, 28);
  append16(b, 1);
  append32(b, 1);
  append16(b, 4);
  append32(b, 0x0a000008);
  // A in class CH.
  appendPtr(b, 12);
  append16(b, 1);
  append16(b, 3);
  append32(b, 1);
  append16(b, 4);
  append32(b, 0x0a000007);
  appendA(b, 12, 0x0a000001);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->answers_complete);
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].address, ip("10.0.0.1"));
}

TEST(DnsHostile, UnrelatedAnswersAreIgnored) {
  // Answer for a name nobody asked about (a poisoning attempt) is not reported.
  Bytes b = withQuestion("a.test", 2);
  appendName(b, "bank.test");
  append16(b, 1);
  append16(b, 1);
  append32(b, 1);
  append16(b, 4);
  append32(b, 0x0a000063);
  appendA(b, 12, 0x0a000001);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_EQ(m->addresses[0].address, ip("10.0.0.1"));
}

TEST(DnsHostile, CnameAnyOrderLoopsAndCap) {
  {
    // A record first, then the CNAMEs in reverse order: still resolved.
    Bytes b = withQuestion("a.test", 3);
    // Build: A for c.test, CNAME b.test -> c.test, CNAME a.test -> b.test.
    const std::size_t c_at = b.size();
    appendName(b, "c.test");
    append16(b, 1);
    append16(b, 1);
    append32(b, 1);
    append16(b, 4);
    append32(b, 0x0a000003);
    appendName(b, "b.test");
    append16(b, 5);
    append16(b, 1);
    append32(b, 1);
    append16(b, 2);
    appendPtr(b, c_at);
    appendCname(b, 12, "b.test");
    const auto m = parse(b);
    ASSERT_TRUE(m);
    EXPECT_THAT(m->aliases, ElementsAre("b.test", "c.test"));
    ASSERT_EQ(m->addresses.size(), 1u);
    EXPECT_EQ(m->addresses[0].name, "a.test");
    EXPECT_EQ(m->addresses[0].owner, "c.test");
  }
  {
    // a -> b -> a: the loop stops the chain.
    Bytes b = withQuestion("a.test", 2);
    const std::size_t target = appendCname(b, 12, "b.test");
    appendCname(b, target, "a.test");
    const auto m = parse(b);
    ASSERT_TRUE(m);
    EXPECT_THAT(m->aliases, ElementsAre("b.test"));
  }
  {
    // A chain longer than kDnsMaxCnameChain: followed up to the cap only.
    Bytes b = withQuestion("n0.test", kDnsMaxCnameChain + 2);
    std::size_t owner = 12;
    for (std::size_t i = 1; i <= kDnsMaxCnameChain + 1; ++i) {
      owner = appendCname(b, owner, "n" + std::to_string(i) + ".test");
    }
    appendA(b, owner, 0x0a000001);
    const auto m = parse(b);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->aliases.size(), kDnsMaxCnameChain);
    EXPECT_TRUE(m->addresses.empty()) << "the A record's owner lies past the followed chain";
  }
}

TEST(DnsHostile, CnameRdataMustBeExact) {
  Bytes b = withQuestion("a.test", 2);
  appendPtr(b, 12);
  append16(b, 5);
  append16(b, 1);
  append32(b, 1);
  Bytes rdata;
  appendName(rdata, "b.test");
  rdata.push_back(0xAA);  // a stray byte after the name
  append16(b, rdata.size());
  const std::size_t target = b.size();
  b.insert(b.end(), rdata.begin(), rdata.end());
  appendA(b, target, 0x0a000002);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->aliases.empty());
  EXPECT_TRUE(m->addresses.empty());
  EXPECT_TRUE(m->answers_complete);
}

TEST(DnsHostile, OpcodeOtherThanQueryHasNoAnswers) {
  Bytes b = withQuestion("a.test", 1);
  appendA(b, 12, 0x0a000001);
  b[2] = static_cast<std::uint8_t>(b[2] | (5 << 3));  // opcode UPDATE
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->opcode, 5);
  EXPECT_TRUE(m->addresses.empty());
}

TEST(DnsHostile, QueryAnswersAreNotRead) {
  Bytes b = withQuestion("a.test", 1);
  b[2] = 0x01;  // QR clear: a query carrying an "answer"
  appendA(b, 12, 0x0a000001);
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->is_response);
  EXPECT_TRUE(m->addresses.empty());
}

TEST(DnsHostile, TruncatedFlagAndRcode) {
  Bytes b = withQuestion("a.test", 0);
  b[2] |= 0x02;                                         // TC
  b[3] = static_cast<std::uint8_t>((b[3] & 0xF0) | 2);  // SERVFAIL
  const auto m = parse(b);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->truncated);
  EXPECT_EQ(m->rcode, 2);
}

TEST(DnsTcp, LengthPrefix) {
  const Bytes msg = readData("dns_a.response.bin");
  Bytes framed;
  testing::appendBe16(framed, msg.size());
  framed.insert(framed.end(), msg.begin(), msg.end());
  framed.push_back(0xEE);  // the next message's first byte: ignored
  const auto m = parseDnsTcpMessage(framed.data(), framed.size());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->qname, "www.example.test");
  ASSERT_EQ(m->addresses.size(), 1u);
  EXPECT_TRUE(m->answers_complete);
  EXPECT_FALSE(parseDnsTcpMessage(framed.data(), 1));
  // Prefix claims fewer bytes than the message (cut inside the A record's address, before
  // the 11-byte EDNS OPT record): parsed as cut short.
  putBe16(framed, 0, msg.size() - 11 - 2);
  const auto cut = parseDnsTcpMessage(framed.data(), framed.size());
  ASSERT_TRUE(cut);
  EXPECT_FALSE(cut->answers_complete);
}

}  // namespace
}  // namespace ayaflow::inspect
