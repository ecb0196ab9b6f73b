from __future__ import annotations

import re

import msgspec
import pytest

from jobhub.core.snapshot import (
    TERMINAL,
    JobError,
    Snapshot,
    Status,
    decode,
    decode_head,
    encode,
    utcnow,
)


def test_wire_format_field_order_and_one_line() -> None:
    snap = msgspec.structs.replace(
        Snapshot.queued("j", "f"), message="line\nbreak", error=JobError("E", "d")
    )
    data = encode(snap)
    assert b"\n" not in data
    assert list(msgspec.json.decode(data)) == [
        "job_id", "function", "status", "percent", "message", "result", "error",
        "attempt", "start_at", "retry_of", "tags", "seq", "created_at", "updated_at",
        "batch_id", "weight",
    ]  # fmt: skip
    assert decode(data) == snap


def test_head_decodes_only_what_the_fan_out_needs() -> None:
    snap = msgspec.structs.replace(Snapshot.queued("j", "f"), status=Status.FAILED, seq=7)
    head = decode_head(encode(snap))
    assert (head.job_id, head.seq, head.is_terminal) == ("j", 7, True)


def test_terminal_statuses() -> None:
    assert {s.value for s in TERMINAL} == {"finished", "failed", "canceled"}
    assert not Snapshot.queued("j", "f").is_terminal


def test_timestamps_are_utc_with_microseconds_and_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", utcnow())


def test_unencodable_result_raises_type_error() -> None:
    with pytest.raises(TypeError):
        encode(msgspec.structs.replace(Snapshot.queued("j", "f"), result=object()))
