"""Settings: read once from an injectable environment; a bad value names its variable."""

from __future__ import annotations

import pytest

from eventapi.errors import SettingsError
from eventapi.redis_url import SentinelUrl, parse_redis_url
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
        "EVENTAPI_REDIS_REPLICA_URL": "redis+sentinel://s1:26379/events",
        "EVENTAPI_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
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
        "EVENTAPI_BACKLOG": "512",
        "EVENTAPI_MAX_CONNECTIONS_PER_WORKER": "100",
        "EVENTAPI_HEADER_READ_TIMEOUT": "2.5",
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
        redis_prefix="prod-1",
        redis_replica_url="redis+sentinel://s1:26379/events",
        redis_sentinel_password="sentinel-secret",
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
        backlog=512,
        max_connections_per_worker=100,
        header_read_timeout=2.5,
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
        ("EVENTAPI_BACKLOG", "64"),
        ("EVENTAPI_BACKLOG", "lots"),
        ("EVENTAPI_MAX_CONNECTIONS_PER_WORKER", "0"),
        ("EVENTAPI_HEADER_READ_TIMEOUT", "0"),
        ("EVENTAPI_HEADER_READ_TIMEOUT", "0.0004"),
        ("EVENTAPI_HEADER_READ_TIMEOUT", "inf"),
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


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+sentinel://s1:26379/events", SentinelUrl((("s1", 26379),), "events")),
        (
            "redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2:26380,[::1]:26381/events/3",
            SentinelUrl(
                (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381)), "events", 3, None, "p@ss"
            ),
        ),
        (
            "redis+sentinel://app:pw@s1:1/my-master.1",
            SentinelUrl((("s1", 1),), "my-master.1", 0, "app", "pw"),
        ),
        ("redis://:pw@r:6379/2", "redis://:pw@r:6379/2"),  # plain URLs are redis-py's to read
        ("rediss://r:6380/0", "rediss://r:6380/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redis_urls_plain_or_through_sentinel_are_parsed(url: str, parsed: str | SentinelUrl) -> None:
    assert parse_redis_url(url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1/events",  # no port
        "redis+sentinel://s1:26379",  # no service
        "redis+sentinel://s1:26379/",
        "redis+sentinel://s1:26379,/events",  # an empty host
        "redis+sentinel://s1:0/events",
        "redis+sentinel://s1:65536/events",
        "redis+sentinel://s1:26379/events/one",  # db not a number
        "redis+sentinel://s1:26379/events/0/more",
        "redis+sentinel://:@s1:26379/events",  # credentials without a password
        "redis+sentinel://s1:26379/ev ents",
        "sentinel://s1:26379/events",
        "localhost:6379",
    ],
)
def test_bad_redis_url_forms_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_redis_url(url)


@pytest.mark.parametrize("variable", ["EVENTAPI_REDIS_URL", "EVENTAPI_REDIS_REPLICA_URL"])
def test_bad_redis_url_error_names_the_forms_and_hides_the_password(variable: str) -> None:
    """The message goes to logs: it shows the value with its password masked."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: "redis+sentinel://:hunter2@s1/events"})
    message = str(caught.value)
    assert message.startswith(f"{variable}='redis+sentinel://:***@s1/events' is invalid: expected ")
    assert "redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]" in message
    assert "hunter2" not in message
