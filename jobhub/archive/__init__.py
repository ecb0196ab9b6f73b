"""The durable archive: every ended job kept in SQL past Redis's TTL.

A job's terminal write also appends its id to a Redis stream (the feed, in the same atomic
step: ``jobhub/store/lua/feed.py``); the archiver (``jobhub archive run``) reads the feed
with a consumer group and writes each batch of jobs, with their history, to the database in
one transaction. PostgreSQL in production, SQLite embedded; the schema is Alembic's
(``jobhub archive migrate``). It imports only ``core`` and ``store``.
"""

from __future__ import annotations

from jobhub.archive.database import (
    ArchiveNotMigrated,
    check_schema,
    connect,
    head_revision,
    migrate,
    open_engine,
)
from jobhub.archive.schema import JOBS, METADATA, OUTPUT, PROGRESS

__all__ = [
    "JOBS",
    "METADATA",
    "OUTPUT",
    "PROGRESS",
    "ArchiveNotMigrated",
    "check_schema",
    "connect",
    "head_revision",
    "migrate",
    "open_engine",
]
