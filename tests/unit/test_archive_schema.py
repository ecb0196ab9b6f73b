"""The archive's tables as ``schema.py`` declares them are what the migrations create, and
migrating is safe to repeat (every deploy runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from jobhub.archive import METADATA, ArchiveNotMigrated, check_schema, head_revision, migrate
from jobhub.archive.database import open_engine


async def test_the_migrations_create_the_declared_schema(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}")
    try:
        assert await migrate(engine) == head_revision()

        def differences(connection: Connection) -> list[object]:
            return list(compare_metadata(MigrationContext.configure(connection), METADATA))

        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_migrate_is_idempotent_and_the_check_refuses_an_unmigrated_database(
    tmp_path: Path,
) -> None:
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}")
    try:
        with pytest.raises(ArchiveNotMigrated, match="jobhub archive migrate"):
            await check_schema(engine)
        first = await migrate(engine)
        assert await migrate(engine) == first
        await check_schema(engine)
    finally:
        await engine.dispose()
