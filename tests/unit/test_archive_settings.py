"""The archive's settings: off unless its URL is set, and a malformed one refused at start."""

from __future__ import annotations

import re

import pytest

from jobhub.archive.retention import Retention
from jobhub.core.exceptions import ConfigError
from jobhub.core.settings import Settings
from jobhub.core.snapshot import Status


def test_the_archive_is_off_unless_its_url_is_set() -> None:
    assert Settings.from_env({}).archive_url is None
    on = Settings.from_env({"JOBHUB_ARCHIVE_URL": "sqlite+aiosqlite:///a.db",
                            "JOBHUB_ARCHIVE_FEED_MAX": "500"})  # fmt: skip
    assert on.archive_url is not None and on.archive_feed_max == 500


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("JOBHUB_ARCHIVE_URL", "postgresql://db/jobhub", "postgresql+asyncpg://"),
        ("JOBHUB_ARCHIVE_URL", "mysql://db/jobhub", "sqlite+aiosqlite://"),
        ("JOBHUB_ARCHIVE_KEEP_DAYS", "-1", "must be positive"),
        ("JOBHUB_ARCHIVE_KEEP_DAYS_FAILED", "forever", "a number"),
        ("JOBHUB_ARCHIVE_FEED_MAX", "0", "must be positive"),
        ("JOBHUB_ARCHIVE_OUTPUT", "maybe", "true or false"),
    ],
)
def test_a_malformed_archive_setting_is_refused_naming_it(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as refused:
        Settings.from_env({variable: value})
    assert variable in str(refused.value)


def test_retention_per_status_falls_back_to_the_general_days() -> None:
    settings = Settings.from_env(
        {"JOBHUB_ARCHIVE_KEEP_DAYS": "7", "JOBHUB_ARCHIVE_KEEP_DAYS_FAILED": "30"}
    )
    assert Retention.from_settings(settings).keep_days == {
        Status.FINISHED: 7, Status.FAILED: 30, Status.CANCELED: 7,
    }  # fmt: skip
    only_failed = Settings.from_env({"JOBHUB_ARCHIVE_KEEP_DAYS_FAILED": "30"})
    assert Retention.from_settings(only_failed).keep_days == {Status.FAILED: 30}
