"""Log lines about a job carry its id, as text or as JSON."""

from __future__ import annotations

import io
import json
import logging

from jobhub.core.logs import configure, job


def test_json_lines_carry_the_job_id() -> None:
    stream = io.StringIO()
    undo = configure("json", stream)
    try:
        logging.getLogger("jobhub.recovery").warning("job %s recovered", "j1", extra=job("j1"))
        logging.getLogger("jobhub.hub").warning("connection lost")
    finally:
        undo()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["job_id"] == "j1" and first["level"] == "WARNING"
    assert first["logger"] == "jobhub.recovery" and first["message"] == "job j1 recovered"
    assert "job_id" not in second


def test_text_lines_carry_the_job_id() -> None:
    stream = io.StringIO()
    undo = configure("text", stream)
    try:
        logging.getLogger("jobhub.web").info("job %s exists", "j2", extra=job("j2"))
    finally:
        undo()
    assert "[job j2] job j2 exists" in stream.getvalue()


def test_every_log_call_about_a_job_passes_its_id() -> None:
    # A log call that names a job in its message must carry it as structured data too.
    import pathlib
    import re

    source = pathlib.Path(__file__).resolve().parents[2] / "jobhub"
    calls = re.findall(
        r"logger\.\w+\(([^()]*(?:\([^()]*\)[^()]*)*)\)",
        "\n".join(p.read_text() for p in source.rglob("*.py")),
    )
    about_a_job = [c for c in calls if "job %s" in c]
    assert about_a_job
    assert all("extra=" in call for call in about_a_job), about_a_job
