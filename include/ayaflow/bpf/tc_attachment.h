// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ayaflow::bpf {

/// How the programs are hooked into an interface.
/// - kTcx: BPF links on the TCX hooks (kernel >= 6.6). The link dies with the
///   process, so a killed agent never leaves a program behind; inserted
///   first in the chain so a CNI that ends the chain does not hide packets.
/// - kTc: netlink tc filters on the clsact qdisc (every kernel). Fixed
///   handle/priority with replace, so a restart replaces a filter left by a
///   killed run instead of adding a second one.
/// - kAuto: kTcx where the kernel has it, kTc otherwise.
enum class HookMode { kAuto, kTcx, kTc };

/// Fixed identity of our legacy tc filters.
inline constexpr std::uint32_t kTcHandle = 0xa7f1;
inline constexpr std::uint32_t kTcPriority = 1;

/// One program attached to an interface hook (for diagnostics and tests).
struct AttachedProgram {
  std::uint32_t id = 0;
  std::string name;
  bool tcx = false;  // TCX link or mprog, else a legacy tc filter
};

/// Attaches the ingress and egress programs to one interface and detaches
/// exactly them on destruction (or detach()). Never deletes a qdisc and never
/// touches another program's filter or link: the clsact qdisc it may create
/// is left in place, since a CNI may share it. Control-plane only: throws
/// SystemError naming the interface and the failed step. Move-only.
class TcAttachment {
 public:
  TcAttachment(const std::string& ifname, int ingress_prog_fd, int egress_prog_fd, HookMode mode);
  ~TcAttachment();
  TcAttachment(TcAttachment&&) noexcept;
  TcAttachment& operator=(TcAttachment&&) = delete;
  TcAttachment(const TcAttachment&) = delete;
  TcAttachment& operator=(const TcAttachment&) = delete;

  /// Detaches our programs; idempotent, never throws (failures are logged).
  void detach() noexcept;

  const std::string& interfaceName() const { return ifname_; }
  int ifindex() const { return ifindex_; }
  /// The mode actually used (never kAuto).
  HookMode mode() const { return mode_; }

 private:
  void attachTcx(int ingress_prog_fd, int egress_prog_fd);
  void attachTc(int ingress_prog_fd, int egress_prog_fd);

  std::string ifname_;
  int ifindex_ = 0;
  HookMode mode_ = HookMode::kAuto;
  int link_fds_[2] = {-1, -1};             // kTcx: ingress, egress links
  std::uint32_t tc_prog_ids_[2] = {0, 0};  // kTc: ids we attached
  bool attached_ = false;
};

/// Programs on an interface's ingress (or egress) hook: TCX ones and the
/// legacy tc filter at our fixed handle/priority. Throws SystemError if the
/// interface does not exist.
std::vector<AttachedProgram> listHookPrograms(int ifindex, bool ingress);

/// True if `name`, as the kernel reports a program's name (cut to 15 characters), is one of
/// our programs for that hook, from this version or an earlier one. Decides whether a
/// filter at our tc handle/priority may be replaced or removed.
bool isOurProgramName(std::string_view name, bool ingress) noexcept;

/// True if the running kernel accepts TCX links.
bool kernelHasTcx();

const char* toString(HookMode mode);

}  // namespace ayaflow::bpf
