// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/tc_attacher.h"

#include "ayaflow/bpf/link_layer.h"
#include "ayaflow/common/logging.h"

namespace ayaflow::capture {
namespace {

class TcInterfaceAttachment final : public Attachment {
 public:
  TcInterfaceAttachment(const std::string& name, int ingress_fd, int egress_fd, bpf::HookMode mode)
      : attachment_(name, ingress_fd, egress_fd, mode) {}

 private:
  bpf::TcAttachment attachment_;  // detaches on destruction
};

}  // namespace

void TcAttacher::check(const Link& link) { bpf::linkLayerOf(link.name); }

std::unique_ptr<Attachment> TcAttacher::attach(const Link& link) {
  const bpf::LinkLayer layer = bpf::linkLayerOf(link.name);
  if (layer == bpf::LinkLayer::kIpOnly) {
    logger("capture")->info(
        "{} has no link-layer header (tun, WireGuard, ipip, PPP): its packets are parsed from "
        "the IP header",
        link.name);
  }
  return std::make_unique<TcInterfaceAttachment>(link.name, program_.ingressProgramFd(layer),
                                                 program_.egressProgramFd(layer), mode_);
}

}  // namespace ayaflow::capture
