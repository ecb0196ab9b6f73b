"""The scripts that make every write of a job's snapshot one atomic step (``Store``).

They are generated from the ``Snapshot`` model, so that the JSON they assemble from a job's
stored fragments is byte for byte what msgspec encodes (a test pins the two together). Each
script's KEYS are built beside it (``create_keys``, ``write_keys``, ``delete_keys``), so the
layout a script reads and the list a caller sends cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import msgspec

from jobhub.core import keys
from jobhub.core.snapshot import AT_WORK, TERMINAL, Snapshot, Status
from jobhub.store.lua.batches import BATCH_SNAPSHOT_LUA, batch_written
from jobhub.store.lua.feed import FEED_MARK
from jobhub.store.lua.tags import tags_ended, tags_published

__all__ = [
    "CREATE",
    "DELETE",
    "FIELDS",
    "FLUSH",
    "WRITE",
    "create_keys",
    "delete_keys",
    "status_set",
    "write_keys",
]

FIELDS = [field.name for field in msgspec.structs.fields(Snapshot)]  # in wire order


def status_set(statuses: Collection[Status]) -> str:
    """A Lua table of statuses as their stored fragments, e.g. {['"finished"'] = true}."""
    return "{" + ", ".join(f"['\"{s.value}\"'] = true" for s in sorted(statuses)) + "}"


_TERMINAL_LUA = status_set(TERMINAL)
_AT_WORK_LUA = status_set(AT_WORK)

# Lua that assembles the snapshot JSON from the hash, in wire order; generated from the
# Snapshot model so the two can never disagree.
# A field added to the model after a job was stored (``tags``) reads as its default, so
# that jobs written by an older version still compose.
_DEFAULTS = {
    field.name: msgspec.json.encode(
        field.default_factory() if field.default is msgspec.NODEFAULT else field.default
    ).decode()
    for field in msgspec.structs.fields(Snapshot)
    if field.default is not msgspec.NODEFAULT or field.default_factory is not msgspec.NODEFAULT
}
_COMPOSE_LUA = (
    "local v = redis.call('HMGET', KEYS[1], "
    + ", ".join(f"'{name}'" for name in FIELDS)
    + ")\n"
    + "".join(
        f"v[{i}] = v[{i}] or '{_DEFAULTS[name]}'\n"
        for i, name in enumerate(FIELDS, 1)
        if name in _DEFAULTS and "'" not in _DEFAULTS[name]
    )
    + "local data = '{' .. "
    + " .. ',' .. ".join(f"'\"{name}\":' .. v[{i}]" for i, name in enumerate(FIELDS, 1))
    + " .. '}'\n"
)

_STATUS_INDEX = FIELDS.index("status") + 1  # of the status fragment in the HMGET above
_TAGS_INDEX = FIELDS.index("tags") + 1

# Every stored snapshot is also appended to the job's capped history list (KEYS[2]).
_RECORD_LUA = f"""
redis.call('HSET', KEYS[1], 'data', data)
redis.call('RPUSH', KEYS[2], data)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[HISTORY]), -1)
publish(ARGV[1], data)
publish('{keys.EVENTS}', data)
""" + tags_published(  # a tagged job's snapshots go to each tag's channel too
    tags=f"v[{_TAGS_INDEX}]",
    ended=f"({_TERMINAL_LUA})[v[{_STATUS_INDEX}]]",
    job_id=f"v[{FIELDS.index('job_id') + 1}]",
)

# How a script publishes: at once, or (``stash``: the write waits for a replica first) into
# the caller's outbox list, which ``FLUSH`` publishes after Redis's WAIT, in the same round
# trip. So a snapshot that any reader saw is on a replica too, and a failover to that
# replica can never take back, and then reuse, a seq that was seen.
_PUBLISH_LUA = """
local function publish(channel, message)
  if stash then
    redis.call('RPUSH', outbox, channel, message)
    redis.call('EXPIRE', outbox, 60)
  else
    redis.call('PUBLISH', channel, message)
  end
end
"""

# A new job joins the listing index (``jobs``), scored by Redis's clock in µs, and the index
# of jobs not yet ended (``active``), which the reconciler walks (lifecycle/reconciler.py).
_INDEX_LUA = """
local now = redis.call('TIME')
local job_id = redis.call('HGET', KEYS[1], 'job_id')
redis.call('ZADD', jobs, now[1] * 1000000 + now[2], job_id)
redis.call('ZADD', active, now[1] * 1000 + math.floor(now[2] / 1000), job_id)
redis.call('HINCRBY', counts, redis.call('HGET', KEYS[1], 'status'), 1)
"""

# Counts by status move with every change of status: one fewer of the old one, one more of
# the new one, or, for a final status, one more in this minute's count of ended jobs.
# That minute's key is the one key a script names that its caller does not pass in KEYS: the
# minute is Redis's clock at the moment the job ends, which the caller cannot know without a
# round trip of its own, and a caller's clock would file the jobs of workers whose clocks
# disagree in different minutes. Redis asks for every key in KEYS so that a cluster can send
# a script to the node of its keys; jobhub's scripts span many slots anyway (a job's keys
# beside shared indexes), so jobhub runs on one primary, where this key costs nothing.
_COUNT_LUA = f"""
if new_status ~= status then
  redis.call('HINCRBY', counts, status, -1)
  if terminal[new_status] then
    local now = redis.call('TIME')
    local minute = '{keys.ENDED}' .. math.floor(now[1] / 60)
    redis.call('HINCRBY', minute, new_status, 1)
    redis.call('EXPIRE', minute, 7200)
  else
    redis.call('HINCRBY', counts, new_status, 1)
  end
end
"""

# A batch's child moves its batch's counts, percent and seq in the step that writes it
# (jobhub/store/lua/batches.py).
_BATCH_LUA = batch_written(
    batch_id=f"v[{FIELDS.index('batch_id') + 1}]",
    job_id=f"v[{FIELDS.index('job_id') + 1}]",
    percent=f"v[{FIELDS.index('percent') + 1}]",
    weight=f"v[{FIELDS.index('weight') + 1}]",
    updated_at=f"v[{FIELDS.index('updated_at') + 1}]",
    ttl="ARGV[2]",
)

# KEYS (``create_keys``): job hash, history list, the job's tombstone, the indexes of jobs
# and of jobs not yet ended, the counts by status, the count of unended jobs per tag, the
# index of each of the job's tags, then the keys of an enqueue (see ``Enqueue``): the
# queue's job key, the queue, and keys whose existence means the queue still holds the id.
# ARGV: channel, history cap, job payload, its TTL (ms), its score in the queue, the job id
# as the queue knows it (all four empty without an enqueue), whether a tombstone refuses the
# create ('1': adopting what the queue alone knows), how many tag indexes, then field/value
# pairs. Replies {1, data} when created, {0, existing data} when the job exists, {2, ''} when
# the queue still holds the id, {3, ''} when refused for a tombstone. Snapshot and queue entry
# are written in one step, so no crash can leave a queued snapshot that no queue holds, or a
# queued job without a snapshot.
CREATE = f"""
local stash, outbox = false, nil
local jobs, active, counts, tags_active = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local ntags = tonumber(ARGV[8])
local q = 8 + ntags  -- the first key of the enqueue
{_PUBLISH_LUA}
local existing = redis.call('HGET', KEYS[1], 'data')
if existing then return {{0, existing}} end
local deleted = redis.call('EXISTS', KEYS[3]) == 1
if deleted and ARGV[7] == '1' then return {{3, ''}} end
if KEYS[q] then
  if redis.call('EXISTS', KEYS[q]) == 1 then return {{2, ''}} end
  for i = q + 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      -- Under a tombstone, what the queue holds (a result written after the delete) is the
      -- deleted job's leftover, not a job of its own: the new job replaces it.
      if not deleted then return {{2, ''}} end
      redis.call('DEL', KEYS[i])
    end
  end
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
{_INDEX_LUA}
for i = 8, 7 + ntags do
  -- The tag's index, scored as the listing of every job; it lives while a job of it is
  -- not ended (the count), and expires once the last one has (see WRITE).
  redis.call('ZADD', KEYS[i], now[1] * 1000000 + now[2], job_id)
  redis.call('PERSIST', KEYS[i])
  redis.call('HINCRBY', tags_active, KEYS[i], 1)
end
{_COMPOSE_LUA}
{_RECORD_LUA.replace("ARGV[HISTORY]", "ARGV[2]")}
if KEYS[q] then
  redis.call('SET', KEYS[q], ARGV[3], 'PX', ARGV[4])
  redis.call('ZADD', KEYS[q + 1], ARGV[5], ARGV[6])
end
return {{1, data}}
"""


def create_keys(job_id: str, enqueue: Sequence[str] = (), tags: Sequence[str] = ()) -> list[str]:
    """CREATE's KEYS; ``enqueue``: the queue's job key, the queue, then the keys whose
    existence means the queue still holds the id (none: the job is not put in a queue);
    ``tags``: the job's tags, whose indexes it joins (CREATE's ARGV[8] is their count)."""
    return [
        keys.job_snapshot(job_id), keys.job_history(job_id), keys.job_deleted(job_id),
        keys.JOBS, keys.ACTIVE, keys.COUNTS, keys.TAGS_ACTIVE,
        *(keys.tagged(tag) for tag in tags), *enqueue,
    ]  # fmt: skip


# KEYS (``write_keys``): job hash, history list, output stream, the caller's outbox, the
# job's tombstone, the indexes of jobs and of jobs not yet ended, the counts by status, the
# webhooks due, the count of unended jobs per tag, and (written by a worker) the worker's set
# of held jobs (or ''); then the archive's feed (see feed.py). ARGV: channel, ttl
# seconds, history cap, output cap, init, whether to stash what it publishes in the outbox
# ('1') or publish it at once, then one or more patches or entries.
# A patch is field and fragment pairs joined by NUL: one argument instead of one per field,
# since packing arguments is most of a write's client cost, and JSON escapes every control
# character, so NUL cannot occur inside a fragment. Each patch becomes its own snapshot with
# its own seq and publish; several in one call only save round trips. ``init`` (the fields of
# a queued snapshot, or empty) creates a job that is missing, for jobs enqueued with ARQ
# directly. An entry (``!entry`` and its JSON) is appended to the job's output stream instead
# (capped, oldest dropped) and published as ``><stream id> <JSON>`` on the same channel, so
# that snapshots and entries reach every reader in the order the job wrote them. An entry's
# id is ``<ms>-<n>``, n its ordinal in the job's output (1, 2, 3, ...) and ms Redis's clock,
# never below the newest entry's: so ids still increase, and a reader whose place was
# trimmed away learns exactly how many entries it missed from the first kept id alone
# (Redis 6.2 keeps no count of entries ever added to a stream).
# A run's write may carry its number (``?once``, the run's token and a count that grows with
# each write of the run): one the job already applied (sent again once a connection failed
# over, its reply lost) answers the job's snapshot as it is now, or the run's latest entry id,
# and is not applied twice. Only the newest run's last number is kept: O(1) per job.
# Replies {outcome, status, data of each applied patch or id of each entry}; outcome is 'ok',
# 'final' (the rest were refused: the job is terminal), 'refused' (a status guard), 'fenced'
# (the writing run is not the job's newest) or 'missing'.
WRITE = f"""
local stash, outbox = ARGV[6] == '1', KEYS[4]
local jobs, active, counts, webhooks = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local tags_active, held = KEYS[10], KEYS[11]
if held == '' then held = nil end  -- a placeholder: a key after it is sent (feed.py)
{_PUBLISH_LUA}
{BATCH_SNAPSHOT_LUA}
local terminal = {_TERMINAL_LUA}
local function split(s)
  local t = {{}}
  for part in string.gmatch(s, '[^%z]+') do t[#t + 1] = part end
  return t
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  -- A deleted job stays deleted: a run that ARQ still starts for it creates nothing.
  if ARGV[5] == '' or redis.call('EXISTS', KEYS[5]) == 1 then return {{'missing', ''}} end
  redis.call('HSET', KEYS[1], 'seq', 0, unpack(split(ARGV[5])))
{_INDEX_LUA}
  status = redis.call('HGET', KEYS[1], 'status')
end
local was_terminal = terminal[status]
local applied = {{}}
local last_ms, last_n  -- of the newest output entry, read at the first entry appended
for i = 7, #ARGV do repeat  -- (`break` leaves the repeat: Lua 5.1 has no `continue`)
  local patch = split(ARGV[i])
  local once = nil
  if patch[1] == '?once' then
    once = tonumber(patch[3])
    local done = redis.call('HGET', KEYS[1], 'run') == patch[2]
      and tonumber(redis.call('HGET', KEYS[1], 'wn') or '0') >= once
    for _ = 1, 3 do table.remove(patch, 1) end
    if done then
      local k = 1
      while patch[k] == '?run' or patch[k] == '?from' do k = k + 2 end
      local field = patch[k] == '!entry' and 'we' or 'data'
      applied[#applied + 1] = redis.call('HGET', KEYS[1], field) or ''
      break
    end
  end
  if terminal[status] then return {{'final', status, unpack(applied)}} end
  if patch[1] == '?run' then
    -- Fencing: a write of a run applies only while that run is the job's newest. A run that
    -- was declared lost, or outlived by a newer start, has its writes refused.
    if (redis.call('HGET', KEYS[1], 'run') or '-') ~= patch[2] then
      return {{'fenced', status, unpack(applied)}}
    end
    table.remove(patch, 1)
    table.remove(patch, 1)
  end
  if patch[1] == '?from' then
    -- A guarded patch applies only from the statuses it names ('|'-separated fragments).
    if not string.find('|' .. patch[2] .. '|', '|' .. status .. '|', 1, true) then
      return {{'refused', status, unpack(applied)}}
    end
    table.remove(patch, 1)
    table.remove(patch, 1)
  end
  if patch[1] == '!entry' then
    if not last_n then
      local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
      last_ms, last_n = 0, 0
      if newest then
        local dash = string.find(newest[1], '-', 1, true)
        last_ms = tonumber(string.sub(newest[1], 1, dash - 1))
        last_n = tonumber(string.sub(newest[1], dash + 1))
      end
      local now = redis.call('TIME')
      last_ms = math.max(last_ms, now[1] * 1000 + math.floor(now[2] / 1000))
    end
    last_n = last_n + 1
    local id = string.format('%d-%d', last_ms, last_n)
    redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], id, 'e', patch[2])
    publish(ARGV[1], '>' .. id .. ' ' .. patch[2])
    applied[#applied + 1] = id
  else
    redis.call('HSET', KEYS[1], unpack(patch))
    redis.call('HINCRBY', KEYS[1], 'seq', 1)
{_COMPOSE_LUA}
{_RECORD_LUA.replace("ARGV[HISTORY]", "ARGV[3]")}
    applied[#applied + 1] = data
    local new_status = v[{_STATUS_INDEX}]
{_COUNT_LUA}
{_BATCH_LUA}
    status = new_status
  end
  if once and patch[1] == '!entry' then
    redis.call('HSET', KEYS[1], 'wn', once, 'we', applied[#applied])
  elseif once then
    redis.call('HSET', KEYS[1], 'wn', once)
  end
until true end
if terminal[status] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  redis.call('ZREM', active, redis.call('HGET', KEYS[1], 'job_id'))
  if not was_terminal then
    local tags = redis.call('HGET', KEYS[1], 'tags')
{tags_ended(tags="tags", counts="tags_active", ttl="ARGV[2]")}
    {FEED_MARK}
  end
  if redis.call('HEXISTS', KEYS[1], 'callback') == 1 then
    -- Its webhook is due now: queued in the same step that ends the job.
    local now = redis.call('TIME')
    local due = now[1] * 1000 + math.floor(now[2] / 1000)
    redis.call('ZADD', webhooks, due, redis.call('HGET', KEYS[1], 'job_id'))
  end
end
if held then
  -- Written by a worker: the job counts as that worker's while it is at work, so that it is
  -- recovered if the worker stops beating (jobhub/worker/recovery.py).
  local job = redis.call('HGET', KEYS[1], 'job_id')
  local at_work = {_AT_WORK_LUA}
  if at_work[status] then redis.call('SADD', held, job) else redis.call('SREM', held, job) end
end
return {{'ok', status, unpack(applied)}}
"""


def write_keys(job_id: str, outbox: str, owner: str | None) -> list[str]:
    """WRITE's KEYS; ``owner``: the id of the worker writing, if a worker is."""
    written = [
        keys.job_snapshot(job_id), keys.job_history(job_id), keys.job_output(job_id), outbox,
        keys.job_deleted(job_id), keys.JOBS, keys.ACTIVE, keys.COUNTS, keys.WEBHOOKS,
        keys.TAGS_ACTIVE,
    ]  # fmt: skip
    # KEYS[11], the worker's set, is an empty placeholder where no worker writes.
    return [*written, keys.worker_jobs(owner) if owner is not None else "", keys.ARCHIVE_FEED]


# KEYS (``delete_keys``): the indexes of jobs and of jobs not yet ended, the job's tombstone,
# job hash, then every other key of the job to delete with it. ARGV: the tombstone's TTL (s).
# Deletes only an ended job, leaving a tombstone so that what the queue writes for it later (a
# run still ending) cannot bring it back; replies its status fragment (nil: no such job).
DELETE = f"""
local status = redis.call('HGET', KEYS[4], 'status')
if not status then return nil end
local terminal = {_TERMINAL_LUA}
if not terminal[status] then return status end
local job_id = redis.call('HGET', KEYS[4], 'job_id')
redis.call('DEL', unpack(KEYS, 4))
redis.call('SET', KEYS[3], '1', 'EX', ARGV[1])
redis.call('ZREM', KEYS[1], job_id)
redis.call('ZREM', KEYS[2], job_id)
return status
"""


def delete_keys(job_id: str, also: Sequence[str] = ()) -> list[str]:
    """DELETE's KEYS; ``also``: keys outside jobhub's to delete with the job."""
    return [
        keys.JOBS, keys.ACTIVE, keys.job_deleted(job_id), keys.job_snapshot(job_id),
        keys.job_history(job_id), keys.job_output(job_id), keys.job_deliveries(job_id), *also,
    ]  # fmt: skip


# KEYS: an outbox (see ``_PUBLISH_LUA``). Publishes what it holds, in order, and deletes it.
FLUSH = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i = 1, #items, 2 do redis.call('PUBLISH', items[i], items[i + 1]) end
redis.call('DEL', KEYS[1])
return #items / 2
"""
