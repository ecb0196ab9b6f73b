"""Every Lua script jobhub runs in Redis, and nowhere else is Lua written.

Each script makes one step atomic (a snapshot's write and publish, a claim, a lease). A
script names every key it touches in KEYS, each spelled through jobhub/core/keys.py, with
one exception said where it occurs (the per-minute count of ended jobs, whose key comes
from Redis's clock inside the script): so a reader of the caller sees every key a script
can change, and a key renamed in keys.py is renamed in every script. Channels are not keys.

    snapshots   a job's snapshot: create, write (patches and output), delete, and the
                outbox flushed after a replica has the writes
    queue       guards on the queue's own records of a job that a newer run holds
    workers     heartbeats, offered functions, the reconciler's lease
    batches     a batch's children created at once, its seal and cancel, its reads
    deliveries  webhook claims, attempts and the delivery log
"""

from jobhub.store.lua.batches import BATCH_CREATE, BATCH_DELETE, BATCH_MARK, BATCH_READ
from jobhub.store.lua.deliveries import CLAIM, COUNT_ATTEMPT, RECORD_ATTEMPT
from jobhub.store.lua.queue import NEWER_RUN, RELEASE_MARK
from jobhub.store.lua.snapshots import (
    CREATE,
    DELETE,
    FIELDS,
    FLUSH,
    WRITE,
    create_keys,
    delete_keys,
    write_keys,
)
from jobhub.store.lua.workers import BEAT, LIVE, OFFERED, RENEW_LEASE, beat_keys

__all__ = [
    "BATCH_CREATE",
    "BATCH_DELETE",
    "BATCH_MARK",
    "BATCH_READ",
    "BEAT",
    "CLAIM",
    "COUNT_ATTEMPT",
    "CREATE",
    "DELETE",
    "FIELDS",
    "FLUSH",
    "LIVE",
    "NEWER_RUN",
    "OFFERED",
    "RECORD_ATTEMPT",
    "RELEASE_MARK",
    "RENEW_LEASE",
    "WRITE",
    "beat_keys",
    "create_keys",
    "delete_keys",
    "write_keys",
]
