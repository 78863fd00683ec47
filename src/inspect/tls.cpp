// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/tls.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "ayaflow/inspect/host_name.h"

namespace ayaflow::inspect {
namespace {

constexpr std::size_t kRecordHeader = 5;
constexpr std::size_t kMaxRecordLength = 16384;  // TLSPlaintext.length <= 2^14
constexpr std::uint8_t kContentHandshake = 22;
constexpr std::uint8_t kClientHello = 1;
constexpr std::uint16_t kExtServerName = 0;
constexpr std::uint8_t kNameTypeHostName = 0;

using Status = TlsParseResult::Status;

std::size_t be16(const std::uint8_t* p) noexcept { return (std::size_t{p[0]} << 8) | p[1]; }

/// Checks the first n (<= 5) bytes of a record header.
bool headerPrefixOk(const std::uint8_t* h, std::size_t n) noexcept {
  if (n > 0 && h[0] != kContentHandshake) return false;
  if (n > 1 && h[1] != 3) return false;
  if (n > 2 && (h[2] < 1 || h[2] > 4)) return false;
  if (n > 4) {
    const std::size_t rlen = be16(h + 3);
    if (rlen == 0 || rlen > kMaxRecordLength) return false;
  }
  return true;
}

/// The handshake bytes carried by the leading records, made contiguous, plus where each
/// record sits in the stream so handshake offsets map back to stream offsets.
class Handshake {
 public:
  /// Returns false if the very first record header shows this is not TLS.
  bool gather(const std::uint8_t* data, std::size_t len) {
    std::size_t pos = 0;
    std::size_t hs_total = 0;  // 0 until the 4-byte handshake header is in
    while (pos < len) {
      const std::size_t have = std::min(len - pos, kRecordHeader);
      if (!headerPrefixOk(data + pos, have)) {
        if (nrec_ == 0) return false;
        tail_ = Status::kMalformed;
        break;
      }
      if (have < kRecordHeader) break;
      if (nrec_ == kTlsMaxRecords) {
        tail_ = Status::kMalformed;
        break;
      }
      const std::size_t rlen = be16(data + pos + 3);
      const std::size_t take = std::min(rlen, len - pos - kRecordHeader);
      records_[nrec_++] = {known_, rlen, pos + kRecordHeader};
      append(data + pos + kRecordHeader, take);
      known_ += rlen;
      pos += kRecordHeader + take;
      if (take < rlen) break;
      if (hs_total == 0 && avail_ >= 4) {
        hs_total = 4 + ((std::size_t{bytes_[1]} << 16) | (std::size_t{bytes_[2]} << 8) | bytes_[3]);
      }
      if (hs_total != 0 && known_ >= hs_total) break;  // the hello is complete
    }
    return true;
  }

  const std::uint8_t* bytes() const noexcept { return bytes_; }
  std::size_t avail() const noexcept { return avail_; }

  /// Why bytes past avail() are missing: kNeedMore (not yet received) or kMalformed (the
  /// record header that should carry them is broken).
  Status tail(std::size_t end) const noexcept { return end > known_ ? tail_ : Status::kNeedMore; }

  /// Stream length needed to hold handshake bytes [0, end): exact inside the records seen,
  /// else one more record header is assumed.
  std::size_t streamEnd(std::size_t end) const noexcept {
    for (std::size_t i = 0; i < nrec_; ++i) {
      const Record& r = records_[i];
      if (end <= r.hs_begin + r.length) return r.stream_begin + (end - r.hs_begin);
    }
    const std::size_t last_end =
        nrec_ == 0 ? 0 : records_[nrec_ - 1].stream_begin + records_[nrec_ - 1].length;
    return last_end + kRecordHeader + (end - known_);
  }

  /// Stream offset of handshake byte `at` (which must be available).
  std::size_t streamOffset(std::size_t at) const noexcept { return streamEnd(at + 1) - 1; }

 private:
  struct Record {
    std::size_t hs_begin;      // handshake offset of the record's first payload byte
    std::size_t length;        // declared payload length
    std::size_t stream_begin;  // stream offset of the record's first payload byte
  };

  void append(const std::uint8_t* p, std::size_t n) {
    if (n == 0) return;
    if (nrec_ == 1) {  // a single record: parse in place, no copy
      bytes_ = p;
      avail_ = n;
      return;
    }
    if (copy_.empty()) copy_.assign(bytes_, bytes_ + avail_);
    copy_.append(p, p + n);
    bytes_ = reinterpret_cast<const std::uint8_t*>(copy_.data());
    avail_ = copy_.size();
  }

  std::array<Record, kTlsMaxRecords> records_{};
  std::size_t nrec_ = 0;
  std::size_t known_ = 0;  // handshake bytes declared by the records seen
  const std::uint8_t* bytes_ = nullptr;
  std::size_t avail_ = 0;
  std::basic_string<std::uint8_t> copy_;
  Status tail_ = Status::kNeedMore;
};

/// Walks the ClientHello in handshake space. Each step checks a field against its
/// enclosing structure (kMalformed if it overflows) before asking for its bytes (kNeedMore
/// if they are not there yet).
class HelloParser {
 public:
  explicit HelloParser(const Handshake& hs) : hs_(hs), d_(hs.bytes()) {}

  TlsParseResult run() {
    if (hs_.avail() >= 1 && d_[0] != kClientHello) return verdict(Status::kNotTls);
    if (!need(0, 4)) return result_;
    const std::size_t body = (std::size_t{d_[1]} << 16) | (std::size_t{d_[2]} << 8) | d_[3];
    if (body > kTlsMaxHandshakeLength) return verdict(Status::kMalformed);
    end_ = 4 + body;

    std::size_t p = 4 + 2 + 32;  // legacy_version, random: skipped, never needed
    if (!inside(p + 1, end_) || !need(p, 1)) return result_;
    const std::size_t sid = d_[p];
    if (sid > 32) return verdict(Status::kMalformed);
    p += 1 + sid;
    if (!inside(p + 2, end_) || !need(p, 2)) return result_;
    const std::size_t suites = be16(d_ + p);
    if (suites < 2 || suites % 2 != 0) return verdict(Status::kMalformed);
    p += 2 + suites;
    if (!inside(p + 1, end_) || !need(p, 1)) return result_;
    const std::size_t methods = d_[p];
    if (methods < 1) return verdict(Status::kMalformed);
    p += 1 + methods;
    if (!inside(p, end_)) return result_;
    if (p == end_) return verdict(Status::kNoSni);  // no extensions at all (TLS 1.0 style)
    if (!inside(p + 2, end_) || !need(p, 2)) return result_;
    const std::size_t ext_end = p + 2 + be16(d_ + p);
    if (ext_end != end_) return verdict(Status::kMalformed);
    p += 2;

    bool server_name_seen = false;
    for (std::size_t n = 0; n < kTlsMaxExtensions; ++n) {
      if (p == ext_end) return verdict(Status::kNoSni);
      if (!inside(p + 4, ext_end) || !need(p, 4)) return result_;
      const std::size_t type = be16(d_ + p);
      const std::size_t elen = be16(d_ + p + 2);
      const std::size_t next = p + 4 + elen;
      if (!inside(next, ext_end)) return result_;
      if (type == kExtServerName) {
        if (server_name_seen) return verdict(Status::kMalformed);
        server_name_seen = true;
        if (!need(p + 4, elen)) return result_;
        if (serverName(p + 4, next)) return result_;
      }
      p = next;  // other extensions are skipped by length: their bytes are never needed
    }
    return verdict(Status::kMalformed);  // more than kTlsMaxExtensions extensions
  }

 private:
  TlsParseResult verdict(Status s) {
    result_.status = s;
    return result_;
  }

  /// False (verdict kMalformed) if a structure would end past its parent's end.
  bool inside(std::size_t end, std::size_t parent_end) {
    if (end <= parent_end) return true;
    result_.status = Status::kMalformed;
    return false;
  }

  /// False (verdict kNeedMore or kMalformed) unless handshake bytes [at, at + n) are there.
  bool need(std::size_t at, std::size_t n) {
    if (at + n <= hs_.avail()) return true;
    result_.status = hs_.tail(at + n);
    if (result_.status == Status::kNeedMore) result_.needed = hs_.streamEnd(at + n);
    return false;
  }

  /// ServerNameList in [p, end), all available. True when a verdict is set.
  bool serverName(std::size_t p, std::size_t end) {
    if (end - p < 2 || p + 2 + be16(d_ + p) != end || end - p == 2) {
      verdict(Status::kMalformed);  // empty list or a list length that lies
      return true;
    }
    p += 2;
    std::size_t host = 0;
    std::size_t host_len = 0;
    bool have_host = false;
    while (p < end) {  // each entry takes at least 3 bytes
      if (end - p < 3 || be16(d_ + p + 1) > end - p - 3) {
        verdict(Status::kMalformed);
        return true;
      }
      const std::size_t nlen = be16(d_ + p + 1);
      if (d_[p] == kNameTypeHostName) {
        if (have_host) {  // RFC 6066: at most one name per type
          verdict(Status::kMalformed);
          return true;
        }
        have_host = true;
        host = p + 3;
        host_len = nlen;
      }
      p += 3 + nlen;
    }
    if (!have_host) return false;  // only other name types: keep walking
    const std::string_view name(reinterpret_cast<const char*>(d_ + host), host_len);
    if (!normalizeHostName(name, result_.sni)) {
      result_.sni.clear();
      verdict(Status::kMalformed);
      return true;
    }
    result_.sni_offset = hs_.streamOffset(host);
    verdict(Status::kFound);
    return true;
  }

  const Handshake& hs_;
  const std::uint8_t* d_;
  std::size_t end_ = 0;
  TlsParseResult result_;
};

}  // namespace

TlsParseResult parseTlsClientHello(const std::uint8_t* data, std::size_t len) {
  TlsParseResult result;
  if (data == nullptr) len = 0;
  Handshake hs;
  if (!hs.gather(data, len)) {
    result.status = Status::kNotTls;
    return result;
  }
  return HelloParser(hs).run();
}

const char* toString(TlsParseResult::Status status) noexcept {
  switch (status) {
    case Status::kFound:
      return "found";
    case Status::kNeedMore:
      return "need more";
    case Status::kNotTls:
      return "not tls";
    case Status::kNoSni:
      return "no sni";
    case Status::kMalformed:
      return "malformed";
  }
  return "unknown";
}

}  // namespace ayaflow::inspect
