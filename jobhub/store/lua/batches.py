"""The Lua of batches: the bulk create of a batch's children, the batch's own changes, and
what a child's write does to its batch (``batch_written``, which WRITE in ``snapshots.py``
embeds at one marked place).

A batch's counts by status, its weighted percent and its ``seq`` move in the same atomic
step that writes a child's snapshot, so they are exact at every moment: no sweep, no
recount. A child's write learns its batch from the ``batch_id`` stored with the child, and
builds the batch's keys from it: its writers (a worker, recovery, the reconciler) would need
a round trip of their own to learn it (the exception tests/unit/test_lua.py allows, as for
tags). Batch ids are job ids (``[A-Za-z0-9_-]``), safe in a key as they are.

Every script here that creates or changes children names every key in KEYS.
"""

from __future__ import annotations

from jobhub.core import keys
from jobhub.core.snapshot import TERMINAL, Status

__all__ = [
    "BATCH_CREATE",
    "BATCH_DELETE",
    "BATCH_MARK",
    "BATCH_READ",
    "BATCH_SNAPSHOT_LUA",
    "batch_written",
]

_COUNTED = [f'"{status.value}"' for status in Status]  # the count fields, in wire order
_TERMINAL = "{" + ", ".join(f"['\"{s.value}\"'] = true" for s in sorted(TERMINAL)) + "}"

# ``batch_snapshot(bkey, children, changes, updated_at, ttl)``: composes the batch's JSON
# from its hash (wire order of jobhub/core/batch.py's BatchSnapshot), stores it as ``data``
# and, when the batch has just ended (sealed, no child left unended), sets its final status,
# gives its keys the TTL of its children and queues its webhook. Returns data, ended.
BATCH_SNAPSHOT_LUA = (
    """
local function batch_snapshot(bkey, children, changes, updated_at, ttl)
  local f = redis.call('HMGET', bkey, 'batch_id', 'status', 'total', """
    + ", ".join(f"'{name}'" for name in _COUNTED)
    + """, 'wsum', 'psum', 'sealed', 'seq', 'created_at', 'cancel', 'callback')
  local n = {}
  for i = 3, 12 do n[i] = tonumber(f[i] or '0') end
  local status = f[2]
  local ended = false
  if status == 'active' and f[13] == '1' and n[4] + n[5] + n[6] + n[7] == 0 then
    if f[16] == '1' or (n[9] == 0 and n[10] > 0) then status = 'canceled'
    elseif n[9] > 0 then status = 'failed'
    else status = 'finished' end
    ended = true
    redis.call('EXPIRE', bkey, ttl)
    redis.call('EXPIRE', children, ttl)
    redis.call('EXPIRE', changes, ttl)
    if f[17] then
      local now = redis.call('TIME')
      redis.call('ZADD', '"""
    + keys.BATCH_WEBHOOKS
    + """', now[1] * 1000 + math.floor(now[2] / 1000), '"' .. f[1] .. '"')
    end
  end
  local p = 0
  if n[11] > 0 then p = math.floor(n[12] / n[11]) elseif status ~= 'active' then p = 10000 end
  local data = '{"batch_id":"' .. f[1] .. '","status":"' .. status .. '","total":' .. n[3]
    .. ',"counts":{' .. """
    + " .. ',' .. ".join(f"'\"{s.value}\":' .. n[{i}]" for i, s in enumerate(Status, 4))
    + """ .. '},"percent":' .. string.format('%d.%02d', math.floor(p / 100), p % 100)
    .. ',"sealed":' .. (f[13] == '1' and 'true' or 'false') .. ',"seq":' .. f[14]
    .. ',"created_at":"' .. f[15] .. '","updated_at":"' .. updated_at .. '"}'
  redis.call('HSET', bkey, 'status', status, 'updated_at', updated_at, 'data', data)
  return data, ended
end
"""
)


def batch_written(
    *, batch_id: str, job_id: str, percent: str, weight: str, updated_at: str, ttl: str
) -> str:
    """Lua run after each snapshot a child's write stores (``data``, ``status`` the old
    status fragment, ``new_status`` the new one; ``terminal`` and ``publish`` as WRITE
    defines them): the child's count moves from its old status to its new one, its share
    of the batch's percent grows to what it reached, the batch's ``seq`` grows, the child
    is filed under that ``seq`` in the batch's change log, and the child's snapshot and then
    the batch's are published on the batch's channel. The other arguments are Lua
    expressions of the child's fragments, and of the TTL (s) of an ended batch."""
    return f"""
if {batch_id} ~= 'null' then
  local bid = string.sub({batch_id}, 2, -2)
  local bkey = '{keys.BATCH}' .. bid
  -- A batch deleted (its children with it) or expired has nothing left to count.
  if redis.call('EXISTS', bkey) == 1 then
    local share = math.floor(tonumber({percent}) * 100 + 0.5)
    if terminal[new_status] then share = 10000 end
    local had = tonumber(redis.call('HGET', KEYS[1], 'bshare') or '0')
    if share > had then
      redis.call('HSET', KEYS[1], 'bshare', share)
      redis.call('HINCRBY', bkey, 'psum', (share - had) * tonumber({weight}))
    end
    if new_status ~= status then
      redis.call('HINCRBY', bkey, status, -1)
      redis.call('HINCRBY', bkey, new_status, 1)
    end
    local bseq = redis.call('HINCRBY', bkey, 'seq', 1)
    local changes = '{keys.BATCH_CHANGES}' .. bid
    redis.call('ZADD', changes, bseq, {job_id})
    local channel = '{keys.BATCH_UPDATES}' .. bid
    publish(channel, 'J' .. bseq .. ' ' .. data)
    local bdata = batch_snapshot(bkey, '{keys.BATCH_CHILDREN}' .. bid, changes,
      string.sub({updated_at}, 2, -2), {ttl})
    publish(channel, 'B' .. bseq .. ' ' .. bdata)
  end
end
"""


# KEYS: batch hash, children, change log, the index of batches, the indexes of jobs and of
# jobs not yet ended, the counts by status, the count of unended jobs per tag, the queue,
# then per child six: its hash, history, tombstone, the queue's job key and result key, the
# hash of the child it retries (its own hash again if none), then its tags' indexes.
# ARGV: batch id, mode ('new', 'add' or 'retry'), sealed ('1' or '0'), history cap, now
# (the batch's created_at for a new one), its callback URL's JSON ('' for none), an ended
# batch's TTL (s), the batch's channel, then per child six: its stored fields (field and
# fragment pairs joined by NUL), its snapshot JSON, the queue's payload, '<score in the
# queue> <TTL there (ms)> <number of tags> <weight>', the id of the child it retries (''
# for none) and its own channel.
# All or none: every child is checked before anything is written. Replies {1, batch data}
# when done, {0, job id, why} when a child is refused ('exists'; 'queued': the queue still
# holds the id; 'retried': the child it retries is no longer one of the batch's, or has not
# ended), {-1, why} when the batch exists ('new': its status) or cannot take children
# ('add': '' when missing, 'sealed', or its status once ended; 'retry': '' when missing,
# 'canceling' while a cancel of it is under way, 'changed' when it was canceled after the
# seq named in the mode, 'retry <seq>').
BATCH_CREATE = (
    """
local bkey, children, changes, batches = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local jobs, active, counts, tags_active, queue = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local mode, channel = ARGV[2], ARGV[8]
-- A retry names the batch's seq at which it began to read the children: 'retry <seq>'.
local read_at = string.match(mode, '^retry (%d+)$')
if read_at then mode = 'retry' end
local terminal = """
    + _TERMINAL
    + """
local status = redis.call('HGET', bkey, 'status')
if mode == 'new' then
  if status then return {-1, status} end
elseif not status then
  return {-1, ''}
elseif mode == 'retry' and status == 'active' and redis.call('HGET', bkey, 'cancel') == '1' then
  -- A cancel under way goes through the children a page at a time: a retry now would put
  -- new children behind it, left running in a canceled batch. It waits for the batch's end.
  return {-1, 'canceling'}
elseif read_at and tonumber(redis.call('HGET', bkey, 'canceled_at') or '0') > tonumber(read_at) then
  -- The batch was canceled while the retry read its children: the retry saw a part of the
  -- children that cancel ended, and would run those alone again. The caller reads again.
  return {-1, 'changed'}
elseif mode == 'add' and status ~= 'active' then
  return {-1, status}
elseif mode == 'add' and redis.call('HGET', bkey, 'sealed') == '1' then
  return {-1, 'sealed'}
end
local function meta(i)
  local score, ttl, ntags, weight = string.match(ARGV[i], '(%S+) (%S+) (%S+) (%S+)')
  return score, ttl, tonumber(ntags), tonumber(weight)
end
-- First every check, so that a refused child leaves nothing written.
local k = 10
for i = 9, #ARGV, 6 do
  local _, _, ntags = meta(i + 3)
  if redis.call('EXISTS', KEYS[k]) == 1 then return {0, KEYS[k], 'exists'} end
  if redis.call('EXISTS', KEYS[k + 3]) == 1 or redis.call('EXISTS', KEYS[k + 4]) == 1 then
    if redis.call('EXISTS', KEYS[k + 2]) == 0 then return {0, KEYS[k], 'queued'} end
  end
  local old = ARGV[i + 4]
  if old ~= '' then
    local old_status = redis.call('HGET', KEYS[k + 5], 'status')
    if not redis.call('ZSCORE', children, cjson.encode(old)) or not terminal[old_status or ''] then
      return {0, old, 'retried'}
    end
  end
  k = k + 6 + ntags
end
local now = redis.call('TIME')
local listed = now[1] * 1000000 + now[2]
if mode == 'new' then
  redis.call('HSET', bkey, 'batch_id', ARGV[1], 'status', 'active', 'total', 0, 'wsum', 0,
    'psum', 0, 'sealed', ARGV[3], 'seq', 0, 'created_at', ARGV[5], 'cancel', '0')
  if ARGV[6] ~= '' then redis.call('HSET', bkey, 'callback', ARGV[6]) end
  redis.call('ZADD', batches, listed, ARGV[1])
else
  -- A retry opens an ended batch again: its keys live while a child has not ended.
  redis.call('HSET', bkey, 'status', 'active', 'cancel', '0')
  redis.call('PERSIST', bkey)
  redis.call('PERSIST', children)
  redis.call('PERSIST', changes)
end
-- Each child gets a seq of its own, so that each creation is a change a stream can resume
-- after; the batch's snapshot takes the last (or one of its own when no child came).
local bseq = tonumber(redis.call('HGET', bkey, 'seq'))
if #ARGV < 9 then bseq = redis.call('HINCRBY', bkey, 'seq', 1) end
local place = tonumber(redis.call('HGET', bkey, 'total'))
k = 10
for i = 9, #ARGV, 6 do
  local score, ttl, ntags, weight = meta(i + 3)
  local fields = {}
  for part in string.gmatch(ARGV[i], '[^%z]+') do fields[#fields + 1] = part end
  local data = ARGV[i + 1]
  redis.call('DEL', KEYS[k + 2], KEYS[k + 4])
  redis.call('HSET', KEYS[k], 'data', data, unpack(fields))
  local job_id = redis.call('HGET', KEYS[k], 'job_id')
  redis.call('RPUSH', KEYS[k + 1], data)
  redis.call('LTRIM', KEYS[k + 1], -tonumber(ARGV[4]), -1)
  redis.call('ZADD', jobs, listed, job_id)
  redis.call('ZADD', active, now[1] * 1000 + math.floor(now[2] / 1000), job_id)
  redis.call('HINCRBY', counts, '"queued"', 1)
  for t = k + 6, k + 5 + ntags do
    redis.call('ZADD', KEYS[t], listed, job_id)
    redis.call('PERSIST', KEYS[t])
    redis.call('HINCRBY', tags_active, KEYS[t], 1)
  end
  redis.call('PUBLISH', ARGV[i + 5], data)
  redis.call('PUBLISH', '"""
    + keys.EVENTS
    + """', data)
  if ARGV[i + 4] ~= '' then
    -- The retry takes its place: the old child's count moves to the new one's status.
    local old, old_id = KEYS[k + 5], cjson.encode(ARGV[i + 4])
    local at = redis.call('ZSCORE', children, old_id)
    redis.call('ZREM', children, old_id)
    redis.call('ZADD', children, at, job_id)
    redis.call('HINCRBY', bkey, redis.call('HGET', old, 'status'), -1)
    local old_weight = tonumber(redis.call('HGET', old, 'weight') or '1')
    local old_share = tonumber(redis.call('HGET', old, 'bshare') or '0')
    redis.call('HINCRBY', bkey, 'psum', -old_share * old_weight)
    redis.call('HINCRBY', bkey, 'wsum', weight - old_weight)
  else
    place = place + 1
    redis.call('ZADD', children, place, job_id)
    redis.call('HINCRBY', bkey, 'total', 1)
    redis.call('HINCRBY', bkey, 'wsum', weight)
  end
  redis.call('HINCRBY', bkey, '"queued"', 1)
  bseq = redis.call('HINCRBY', bkey, 'seq', 1)
  redis.call('ZADD', changes, bseq, job_id)
  redis.call('SET', KEYS[k + 3], ARGV[i + 2], 'PX', ttl)
  redis.call('ZADD', queue, score, string.sub(job_id, 2, -2))
  redis.call('PUBLISH', channel, 'J' .. bseq .. ' ' .. data)
  k = k + 6 + ntags
end
"""
    + BATCH_SNAPSHOT_LUA
    + """
local data = batch_snapshot(bkey, children, changes, ARGV[5], ARGV[7])
redis.call('PUBLISH', channel, 'B' .. bseq .. ' ' .. data)
return {1, data}
"""
)

# KEYS: batch hash, children, change log. ARGV: 'seal' or 'cancel', now, an ended batch's
# TTL (s), the batch's channel. Seals the batch (a cancel seals it too, and makes it end
# ``canceled``). Replies {1, data} when changed, {2, data} when it was so already or the
# batch has ended, {0, ''} when there is no such batch.
BATCH_MARK = (
    BATCH_SNAPSHOT_LUA
    + """
local bkey = KEYS[1]
local f = redis.call('HMGET', bkey, 'status', 'sealed', 'cancel', 'data')
if not f[1] then return {0, ''} end
if f[1] ~= 'active' or f[2] == '1' and (ARGV[1] == 'seal' or f[3] == '1') then
  return {2, f[4]}
end
redis.call('HSET', bkey, 'sealed', '1')
local bseq = redis.call('HINCRBY', bkey, 'seq', 1)
if ARGV[1] == 'cancel' then redis.call('HSET', bkey, 'cancel', '1', 'canceled_at', bseq) end
local data = batch_snapshot(bkey, KEYS[2], KEYS[3], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'B' .. bseq .. ' ' .. data)
return {1, data}
"""
)

# KEYS: batch hash, change log. ARGV: a batch seq ('' for none), how many children at most
# (0: none, the batch alone).
# Replies {batch data or false, then member, seq, data of each child changed after that
# seq (with none: of the ones changed last), oldest change first}: read in one step, so
# that each child's data is the one its seq in the change log stands for, or newer. The
# children's hashes are the keys built here (``job_snapshot``): which children changed is
# what the script reads.
BATCH_READ = f"""
local bdata = redis.call('HGET', KEYS[1], 'data')
local found = {{}}
if tonumber(ARGV[2]) == 0 then
  -- the batch alone
elseif ARGV[1] == '' then
  found = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
  local reversed = {{}}
  for i = #found - 1, 1, -2 do
    reversed[#reversed + 1] = found[i]
    reversed[#reversed + 1] = found[i + 1]
  end
  found = reversed
else
  found = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES',
    'LIMIT', 0, tonumber(ARGV[2]))
end
local reply = {{bdata or false}}
for i = 1, #found, 2 do
  local data = redis.call('HGET', '{keys.job_snapshot("")}' .. cjson.decode(found[i]), 'data')
  if data then
    reply[#reply + 1] = found[i + 1]
    reply[#reply + 1] = data
  end
end
return reply
"""

# KEYS: batch hash, children, change log, the index of batches, the indexes of jobs and of
# jobs not yet ended, then per child: its hash, history, output, deliveries, tombstone and
# the queue's result key. ARGV: the batch id, how many children, the tombstones' TTL (s).
# Deletes an ended batch and its children, leaving each child's tombstone (as DELETE does
# for a job). Replies 'ok', the batch's status when it has not ended, 'changed' when its
# children are no longer those sent (a retry meanwhile), or false when there is no batch.
BATCH_DELETE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'active' then return status end
if redis.call('ZCARD', KEYS[2]) ~= tonumber(ARGV[2]) then return 'changed' end
for k = 7, #KEYS, 6 do
  local job_id = redis.call('HGET', KEYS[k], 'job_id')
  if job_id then
    redis.call('ZREM', KEYS[5], job_id)
    redis.call('ZREM', KEYS[6], job_id)
  end
  redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 5])
  redis.call('SET', KEYS[k + 4], '1', 'EX', ARGV[3])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return 'ok'
"""
