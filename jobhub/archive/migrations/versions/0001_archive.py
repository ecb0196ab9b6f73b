"""The archive's first schema: jobs, their progress events and their output."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("function", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("batch", sa.String(255), nullable=True),
        sa.Column("args", sa.JSON, nullable=True),
        sa.Column("kwargs", sa.JSON, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("retry_of", sa.String(255), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("started_at", _WHEN, nullable=True),
        sa.Column("ended_at", _WHEN, nullable=False),
        sa.Column("run_seconds", sa.Float, nullable=True),
        sa.Column("queued_seconds", sa.Float, nullable=True),
        sa.Column("archived_at", _WHEN, nullable=False),
    )
    op.create_index("ix_jobs_ended", "jobs", ["ended_at", "id"])
    op.create_index("ix_jobs_function_ended", "jobs", ["function", "ended_at"])
    op.create_index("ix_jobs_status_ended", "jobs", ["status", "ended_at"])
    op.create_table(
        "job_progress_events",
        sa.Column("job_id", sa.String(255), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
    )
    op.create_table(
        "job_output",
        sa.Column("job_id", sa.String(255), primary_key=True),
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("entry", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_output")
    op.drop_table("job_progress_events")
    op.drop_table("jobs")
