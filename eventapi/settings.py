"""Settings, read once from the environment into a frozen dataclass."""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from eventapi.errors import SettingsError
from eventapi.redis_url import EXPECTED as REDIS_URL_FORMS
from eventapi.redis_url import parse_redis_url, redacted

DEFAULT_PROVIDER_URL = "https://provider.code-challenge.feverup.com/api/events"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Granian raises a smaller listen backlog to this; refusing it says so instead.
MIN_BACKLOG = 128

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything eventapi reads from its environment."""

    provider_url: str = DEFAULT_PROVIDER_URL
    redis_url: str | None = None
    redis_replica_url: str | None = None
    redis_sentinel_password: str | None = None
    redis_prefix: str = "eventapi"
    snapshot_path: str | None = None
    metrics_dir: str | None = None  # None: `eventapi serve` makes a temporary one; in-process, no files
    refresh_interval: float = 60.0
    refresh_lock_ttl: float | None = None  # None: the slowest possible refresh plus a margin
    provider_timeout: float = 10.0
    feed_max_bytes: int = 256 * 1024 * 1024
    timezone: str = "Europe/Madrid"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # Connection floods and overload (docs/decisions/015-overload-and-floods.md): the kernel's accept
    # queue, the connections each worker holds open at once (Granian's "backpressure": one permit per
    # connection, kept until it closes), and how long a client may take to send a request's headers.
    backlog: int = 1024
    max_connections_per_worker: int = 4096
    header_read_timeout: float = 75.0
    log_level: str = "INFO"
    cache_max_age: int = 5
    lru_entries: int = 10_000
    lru_bytes: int = 64 * 1024 * 1024
    day_cache_bytes: int = 64 * 1024 * 1024
    access_log: bool = False
    max_events_per_answer: int = 0  # 0: no cap
    # Redis restarts and failovers take seconds: a worker holding its copy of the data stays ready
    # that long, so one brief outage does not empty the load balancer (docs/deploy.md, "Probes").
    ready_while_store_down_seconds: float = 30.0

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The provider's time zone (validated at load time, so this cannot fail)."""
        return zoneinfo.ZoneInfo(self.timezone)

    def to_environ(self) -> dict[str, str]:
        """The EVENTAPI_* variables that give back these settings (for child processes)."""
        return {
            f"EVENTAPI_{name.upper()}": "" if value is None else str(value)
            for name, value in ((name, getattr(self, name)) for name in self.__dataclass_fields__)
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `EVENTAPI_*` variables; a bad value raises SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def read(
            name: str,
            convert: Callable[[str], T],
            default: T,
            expected: str,
            shown: Callable[[str], str] = str,
        ) -> T:
            raw = env.get(f"EVENTAPI_{name}")
            if raw is None or raw.strip() == "":
                return default
            try:
                return convert(raw.strip())
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                value = shown(raw)  # a URL's password never reaches the message
                raise SettingsError(f"EVENTAPI_{name}={value!r} is invalid: expected {expected}") from None

        return cls(
            provider_url=read("PROVIDER_URL", _http_url, defaults.provider_url, "an http(s):// URL"),
            redis_url=read("REDIS_URL", _redis_url, defaults.redis_url, REDIS_URL_FORMS, redacted),
            redis_replica_url=read(
                "REDIS_REPLICA_URL", _redis_url, defaults.redis_replica_url, REDIS_URL_FORMS, redacted
            ),
            redis_sentinel_password=read(
                "REDIS_SENTINEL_PASSWORD", str, defaults.redis_sentinel_password, "a password"
            ),
            redis_prefix=read(
                "REDIS_PREFIX",
                _key_prefix,
                defaults.redis_prefix,
                "letters, digits, '-', '_' or ':' (no braces)",
            ),
            snapshot_path=read("SNAPSHOT_PATH", str, defaults.snapshot_path, "a file path"),
            metrics_dir=read("METRICS_DIR", _directory, defaults.metrics_dir, "a directory (not a file)"),
            refresh_interval=read(
                "REFRESH_INTERVAL", _positive_float, defaults.refresh_interval, "a number of seconds > 0"
            ),
            refresh_lock_ttl=read(
                "REFRESH_LOCK_TTL", _positive_float, defaults.refresh_lock_ttl, "a number of seconds > 0"
            ),
            provider_timeout=read(
                "PROVIDER_TIMEOUT", _positive_float, defaults.provider_timeout, "a number of seconds > 0"
            ),
            feed_max_bytes=read(
                "FEED_MAX_BYTES", _positive_int, defaults.feed_max_bytes, "a whole number of bytes > 0"
            ),
            timezone=read("TIMEZONE", _timezone, defaults.timezone, "an IANA zone such as Europe/Madrid"),
            host=read("HOST", str, defaults.host, "an address to bind, such as 127.0.0.1 or 0.0.0.0"),
            port=read("PORT", _port, defaults.port, "a port number 1-65535"),
            workers=read("WORKERS", _positive_int, defaults.workers, "a whole number >= 1"),
            backlog=read(
                "BACKLOG", _backlog, defaults.backlog, f"a whole number of connections >= {MIN_BACKLOG}"
            ),
            max_connections_per_worker=read(
                "MAX_CONNECTIONS_PER_WORKER",
                _positive_int,
                defaults.max_connections_per_worker,
                "a whole number of connections >= 1",
            ),
            header_read_timeout=read(
                "HEADER_READ_TIMEOUT",
                _milliseconds_or_more,
                defaults.header_read_timeout,
                "a number of seconds >= 0.001",
            ),
            log_level=read("LOG_LEVEL", _log_level, defaults.log_level, "one of " + ", ".join(LOG_LEVELS)),
            cache_max_age=read(
                "CACHE_MAX_AGE", _non_negative_int, defaults.cache_max_age, "a whole number of seconds >= 0"
            ),
            lru_entries=read("LRU_ENTRIES", _positive_int, defaults.lru_entries, "a whole number >= 1"),
            lru_bytes=read("LRU_BYTES", _positive_int, defaults.lru_bytes, "a whole number of bytes >= 1"),
            access_log=read("ACCESS_LOG", _flag, defaults.access_log, "1/true/yes/on or 0/false/no/off"),
            max_events_per_answer=read(
                "MAX_EVENTS_PER_ANSWER",
                _non_negative_int,
                defaults.max_events_per_answer,
                "a whole number of events >= 0 (0: no cap)",
            ),
            day_cache_bytes=read(
                "DAY_CACHE_BYTES", _non_negative_int, defaults.day_cache_bytes, "a whole number of bytes >= 0"
            ),
            ready_while_store_down_seconds=read(
                "READY_WHILE_STORE_DOWN_SECONDS",
                _non_negative_float,
                defaults.ready_while_store_down_seconds,
                "a number of seconds >= 0",
            ),
        )


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not 0 < value < float("inf"):  # also refuses nan
        raise ValueError(raw)
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not 0 <= value < float("inf"):  # also refuses nan
        raise ValueError(raw)
    return value


def _milliseconds_or_more(raw: str) -> float:
    # Granian takes the header timeout in whole milliseconds: less than one would be no timeout at all.
    value = float(raw)
    if not 0.001 <= value < float("inf"):
        raise ValueError(raw)
    return value


def _backlog(raw: str) -> int:
    value = int(raw)
    if value < MIN_BACKLOG:
        raise ValueError(raw)
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(raw)
    return value


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError(raw)
    return value


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")) or len(raw) < 10:
        raise ValueError(raw)
    return raw


def _redis_url(raw: str) -> str:
    parse_redis_url(raw)  # the store parses it again when it connects; here only the form is checked
    return raw


def _key_prefix(raw: str) -> str:
    # The prefix becomes the Redis Cluster hash tag `{prefix}`: braces inside would break it.
    if not raw.replace("-", "").replace("_", "").replace(":", "").isalnum():
        raise ValueError(raw)
    return raw


def _directory(raw: str) -> str:
    if os.path.exists(raw) and not os.path.isdir(raw):
        raise ValueError(raw)
    return raw


def _timezone(raw: str) -> str:
    zoneinfo.ZoneInfo(raw)
    return raw


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ValueError(raw)
    return level
