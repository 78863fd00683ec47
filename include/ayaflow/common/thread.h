// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

namespace ayaflow::common {

/// Names the calling thread (at most 15 characters are kept, as `comm` in /proc) and, when
/// `batch`, schedules it as SCHED_BATCH: throughput work that should not preempt the
/// latency-sensitive threads on wake-up (the ingest thread draining the kernel's ring
/// buffer, the node's own workloads). Needs no privilege; failures are ignored (the thread
/// then keeps the default policy).
void setUpThread(const char* name, bool batch);

}  // namespace ayaflow::common
