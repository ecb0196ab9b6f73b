"""Alembic's entry point: jobhub runs migrations on a connection it opened itself
(``jobhub.archive.database.migrate``), handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from jobhub.archive.schema import METADATA

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `jobhub archive migrate`, not the alembic command")
context.configure(connection=connection, target_metadata=METADATA)
with context.begin_transaction():
    context.run_migrations()
