from __future__ import annotations

import pytest

from jobhub import ConfigError, Settings


def test_defaults_when_environment_is_empty() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.result_ttl_seconds == 24 * 3600


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://db:6380/2",
            "JOBHUB_MAX_BODY_BYTES": "2048",
            "JOBHUB_POLL_DELAY": "0.1",
        }
    )
    assert (settings.redis_url, settings.max_body_bytes, settings.poll_delay_seconds) == (
        "redis://db:6380/2", 2048, 0.1,
    )  # fmt: skip


@pytest.mark.parametrize(
    "env",
    [
        {"JOBHUB_MAX_BODY_BYTES": "lots"},
        {"JOBHUB_MAX_BODY_BYTES": "0"},
        {"JOBHUB_HEARTBEAT": "-1"},
        {"REDIS_URL": "http://example"},
    ],
)
def test_bad_values_say_which_setting(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert next(iter(env)).lower().removeprefix("jobhub_") in str(
        info.value
    ).lower() or "REDIS_URL" in str(info.value)


def test_cors_origins_are_a_list_without_wildcards() -> None:
    settings = Settings.from_env(
        {"JOBHUB_CORS_ORIGINS": "https://a.example, http://b.example:8080/"}
    )
    assert settings.cors_origins == ("https://a.example", "http://b.example:8080")
    for bad in ("*", "a.example", "https://a.example,*"):
        with pytest.raises(ConfigError):
            Settings.from_env({"JOBHUB_CORS_ORIGINS": bad})


def test_log_format_is_text_or_json() -> None:
    assert Settings.from_env({"JOBHUB_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError):
        Settings.from_env({"JOBHUB_LOG_FORMAT": "xml"})
