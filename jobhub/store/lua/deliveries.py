"""The scripts of webhook deliveries (jobhub/webhooks/deliveries.py): claiming what is due,
counting attempts, and the job's delivery log."""

from __future__ import annotations

__all__ = ["CLAIM", "COUNT_ATTEMPT", "RECORD_ATTEMPT"]

# KEYS: the webhooks due. ARGV: now (ms), when the claim's lease ends (ms), how many to
# claim. Claims what is due: pushes each back by the lease, so that only this worker has it
# for now. Replies the jobs claimed.
CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, job in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], job) end
return due
"""

# KEYS: the job's hash. Counts an attempt only on a job that still exists: HINCRBY on an
# expired job would create its hash again, with no TTL, and leak it.
COUNT_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'webhook_attempts', 1)
"""

# KEYS: the log, the job's hash. ARGV: the record, the cap. Appends an attempt to the job's
# delivery log, capped, living exactly as long as the job's hash (its TTL copied over): the
# log must not outlive the job, nor expire before it.
RECORD_ATTEMPT = """
local ttl = redis.call('PTTL', KEYS[2])
if ttl == -2 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end
return 1
"""
