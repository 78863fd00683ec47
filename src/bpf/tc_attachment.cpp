// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/bpf/tc_attachment.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

namespace ayaflow::bpf {
namespace {

// Debian 12's UAPI headers (6.1) predate TCX (6.6): the ABI values are fixed.
constexpr int kBpfTcxIngress = 46;              // BPF_TCX_INGRESS
constexpr int kBpfTcxEgress = 47;               // BPF_TCX_EGRESS
constexpr std::uint32_t kBpfFBefore = 1U << 3;  // BPF_F_BEFORE

// Our programs by the name the kernel keeps (at most BPF_OBJ_NAME_LEN - 1 = 15 characters;
// longer names are cut), and the hook each runs on. Every current name fits, so each is
// matched exactly; a unit test checks every program of the object against this table.
// The last three are what the kernel kept of earlier versions' programs (ayaflow_ingress,
// ayaflow_egress; ayaflow_ingress_ip and ayaflow_egress_ip, cut), so a filter such a
// version left behind is still recognised and replaced.
struct OurProgram {
  std::string_view name;
  bool ingress;
};
constexpr OurProgram kOurPrograms[] = {
    {"ayaflow_in", true},       {"ayaflow_in_ip", true},   {"ayaflow_eg", false},
    {"ayaflow_eg_ip", false},   {"ayaflow_ingress", true}, {"ayaflow_egress", false},
    {"ayaflow_egress_", false},
};

int tcxAttachType(bool ingress) { return ingress ? kBpfTcxIngress : kBpfTcxEgress; }

// A program's name; nullopt if it cannot be read (BPF_PROG_GET_FD_BY_ID
// needs CAP_SYS_ADMIN, which the agent need not have).
std::optional<std::string> progName(std::uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) {
    return std::nullopt;
  }
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  std::optional<std::string> name;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
    name = info.name;
  }
  close(fd);
  return name;
}

std::uint32_t progIdOfFd(int fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    return 0;
  }
  return info.id;
}

// BPF_LINK_CREATE for TCX with BPF_F_BEFORE and no anchor: first in the chain.
// libbpf 1.1 has no TCX support, so the attr is filled here. The TCX fields
// (relative_fd at 16, expected_revision at 24) sit in link_create's union.
int tcxLinkCreate(int prog_fd, int ifindex, bool ingress) {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.link_create.prog_fd = static_cast<std::uint32_t>(prog_fd);
  attr.link_create.target_fd = static_cast<std::uint32_t>(ifindex);  // target_ifindex
  attr.link_create.attach_type = static_cast<std::uint32_t>(tcxAttachType(ingress));
  attr.link_create.flags = kBpfFBefore;
  int fd = static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr)));
  return fd < 0 ? -errno : fd;
}

bpf_tc_hook makeHook(int ifindex, bool ingress) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return hook;
}

bpf_tc_opts makeTcOpts(int prog_fd = 0, std::uint32_t flags = 0) {
  bpf_tc_opts opts{};
  opts.sz = sizeof(opts);
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  opts.prog_fd = prog_fd;
  opts.flags = flags;
  return opts;
}

// Program id of the legacy filter at our handle/priority, 0 if none.
std::uint32_t queryOurTcFilter(int ifindex, bool ingress) {
  bpf_tc_hook hook = makeHook(ifindex, ingress);
  bpf_tc_opts opts = makeTcOpts();
  if (bpf_tc_query(&hook, &opts) != 0) {
    return 0;  // -ENOENT: no filter there (or no clsact qdisc at all)
  }
  return opts.prog_id;
}

// Whether the filter at our fixed handle/priority is ours. Without the
// privilege to read its name, the handle itself (0xa7f1, chosen to be
// unusual) is taken as the identity.
bool isOurs(const std::optional<std::string>& name, bool ingress) {
  return !name || isOurProgramName(*name, ingress);
}

}  // namespace

bool isOurProgramName(std::string_view name, bool ingress) noexcept {
  for (const OurProgram& p : kOurPrograms) {
    if (p.ingress == ingress && p.name == name) return true;
  }
  return false;
}

const char* toString(HookMode mode) {
  switch (mode) {
    case HookMode::kAuto:
      return "auto";
    case HookMode::kTcx:
      return "tcx";
    case HookMode::kTc:
      return "tc";
  }
  return "?";
}

bool kernelHasTcx() {
  // Querying a TCX hook of loopback fails with EINVAL on kernels without TCX.
  std::uint32_t count = 0;
  struct bpf_prog_query_opts opts {};
  opts.sz = sizeof(opts);
  opts.prog_cnt = count;
  const int lo = static_cast<int>(if_nametoindex("lo"));
  return bpf_prog_query_opts(lo > 0 ? lo : 1, static_cast<bpf_attach_type>(kBpfTcxIngress),
                             &opts) == 0;
}

std::vector<AttachedProgram> listHookPrograms(int ifindex, bool ingress) {
  std::vector<AttachedProgram> out;
  std::uint32_t ids[64];
  struct bpf_prog_query_opts opts {};
  opts.sz = sizeof(opts);
  opts.prog_ids = ids;
  opts.prog_cnt = 64;
  if (bpf_prog_query_opts(ifindex, static_cast<bpf_attach_type>(tcxAttachType(ingress)), &opts) ==
      0) {
    for (std::uint32_t i = 0; i < opts.prog_cnt && i < 64; ++i) {
      out.push_back({ids[i], progName(ids[i]).value_or(""), true});
    }
  } else if (errno == ENODEV) {
    AYAFLOW_SYSTEM_ERROR(ENODEV, "list programs on ifindex " + std::to_string(ifindex));
  }
  if (std::uint32_t id = queryOurTcFilter(ifindex, ingress); id != 0) {
    out.push_back({id, progName(id).value_or(""), false});
  }
  return out;
}

TcAttachment::TcAttachment(const std::string& ifname, int ingress_prog_fd, int egress_prog_fd,
                           HookMode mode)
    : ifname_(ifname), mode_(mode) {
  ifindex_ = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex_ == 0) {
    AYAFLOW_SYSTEM_ERROR(errno, "--interface: no interface named '" + ifname + "'");
  }
  if (mode_ == HookMode::kAuto) {
    mode_ = kernelHasTcx() ? HookMode::kTcx : HookMode::kTc;
  }
  if (mode_ == HookMode::kTcx) {
    attachTcx(ingress_prog_fd, egress_prog_fd);
  } else {
    attachTc(ingress_prog_fd, egress_prog_fd);
  }
  attached_ = true;
  logger("bpf")->info("attached to {} (ifindex {}) ingress and egress via {}", ifname_, ifindex_,
                      toString(mode_));
}

TcAttachment::TcAttachment(TcAttachment&& other) noexcept
    : ifname_(std::move(other.ifname_)),
      ifindex_(other.ifindex_),
      mode_(other.mode_),
      attached_(std::exchange(other.attached_, false)) {
  for (int i = 0; i < 2; ++i) {
    link_fds_[i] = std::exchange(other.link_fds_[i], -1);
    tc_prog_ids_[i] = std::exchange(other.tc_prog_ids_[i], 0);
  }
}

TcAttachment::~TcAttachment() { detach(); }

void TcAttachment::attachTcx(int ingress_prog_fd, int egress_prog_fd) {
  const int fds[2] = {ingress_prog_fd, egress_prog_fd};
  for (int i = 0; i < 2; ++i) {
    const bool ingress = i == 0;
    // A legacy filter of ours left by a killed run in tc mode would be a
    // second copy: remove it (only if it is ours, by name).
    if (std::uint32_t stale = queryOurTcFilter(ifindex_, ingress);
        stale != 0 && isOurs(progName(stale), ingress)) {
      bpf_tc_hook hook = makeHook(ifindex_, ingress);
      bpf_tc_opts opts = makeTcOpts();
      if (bpf_tc_detach(&hook, &opts) == 0) {
        logger("bpf")->info("{}: removed a tc filter left by an earlier run ({})", ifname_,
                            ingress ? "ingress" : "egress");
      }
    }
    int fd = tcxLinkCreate(fds[i], ifindex_, ingress);
    if (fd < 0) {
      for (int j = 0; j < i; ++j) {
        close(std::exchange(link_fds_[j], -1));
      }
      AYAFLOW_SYSTEM_ERROR(
          -fd, "attach TCX " + std::string(ingress ? "ingress" : "egress") + " on " + ifname_ +
                   (-fd == EINVAL ? " (kernel older than 6.6? try --attach-mode tc)" : ""));
    }
    link_fds_[i] = fd;
  }
}

void TcAttachment::attachTc(int ingress_prog_fd, int egress_prog_fd) {
  const int fds[2] = {ingress_prog_fd, egress_prog_fd};
  // Creates clsact if missing; -EEXIST means it exists (maybe a CNI's): fine.
  bpf_tc_hook hook = makeHook(ifindex_, true);
  hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  int err = bpf_tc_hook_create(&hook);
  if (err != 0 && err != -EEXIST) {
    AYAFLOW_SYSTEM_ERROR(-err, "create clsact qdisc on " + ifname_);
  }
  for (int i = 0; i < 2; ++i) {
    const bool ingress = i == 0;
    // Replace only a filter that is ours; refuse to clobber someone else's.
    if (std::uint32_t existing = queryOurTcFilter(ifindex_, ingress); existing != 0) {
      const std::optional<std::string> name = progName(existing);
      if (!isOurs(name, ingress)) {
        detach();
        AYAFLOW_SYSTEM_ERROR(EEXIST, "attach tc " + std::string(ingress ? "ingress" : "egress") +
                                         " on " + ifname_ + ": handle 0xa7f1 priority 1 holds '" +
                                         *name + "', not ours");
      }
    }
    bpf_tc_hook h = makeHook(ifindex_, ingress);
    bpf_tc_opts opts = makeTcOpts(fds[i], BPF_TC_F_REPLACE);
    err = bpf_tc_attach(&h, &opts);
    if (err != 0) {
      detach();
      AYAFLOW_SYSTEM_ERROR(-err, "attach tc " + std::string(ingress ? "ingress" : "egress") +
                                     " filter on " + ifname_);
    }
    tc_prog_ids_[i] = progIdOfFd(fds[i]);
    attached_ = true;  // so a failure on the second direction detaches the first
  }
}

void TcAttachment::detach() noexcept {
  if (!attached_) {
    return;
  }
  attached_ = false;
  for (int i = 0; i < 2; ++i) {
    if (link_fds_[i] >= 0) {
      close(std::exchange(link_fds_[i], -1));  // releasing the link detaches
    }
    if (tc_prog_ids_[i] != 0) {
      const bool ingress = i == 0;
      // Detach only if the filter still runs our program (another agent may
      // have replaced it since).
      if (queryOurTcFilter(ifindex_, ingress) == tc_prog_ids_[i]) {
        bpf_tc_hook hook = makeHook(ifindex_, ingress);
        bpf_tc_opts opts = makeTcOpts();
        if (int err = bpf_tc_detach(&hook, &opts); err != 0) {
          logger("bpf")->warn("detach tc {} filter on {}: {}", ingress ? "ingress" : "egress",
                              ifname_, std::strerror(-err));
        }
      }
      tc_prog_ids_[i] = 0;
    }
  }
  logger("bpf")->info("detached from {}", ifname_);
}

}  // namespace ayaflow::bpf
