"""The Lua of tags, which the snapshot scripts (``snapshots.py`` beside this module) embed:
what a tagged job's snapshot publishes, and what its end does to its tags' indexes.

A tag has an index of its jobs (``jobhub:tagged:<tag>``, written by CREATE, whose caller
sends its key), a change log (``jobhub:tag-changes:<tag>``: each job with the version of its
last change) and a channel. The change log's key, and the indexes' keys when a job ends,
are built in the script from the tags stored with the job: its writer (a worker, the
reconciler) would need a round trip of its own to learn them (the exceptions that
tests/unit/test_lua.py allows). Tags are ``[A-Za-z0-9:._-]``, safe in a key as they are.
"""

from __future__ import annotations

from jobhub.core import keys

__all__ = ["TAG_CHANGES_KEPT", "tags_ended", "tags_published"]

TAG_CHANGES_KEPT = 1000
"""Jobs a tag's change log keeps (those changed last): a stream of the tag that resumes
from further back starts over (jobhub/server/streaming/tagged.py)."""


def tags_published(*, tags: str, ended: str, job_id: str) -> str:
    """Lua that publishes the snapshot ``data`` on each tag's channel as ``<version>
    <JSON>``, the version one higher than any before it for the tag (Redis's clock in µs
    when that is higher), and files the job under it in the tag's change log. ``tags``,
    ``ended`` and ``job_id``: Lua expressions of the tags' JSON fragment, whether the job
    has ended, and its id's JSON fragment."""
    return f"""
if {tags} ~= '[]' then
  local clock = redis.call('TIME')
  local at = clock[1] * 1000000 + clock[2]
  for _, tag in ipairs(cjson.decode({tags})) do
    local changes = '{keys.TAG_CHANGES}' .. tag
    local top = redis.call('ZREVRANGE', changes, 0, 0, 'WITHSCORES')[2]
    local version = string.format('%.0f', math.max(at, (tonumber(top) or 0) + 1))
    redis.call('ZADD', changes, version, {job_id})
    redis.call('ZREMRANGEBYRANK', changes, 0, -{TAG_CHANGES_KEPT + 1})
    -- It lives while a job of the tag has not ended (tags_ended gives it its TTL).
    if not ({ended}) then redis.call('PERSIST', changes) end
    publish('{keys.TAG_UPDATES}' .. tag, version .. ' ' .. data)
  end
end
"""


def tags_ended(*, tags: str, counts: str, ttl: str) -> str:
    """Lua for a job that has just ended (``tags``: a Lua expression of its tags' JSON
    fragment): one fewer unended job per tag (the hash ``counts``), and a tag left with none
    gets its index and change log expire in ``ttl`` seconds, with this job."""
    return f"""
if {tags} and {tags} ~= '[]' then
  for _, tag in ipairs(cjson.decode({tags})) do
    local index = '{keys.TAGGED}' .. tag
    if redis.call('HINCRBY', {counts}, index, -1) <= 0 then
      redis.call('HDEL', {counts}, index)
      redis.call('EXPIRE', index, {ttl})
      redis.call('EXPIRE', '{keys.TAG_CHANGES}' .. tag, {ttl})
    end
  end
end
"""
