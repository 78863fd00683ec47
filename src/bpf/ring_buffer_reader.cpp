// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/bpf/ring_buffer_reader.h"

#include <bpf/libbpf.h>

// Boost 1.74 Asio uses std::exchange without including <utility> (C++20).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

namespace asio = boost::asio;

namespace ayaflow::bpf {

struct RingBufferReader::Impl {
  Impl(asio::io_context& io, EventSink& s, std::chrono::milliseconds interval)
      : sink(s), descriptor(io), timer(io), quiet_interval(interval) {}

  // libbpf calls this for every record; a C callback, so nothing may escape.
  static int onSample(void* ctx, void* data, size_t size) noexcept {
    static_cast<Impl*>(ctx)->sink.onEvent(data, size);
    return 0;
  }

  std::size_t drain() {
    const int n = ring_buffer__consume(rb.get());
    if (n < 0) {
      if (!consume_error_logged) {
        logger("bpf")->error("ring buffer consume failed: {}", std::strerror(-n));
        consume_error_logged = true;
      }
      return 0;
    }
    sink.onDrained(static_cast<std::size_t>(n));
    return static_cast<std::size_t>(n);
  }

  // Wake-up from the program: data reached the wake-up threshold.
  void doWait() {
    descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                          [this](const boost::system::error_code& ec) { onWait(ec); });
  }
  void onWait(const boost::system::error_code& ec) {
    if (ec) {
      return;  // operation_aborted on stop()
    }
    drain();
    doWait();
  }

  // Quiet periods: events submitted without a wake-up are drained here.
  void doTimer() {
    timer.expires_after(quiet_interval);
    timer.async_wait([this](const boost::system::error_code& ec) { onTimer(ec); });
  }
  void onTimer(const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    drain();
    doTimer();
  }

  EventSink& sink;
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb{nullptr, ring_buffer__free};
  asio::posix::stream_descriptor descriptor;
  asio::steady_timer timer;
  std::chrono::milliseconds quiet_interval;
  bool consume_error_logged = false;
};

RingBufferReader::RingBufferReader(asio::io_context& io, int ring_map_fd, EventSink& sink,
                                   std::chrono::milliseconds quiet_drain_interval)
    : impl_(std::make_unique<Impl>(io, sink, quiet_drain_interval)) {
  ring_buffer_opts opts{};
  opts.sz = sizeof(opts);
  impl_->rb.reset(ring_buffer__new(ring_map_fd, &Impl::onSample, impl_.get(), &opts));
  if (!impl_->rb) {
    AYAFLOW_SYSTEM_ERROR(errno, "create ring buffer reader");
  }
  impl_->descriptor.assign(ring_buffer__epoll_fd(impl_->rb.get()));
}

RingBufferReader::~RingBufferReader() {
  stop();
  // libbpf owns the epoll fd: give it back before ring_buffer__free closes it.
  impl_->descriptor.release();
}

void RingBufferReader::start() {
  impl_->doWait();
  impl_->doTimer();
}

void RingBufferReader::stop() {
  boost::system::error_code ignored;
  impl_->descriptor.cancel(ignored);
  impl_->timer.cancel();
}

std::size_t RingBufferReader::drain() { return impl_->drain(); }

}  // namespace ayaflow::bpf
