"""The archive's feed: the step that ends a job also appends it to a stream (``ARCHIVE_FEED``)
that the archiver reads (jobhub/archive), so no ended job can be missed by it, whatever
crashes when.

Spliced into ``WRITE`` where a job becomes terminal (``FEED_MARK``). The feed is
``WRITE``'s last KEY, after the optional worker's set, which then travels as an empty
placeholder. A process set up with the archive (``JOBHUB_ARCHIVE_URL``) feeds every job it
ends, creating the feed if it must; any other process feeds only while the feed exists (an
archiver, or a process set up with the archive, made it): so a worker started without the
setting still feeds the archive, and where there is no archive nothing is fed.

    script = fed(WRITE, feed_max=100_000, always=True)
"""

from __future__ import annotations

__all__ = ["FEED_MARK", "fed"]

FEED_MARK = "-- (the archive's feed is spliced in here: jobhub/store/lua/feed.py)"

# ``fed`` on the job's hash guards against appending one job twice: a job ends once, but a
# write retried after a failover must not feed it again. MAXLEN ~ bounds the feed while the
# archiver is behind (its database down): Redis then drops the oldest entries, which is a
# loss the archiver's metric and warning announce well before (at half).
_FEED_LUA = """
    if ({always} or redis.call('EXISTS', KEYS[12]) == 1)
      and redis.call('HSETNX', KEYS[1], 'fed', '1') == 1 then
      redis.call('XADD', KEYS[12], 'MAXLEN', '~', {maxlen}, '*',
        'job', redis.call('HGET', KEYS[1], 'job_id'))
    end
"""


def fed(script: str, feed_max: int, *, always: bool) -> str:
    """``script`` (``WRITE``) with the feed spliced in, holding at most about ``feed_max``;
    ``always``: feed even where the feed does not exist yet (the archive is set up here)."""
    assert FEED_MARK in script, "WRITE lost the place where the archive's feed goes"
    return script.replace(
        FEED_MARK,
        _FEED_LUA.format(maxlen=int(feed_max), always="true" if always else "false").strip("\n"),
    )
