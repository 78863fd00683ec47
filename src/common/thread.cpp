// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/thread.h"

#include <pthread.h>
#include <sched.h>

namespace ayaflow::common {

void setUpThread(const char* name, bool batch) {
  pthread_setname_np(pthread_self(), name);
  if (batch) {
    sched_param param{};
    param.sched_priority = 0;
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
  }
}

}  // namespace ayaflow::common
