"""The scripts of what workers keep in Redis about themselves: the heartbeat, the functions
they offer (jobhub/store/registry.py), and the lease of the one worker reconciling
(jobhub/lifecycle/reconciler.py)."""

from __future__ import annotations

from jobhub.core import keys

__all__ = ["BEAT", "LIVE", "OFFERED", "RENEW_LEASE", "beat_keys"]

# KEYS (``beat_keys``): alive key, the worker's held set (its members are job ids as JSON
# strings: the snapshot's own fragment), its queue's offered functions, the set of workers.
# ARGV: worker id, lost-after (ms), what the alive key holds (the worker's functions and the
# time of the beat, as JSON), function names.
# Replies the jobs the worker holds.
BEAT = """
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
for i = 4, #ARGV do redis.call('ZADD', KEYS[3], 'GT', ms, ARGV[i]) end
return redis.call('SMEMBERS', KEYS[2])
"""


def beat_keys(worker_id: str, offered: str) -> list[str]:
    """BEAT's KEYS; ``offered``: the key of the worker's queue's offered functions."""
    return [keys.worker_alive(worker_id), keys.worker_jobs(worker_id), offered, keys.WORKERS]


# KEYS: the queue's offered functions. ARGV: lost-after (ms), then names. Replies, per name,
# whether a live worker on the queue offers it.
OFFERED = """
local now = redis.call('TIME')
local since = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])
local found = {}
for i = 2, #ARGV do
  local stamp = redis.call('ZSCORE', KEYS[1], ARGV[i])
  found[#found + 1] = (stamp and tonumber(stamp) >= since) and 1 or 0
end
return found
"""

# KEYS: the queue's offered functions. ARGV: lost-after (ms). Replies the functions a live
# worker on the queue offers.
LIVE = """
local now = redis.call('TIME')
local since = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])
-- Stamps older than a day are of functions nobody offers any more: drop them.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', since - 86400000)
return redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf')
"""

# KEYS: the lease. ARGV: the worker's id, the lease's length (ms). Renews the lease the worker
# holds, or takes it if nobody does; replies 1 if the worker holds it now.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
