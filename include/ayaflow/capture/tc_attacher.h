// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <memory>

#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/bpf/tc_attachment.h"
#include "ayaflow/capture/interface_set.h"

namespace ayaflow::capture {

/// The real Attacher: the classifier's ingress and egress programs on an interface's TC
/// hooks (bpf::TcAttachment), the variant matching its link layer (Ethernet or IP-only,
/// bpf::linkLayerOf). check() refuses link types whose packets neither variant can parse.
/// Borrows the program, which must outlive every attachment. Control-plane thread only.
class TcAttacher final : public Attacher {
 public:
  TcAttacher(bpf::BpfProgram& program, bpf::HookMode mode) : program_(program), mode_(mode) {}
  void check(const Link& link) override;
  std::unique_ptr<Attachment> attach(const Link& link) override;
  void setRoles(const std::map<int, std::uint8_t>& roles) override { program_.setRoles(roles); }

 private:
  bpf::BpfProgram& program_;
  const bpf::HookMode mode_;
};

}  // namespace ayaflow::capture
