// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/host_name.h"

namespace ayaflow::inspect {

bool normalizeHostName(std::string_view in, std::string& out) {
  if (!in.empty() && in.back() == '.') in.remove_suffix(1);
  if (in.empty() || in.size() > kMaxHostNameLength) return false;
  out.clear();
  out.reserve(in.size());
  std::size_t label_len = 0;
  bool label_all_digits = true;
  for (const char ch : in) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '.') {
      if (label_len == 0) return false;  // empty label: leading dot or ".."
      label_len = 0;
      label_all_digits = true;
      out.push_back('.');
      continue;
    }
    if (!isHostNameByte(c) || ++label_len > kMaxLabelLength) return false;
    label_all_digits = label_all_digits && c >= '0' && c <= '9';
    out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
  }
  // label_len == 0 here only if the input ended with "..": the single trailing dot is gone.
  return label_len != 0 && !label_all_digits;
}

}  // namespace ayaflow::inspect
