// Per-day statistics kept in Redis, so that both gateways of a pair count
// into the same days and either one's report shows the pair's mail. One
// hash per day, `PREFIX stats:YYYY-MM-DD`, fields as ops/stats.hpp names them,
// written with HINCRBY (adds from both gateways just sum) and expiring after
// the retention.
//
// Blocking calls on a short-lived connection of its own: the recorder calls
// it from its flusher thread, the control socket for a report; never an I/O
// thread.
#pragma once

#include <memory>

#include "mxguard/ops/stats.hpp"
#include "mxguard/ratelimit/redis_store.hpp"

namespace mxguard::ratelimit {

std::shared_ptr<ops::stats_backend> make_redis_stats_backend(redis_settings settings,
                                                             int retention_days,
                                                             std::size_t max_names_per_day);

}  // namespace mxguard::ratelimit
