"""``jobhub archive``: the archive's schema and its archiver, run from the command line.

    jobhub archive migrate        create or upgrade the schema (JOBHUB_ARCHIVE_URL); idempotent
    jobhub archive run            archive ended jobs until SIGTERM or Ctrl-C
    jobhub archive run --optional the same, or idle if JOBHUB_ARCHIVE_URL is unset (Procfile)

Both read ``JOBHUB_ARCHIVE_URL`` (and the rest of the settings) from the environment. The
archive's modules (SQLAlchemy, Alembic, the drivers) are loaded only when one of these
runs, so the rest of the command stays light.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click

from jobhub.core.exceptions import ConfigError
from jobhub.core.settings import Settings

__all__ = ["archive"]


def _settings(optional: bool = False) -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.archive_url is None and not optional:
        raise click.ClickException(
            "JOBHUB_ARCHIVE_URL is not set: name the archive's database, e.g. "
            "postgresql+asyncpg://user:password@host/jobhub or sqlite+aiosqlite:///archive.db"
        )
    return settings


@click.group()
def archive() -> None:
    """The durable SQL archive of ended jobs (JOBHUB_ARCHIVE_URL)."""


def _unreachable(exc: Exception) -> Exception:
    """A database that cannot be reached or refuses, one line; any other error as it is. A
    refused socket is an ``OSError``; a server that answers ("shutting down", "database ...
    does not exist") comes wrapped by SQLAlchemy (``DBAPIError``), whose text is a page: its
    driver's words say it."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return click.ClickException(f"the archive's database refused: {exc.orig}")
    if isinstance(exc, OSError):
        return click.ClickException(f"cannot reach the archive's database: {exc}")
    return exc


@archive.command()
def migrate() -> None:
    """Create or upgrade the archive's schema; safe to run again (every deploy)."""
    settings = _settings()
    revision = asyncio.run(_migrate(settings))
    click.echo(f"jobhub: the archive is at schema revision {revision}")


async def _migrate(settings: Settings) -> str:
    from jobhub.archive.database import migrate as upgrade
    from jobhub.archive.database import open_engine

    assert settings.archive_url is not None
    engine = open_engine(settings.archive_url)
    try:
        return await upgrade(engine)
    except Exception as exc:
        raise _unreachable(exc) from None
    finally:
        await engine.dispose()


@archive.command()
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Jobs written per transaction.")  # fmt: skip
@click.option("--claim-after", default=30.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0, min_open=True),
              help="Take over what a stopped archiver left pending after this long.")  # fmt: skip
@click.option("--prune-every", default=300.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0, min_open=True),
              help="How often retention (JOBHUB_ARCHIVE_KEEP_DAYS*) runs.")  # fmt: skip
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics here (jobhub_archive_feed_length, ...).")  # fmt: skip
@click.option("--optional", is_flag=True,
              help="Without JOBHUB_ARCHIVE_URL, idle until stopped instead of failing (for "
                   "one Procfile across deployments with and without an archive).")  # fmt: skip
def run(
    batch_size: int, claim_after: float, prune_every: float, metrics_port: int | None,
    optional: bool,
) -> None:  # fmt: skip
    """Archive every job that ends, until SIGTERM or Ctrl-C. Run as many as you like."""
    settings = _settings(optional)
    if settings.archive_url is None:
        click.echo("jobhub: no JOBHUB_ARCHIVE_URL: nothing to archive; idle until stopped")
        asyncio.run(_stopped())
        return
    options = {"batch_size": batch_size, "claim_idle_seconds": claim_after,
               "retention_every_seconds": prune_every}  # fmt: skip
    asyncio.run(_run(settings, options, metrics_port))


async def _stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _run(settings: Settings, options: dict[str, Any], metrics_port: int | None) -> None:
    from prometheus_client import start_http_server
    from redis.asyncio import Redis

    from jobhub.archive.archiver import Archiver, ArchiverOptions
    from jobhub.archive.database import connect
    from jobhub.archive.retention import Retention
    from jobhub.core.logs import configure as configure_logs
    from jobhub.core.metrics import ArchiveMetrics
    from jobhub.store.connections import worker_pool
    from jobhub.store.feed import Feed

    assert settings.archive_url is not None
    try:
        engine = await connect(settings.archive_url)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise _unreachable(exc) from None
    undo_logs = configure_logs(settings.log_format)
    redis = Redis(connection_pool=worker_pool(settings))
    metrics = ArchiveMetrics()
    server = None
    try:
        if metrics_port is not None:
            server, _ = start_http_server(metrics_port, registry=metrics.registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        archiver = Archiver(
            Feed(redis),
            engine,
            ArchiverOptions(
                output=settings.archive_output,
                feed_max=settings.archive_feed_max,
                retention=Retention.from_settings(settings),
                **options,
            ),
            metrics=metrics,
        )
        await archiver.run(stop)
    finally:
        if server is not None:
            server.shutdown()
        await redis.aclose()
        await engine.dispose()
        undo_logs()
