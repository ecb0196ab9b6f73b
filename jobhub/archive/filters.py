"""The archive's filters: a query string read into a ``Filter``, strictly, and a ``Filter``
made into SQL that reads the same on PostgreSQL and SQLite.

    found = parse_filter({"function": "reports.build", "status": "failed", "arg.user": "42"})
    statement = select(jobs).where(*conditions(found, jobs, dialect="sqlite"))

``arg.<path>=<value>`` looks into a job's arguments: the path's first part is a keyword
argument's name, or a positional argument's index (``arg.0``); the parts after it walk into
that value (``arg.options.format=csv``), at most ``MAX_PATH_DEPTH`` of them. The value is
read as JSON where it is JSON (``42`` is the number, ``"42"`` the string, ``true``, ``null``),
else as a string (``arg.format=csv``), and compared as JSON: the number 42 is not "42".
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import msgspec
from sqlalchemy import ColumnElement, Table, Text, and_, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from jobhub.core.exceptions import InvalidRequest
from jobhub.core.snapshot import Status

__all__ = [
    "ENDED",
    "FILTER_NAMES",
    "MAX_ARG_FILTERS",
    "MAX_PATH_DEPTH",
    "ArgFilter",
    "Filter",
    "conditions",
    "parse_filter",
    "parse_time",
]

MAX_PATH_DEPTH = 8
MAX_ARG_FILTERS = 5
MAX_TEXT = 200
FILTER_NAMES = frozenset({"function", "status", "tag", "since", "until", "error"})
ENDED = (Status.FINISHED, Status.FAILED, Status.CANCELED)
"""What the archive holds: jobs that ended."""

_SEGMENT = re.compile(r"[A-Za-z0-9_]{1,64}")
_FUNCTION = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_TAG = re.compile(r"[A-Za-z0-9:._-]{1,64}")
_RELATIVE = re.compile(r"([0-9]{1,6})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)

Scalar = str | int | float | bool | None


class ArgFilter(msgspec.Struct, frozen=True):
    """``arg.<path>=<value>``: ``path[0]`` is a keyword's name or a positional index."""

    path: tuple[str | int, ...]
    value: Scalar


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """Which archived jobs: every field given must match (``None``: any)."""

    function: str | None = None
    status: Status | None = None
    tag: str | None = None
    since: datetime | None = None
    """Ended at or after."""
    until: datetime | None = None
    """Ended before."""
    error: str | None = None
    """A substring of the error's type or detail, any case."""
    args: tuple[ArgFilter, ...] = ()


def parse_filter(
    query: Mapping[str, str], *, also: Iterable[str] = (), now: float | None = None
) -> Filter:
    """The filter a query string asks for; ``InvalidRequest`` for a parameter that is not
    one (``also`` names the endpoint's others, ``cursor``, ``limit``) or a value out of
    shape, so that a typo is an error rather than every job."""
    allowed = FILTER_NAMES | set(also)
    args: list[ArgFilter] = []
    for name, raw in query.items():
        if name.startswith("arg."):
            args.append(_arg_filter(name, raw))
        elif name not in allowed:
            known = ", ".join(sorted(allowed | {"arg.<path>"}))
            raise InvalidRequest(f"unknown query parameter {name[:64]!r}: one of {known}")
    if len(args) > MAX_ARG_FILTERS:
        raise InvalidRequest(f"at most {MAX_ARG_FILTERS} arg.<path> filters")
    status = query.get("status")
    if status is not None and status not in ENDED:
        raise InvalidRequest(
            f"status must be one of {', '.join(ENDED)} (the archive holds ended jobs)"
        )
    since = _time(query, "since", now)
    until = _time(query, "until", now)
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("since must be before until")
    return Filter(
        function=_shaped(query, "function", _FUNCTION),
        status=Status(status) if status is not None else None,
        tag=_shaped(query, "tag", _TAG),
        since=since,
        until=until,
        error=_text(query, "error"),
        args=tuple(args),
    )


def parse_time(raw: str, name: str, now: float | None = None) -> datetime:
    """An ISO 8601 date or time (no offset: UTC), or a span back from now (``90m``, ``7d``)."""
    relative = _RELATIVE.fullmatch(raw)
    if relative is not None:
        seconds = int(relative[1]) * _UNITS[relative[2]]
        moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        return max(moment - timedelta(seconds=seconds), _EARLIEST)
    try:
        if not raw.isascii() or len(raw) > 40:
            raise ValueError
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 time (2026-12-01T08:00:00Z) or a span back from "
            f"now (90m, 7d), got {raw[:64]!r}"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not _EARLIEST <= moment < _LATEST:
        raise InvalidRequest(f"{name} must be between 1970 and 9999")
    return moment


def conditions(found: Filter, jobs: Table, *, dialect: str) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``found`` on the ``jobs`` table, in ``dialect``'s JSON words."""
    c = jobs.c
    where: list[ColumnElement[bool]] = []
    if found.function is not None:
        where.append(c.function == found.function)
    if found.status is not None:
        where.append(c.status == found.status.value)
    if found.since is not None:
        where.append(c.ended_at >= _naive(found.since, dialect))
    if found.until is not None:
        where.append(c.ended_at < _naive(found.until, dialect))
    if found.error is not None:
        where.append(
            # The error as JSON text ({"type": ..., "detail": ...}): one LIKE on both
            # databases, its wildcards escaped so that "50%" means the text "50%".
            func.lower(cast(c.error, Text)).contains(found.error.lower(), autoescape=True)
        )
    if found.tag is not None:
        where.append(_has_tag(jobs, found.tag, dialect))
    for arg in found.args:
        where.append(_arg_matches(jobs, arg, dialect))
    return where


# -- the parts ------------------------------------------------------------------------------


def _arg_filter(name: str, raw: str) -> ArgFilter:
    parts = name.split(".")[1:]
    if not 1 <= len(parts) <= MAX_PATH_DEPTH or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise InvalidRequest(
            f"{name[:100]!r}: arg.<path> is 1 to {MAX_PATH_DEPTH} parts of letters, digits "
            "and '_' joined by '.' (arg.user, arg.0, arg.options.format)"
        )
    if len(raw) > MAX_TEXT:
        raise InvalidRequest(f"{name[:100]!r}: a value of at most {MAX_TEXT} characters")
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        if "out of range" in str(exc):  # a number, too large for any JSON reader
            raise InvalidRequest(f"{name[:100]!r}: a number out of range") from None
        value = raw  # not JSON: the string as given
    if not isinstance(value, str | int | float | bool) and value is not None:
        raise InvalidRequest(
            f"{name[:100]!r}: the value must be a string, number, true, false or null"
        )
    if isinstance(value, str) and "\x00" in value:
        # PostgreSQL's jsonb refuses it (a 503 there, as if the database were down); the
        # archive keeps a job's NUL as U+FFFD, which a filter may ask for.
        raise InvalidRequest(f"{name[:100]!r}: a value without NUL (the archive keeps U+FFFD)")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"{name[:100]!r}: a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise InvalidRequest(f"{name[:100]!r}: a number within ±2^53")
    path = tuple(int(p) if p.isdigit() else p for p in parts)
    return ArgFilter(path, value)


def _shaped(query: Mapping[str, str], name: str, shape: re.Pattern[str]) -> str | None:
    raw = query.get(name)
    if raw is not None and not shape.fullmatch(raw):
        raise InvalidRequest(f"{name} {raw[:64]!r} is not a valid {name}")
    return raw


def _text(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name)
    if raw is not None and not 1 <= len(raw) <= MAX_TEXT:
        raise InvalidRequest(f"{name} must be 1 to {MAX_TEXT} characters")
    if raw is not None and not raw.isprintable():
        raise InvalidRequest(f"{name} must be printable text")
    return raw


def _time(query: Mapping[str, str], name: str, now: float | None) -> datetime | None:
    raw = query.get(name)
    return None if raw is None else parse_time(raw, name, now)


def _naive(moment: datetime, dialect: str) -> datetime:
    # SQLite keeps times as text without an offset; the archive writes them in UTC.
    return moment.replace(tzinfo=None) if dialect == "sqlite" else moment


def _has_tag(jobs: Table, tag: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return cast(jobs.c.tags, JSONB).op("@>")(
            cast(literal(msgspec.json.encode([tag]).decode()), JSONB)
        )
    each = func.json_each(jobs.c.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


def _arg_matches(jobs: Table, arg: ArgFilter, dialect: str) -> ColumnElement[bool]:
    column = jobs.c.args if isinstance(arg.path[0], int) else jobs.c.kwargs
    if dialect == "postgresql":
        found = func.jsonb_extract_path(cast(column, JSONB), *[str(p) for p in arg.path])
        wanted = cast(literal(msgspec.json.encode(arg.value).decode()), JSONB)
        return found == wanted  # jsonb compares as JSON: 1 = 1.0, "1" != 1
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f'."{p}"' for p in arg.path)
    kind = func.json_type(column, path)
    value = func.json_extract(column, path)
    if arg.value is None:
        return kind == "null"
    if isinstance(arg.value, bool):
        return kind == ("true" if arg.value else "false")
    if isinstance(arg.value, int | float):
        return and_(kind.in_(["integer", "real"]), value == arg.value)
    return and_(kind == "text", value == arg.value)
