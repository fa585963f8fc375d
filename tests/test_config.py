"""Settings: read once from an injectable environment; a bad value names its variable."""

from __future__ import annotations

import pytest

from eventapi.errors import SettingsError
from eventapi.settings import DEFAULT_PROVIDER_URL, Settings


def test_empty_environment_gives_the_documented_defaults() -> None:
    """With nothing set: the real provider, the embedded store, Madrid time, 127.0.0.1:8000, one worker."""
    settings = Settings.from_env({})
    assert (settings.provider_url, settings.redis_url, settings.timezone) == (
        DEFAULT_PROVIDER_URL,
        None,
        "Europe/Madrid",
    )
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)


def test_every_variable_is_read() -> None:
    """Each EVENTAPI_* variable, set away from its default, reaches its setting; none is left out."""
    environ = {
        "EVENTAPI_PROVIDER_URL": "http://sim:8081/api/events",
        "EVENTAPI_REDIS_URL": "redis://r:6379/0",
        "EVENTAPI_REDIS_REPLICA_URL": "redis://replica:6379/0",
        "EVENTAPI_REDIS_PREFIX": "prod-1",
        "EVENTAPI_SNAPSHOT_PATH": "/data/events.json",
        "EVENTAPI_METRICS_DIR": "/run/eventapi-metrics",
        "EVENTAPI_REFRESH_INTERVAL": "2.5",
        "EVENTAPI_REFRESH_LOCK_TTL": "45",
        "EVENTAPI_PROVIDER_TIMEOUT": "3",
        "EVENTAPI_FEED_MAX_BYTES": "1000",
        "EVENTAPI_TIMEZONE": "UTC",
        "EVENTAPI_HOST": "0.0.0.0",
        "EVENTAPI_PORT": "9000",
        "EVENTAPI_WORKERS": "4",
        "EVENTAPI_LOG_LEVEL": "debug",
        "EVENTAPI_CACHE_MAX_AGE": "0",
        "EVENTAPI_LRU_ENTRIES": "50",
        "EVENTAPI_LRU_BYTES": "4096",
        "EVENTAPI_DAY_CACHE_BYTES": "0",
        "EVENTAPI_ACCESS_LOG": "yes",
        "EVENTAPI_MAX_EVENTS_PER_ANSWER": "5000",
        "EVENTAPI_READY_WHILE_STORE_DOWN_SECONDS": "0",
    }
    assert set(environ) == set(Settings().to_environ())  # one variable per setting, all of them here
    assert Settings.from_env(environ) == Settings(
        provider_url="http://sim:8081/api/events",
        redis_url="redis://r:6379/0",
        redis_replica_url="redis://replica:6379/0",
        redis_prefix="prod-1",
        snapshot_path="/data/events.json",
        metrics_dir="/run/eventapi-metrics",
        refresh_interval=2.5,
        refresh_lock_ttl=45.0,
        provider_timeout=3.0,
        feed_max_bytes=1000,
        timezone="UTC",
        host="0.0.0.0",
        port=9000,
        workers=4,
        log_level="DEBUG",
        cache_max_age=0,
        lru_entries=50,
        lru_bytes=4096,
        day_cache_bytes=0,
        access_log=True,
        max_events_per_answer=5000,
        ready_while_store_down_seconds=0.0,
    )


def test_blank_values_mean_unset() -> None:
    """`EVENTAPI_REDIS_URL=` in a compose file means the embedded store, not an error."""
    assert Settings.from_env({"EVENTAPI_REDIS_URL": "", "EVENTAPI_PORT": "  "}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTAPI_PROVIDER_URL", "ftp://x"),
        ("EVENTAPI_REDIS_URL", "localhost"),
        ("EVENTAPI_REDIS_PREFIX", "{x}"),
        ("EVENTAPI_REFRESH_INTERVAL", "0"),
        ("EVENTAPI_REFRESH_INTERVAL", "nan"),
        ("EVENTAPI_PROVIDER_TIMEOUT", "soon"),
        ("EVENTAPI_FEED_MAX_BYTES", "1.5"),
        ("EVENTAPI_TIMEZONE", "CEST+2"),
        ("EVENTAPI_PORT", "70000"),
        ("EVENTAPI_WORKERS", "-2"),
        ("EVENTAPI_LOG_LEVEL", "chatty"),
        ("EVENTAPI_CACHE_MAX_AGE", "-1"),
        ("EVENTAPI_METRICS_DIR", "/dev/null"),
        ("EVENTAPI_READY_WHILE_STORE_DOWN_SECONDS", "-1"),
        ("EVENTAPI_READY_WHILE_STORE_DOWN_SECONDS", "nan"),
    ],
)
def test_bad_value_raises_one_error_naming_variable_value_and_form(variable: str, value: str) -> None:
    """A misconfigured deployment fails at start-up with one line saying what to fix."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}={value!r} is invalid: expected ") and "\n" not in message
