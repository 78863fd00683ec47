// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/host_name.h"

#include <gtest/gtest.h>

#include <string>

namespace ayaflow::inspect {
namespace {

std::string norm(std::string_view in) {
  std::string out;
  return normalizeHostName(in, out) ? out : std::string("<invalid>");
}

TEST(HostName, AcceptsAndLowerCases) {
  EXPECT_EQ(norm("www.example.test"), "www.example.test");
  EXPECT_EQ(norm("WwW.ExAmPlE.TeSt"), "www.example.test");
  EXPECT_EQ(norm("www.example.test."), "www.example.test");  // one trailing dot dropped
  EXPECT_EQ(norm("_dmarc.example.test"), "_dmarc.example.test");
  EXPECT_EQ(norm("xn--bcher-kva.example"), "xn--bcher-kva.example");
  EXPECT_EQ(norm("-odd-.example"), "-odd-.example");  // hyphen placement is not policed
  EXPECT_EQ(norm("localhost"), "localhost");
  EXPECT_EQ(norm("4.3.2.1.in-addr.arpa"), "4.3.2.1.in-addr.arpa");
}

TEST(HostName, RejectsEmptyAndBadDots) {
  for (const char* bad : {"", ".", "..", "a..b", ".a", "a.b..", "www.example.test.."}) {
    EXPECT_EQ(norm(bad), "<invalid>") << '"' << bad << '"';
  }
}

TEST(HostName, RejectsBadBytes) {
  for (std::string bad : {"a b.test", "a*.test", "a/b.test", "a\"b.test", "a\\b.test", "a:b.test",
                          "caf\xc3\xa9.test", "a\x7f.test", "a\tb.test", "a\nb.test"}) {
    EXPECT_EQ(norm(bad), "<invalid>") << bad;
  }
  EXPECT_EQ(norm(std::string("a\0b.test", 8)), "<invalid>");
}

TEST(HostName, RejectsAddressLiterals) {
  EXPECT_EQ(norm("10.0.0.1"), "<invalid>");
  EXPECT_EQ(norm("10.0.0.1."), "<invalid>");
  EXPECT_EQ(norm("123"), "<invalid>");
  EXPECT_EQ(norm("10.0.0.1a"), "10.0.0.1a");
}

TEST(HostName, LabelAndNameLimits) {
  const std::string l63(63, 'a');
  const std::string l64(64, 'a');
  EXPECT_EQ(norm(l63 + ".test"), l63 + ".test");
  EXPECT_EQ(norm(l64 + ".test"), "<invalid>");
  // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters: the longest name.
  const std::string n253 = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  ASSERT_EQ(n253.size(), 253u);
  EXPECT_EQ(norm(n253), n253);
  EXPECT_EQ(norm(n253 + "."), n253);
  EXPECT_EQ(norm(n253 + "b"), "<invalid>");
}

}  // namespace
}  // namespace ayaflow::inspect
