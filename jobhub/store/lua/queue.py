"""The scripts that guard the queue's own records of a job against a run the job outlived
(used by ``Store.newer_run`` and ``Store.release_mark``, driven by jobhub/lifecycle)."""

from __future__ import annotations

from jobhub.core.snapshot import AT_WORK
from jobhub.store.lua.snapshots import status_set

__all__ = ["NEWER_RUN", "RELEASE_MARK"]

_AT_WORK_LUA = status_set(AT_WORK)

# KEYS: job hash, the queue's in-progress key, job key and queue. ARGV: 'park' or 'keep', the
# token of a superseded run, the token of no run, the job's id in the queue, then how far (ms)
# to move its queue entry ('park') or the in-progress key's TTL (ms, 'keep').
# The queue ends a superseded run's bookkeeping by deleting the job's in-progress key, which
# by then is the newer run's: without it any worker (the stale one's own next poll first)
# would start the job a third time. So, before the queue ends the stale run, 'park' moves the
# job's queue entry into the future while a newer run holds the job (no poll selects it,
# and the queue's own moves of the entry are relative, so they add up); once it has, 'keep'
# moves the entry back and puts the in-progress key back while the newer run is at work.
# Reply 1 if it moved the entry ('park') or put the key back ('keep').
NEWER_RUN = f"""
local run = redis.call('HGET', KEYS[1], 'run')
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
local at_work = {_AT_WORK_LUA}
local newer = run and run ~= ARGV[2] and run ~= ARGV[3] and at_work[status]
if ARGV[1] == 'park' then
  if not (newer or redis.call('EXISTS', KEYS[2]) == 1) then return 0 end
  if not redis.call('ZSCORE', KEYS[4], ARGV[4]) then return 0 end
  redis.call('ZINCRBY', KEYS[4], ARGV[5], ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'parked', ARGV[5])
  return 1
end
local parked = redis.call('HGET', KEYS[1], 'parked')
if parked then
  redis.call('HDEL', KEYS[1], 'parked')
  if redis.call('ZSCORE', KEYS[4], ARGV[4]) then
    redis.call('ZINCRBY', KEYS[4], -tonumber(parked), ARGV[4])
  end
end
if not newer or redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
return redis.call('SET', KEYS[2], '1', 'PX', ARGV[5], 'NX') and 1 or 0
"""

# KEYS: job hash, the queue's in-progress key of the job. ARGV: the job's seq when its mark
# was found taken up by no run. Deletes the mark only while the job is still queued at that
# seq: a run that started meanwhile (a new seq) keeps it.
RELEASE_MARK = """
if redis.call('HGET', KEYS[1], 'status') ~= '"queued"' then return 0 end
if redis.call('HGET', KEYS[1], 'seq') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[2])
"""
