"""The archive's settings: off unless its URL is set, and a malformed one refused at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys

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


# A child interpreter in which the asyncpg driver cannot be found, as in an install without
# the `archive` extra; it runs the archive's migrate command.
_WITHOUT_ASYNCPG = """
import sys

class Without:
    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "asyncpg":
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                return spec
        return None

sys.meta_path[:] = [Without(list(sys.meta_path))]
from jobhub.client.cli import main
main(["archive", "migrate"])
"""


def test_an_archive_whose_driver_is_not_installed_names_the_extra() -> None:
    env = {**os.environ, "JOBHUB_ARCHIVE_URL": "postgresql+asyncpg://jobhub@127.0.0.1:1/jobhub"}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ASYNCPG], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "needs the asyncpg driver" in done.stderr
    assert "pip install 'jobhub[archive]'" in done.stderr
    assert "Traceback" not in done.stderr
