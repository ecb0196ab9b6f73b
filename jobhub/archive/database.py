"""The archive's database: an async SQLAlchemy engine, its migrations and the check at start.

    engine = open_engine("sqlite+aiosqlite:///.jobhub/archive.db")
    await migrate(engine)            # `jobhub archive migrate`: idempotent
    await check_schema(engine)       # the archiver and the web app, at start

PostgreSQL (``postgresql+asyncpg://``) in production, SQLite (``sqlite+aiosqlite://``)
embedded. The migrations ship inside the package (``jobhub/archive/migrations``), so that an
installed wheel can migrate without the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from jobhub.core.exceptions import ConfigError

__all__ = [
    "ArchiveNotMigrated",
    "check_schema",
    "connect",
    "head_revision",
    "migrate",
    "open_engine",
]

MIGRATIONS = Path(__file__).with_name("migrations")


class ArchiveNotMigrated(ConfigError):
    """The database's schema is not the one this jobhub writes: ``jobhub archive migrate``."""


def open_engine(url: str, **options: Any) -> AsyncEngine:
    """An engine for ``url`` (``JOBHUB_ARCHIVE_URL``, checked by ``Settings``); ``options``
    go to ``create_async_engine``."""
    if url.startswith("sqlite"):
        # One writer at a time is SQLite's rule; waiting for the lock (busy_timeout) rather
        # than failing at once lets several archivers and the web app share the file, and WAL
        # lets readers go on while a batch is written.
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pool_pre_ping: a connection that PostgreSQL dropped while it restarted is replaced
    # before use instead of failing the next batch.
    return create_async_engine(url, pool_pre_ping=True, **options)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The schema revision this jobhub writes (the newest migration)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "jobhub/archive/migrations has no revision"
    return head


async def migrate(engine: AsyncEngine) -> str:
    """Bring the database to ``head_revision()`` and return it; a migrated one is left as
    it is, so running it again (from every deploy) is safe."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(_config(connection), "head")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)
    return head_revision()


async def check_schema(engine: AsyncEngine) -> None:
    """Raise ``ArchiveNotMigrated`` unless the database is at ``head_revision()``."""

    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        found = await connection.run_sync(current)
    wanted = head_revision()
    if found != wanted:
        raise ArchiveNotMigrated(
            f"the archive database is at schema revision {found or 'none'}, this jobhub "
            f"needs {wanted}: run `jobhub archive migrate` with the same JOBHUB_ARCHIVE_URL"
        )


async def connect(url: str, **options: Any) -> AsyncEngine:
    """``open_engine`` and ``check_schema`` in one: what a process that reads or writes the
    archive does at start (it refuses to start on an unmigrated database)."""
    engine = open_engine(url, **options)
    try:
        await check_schema(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine
