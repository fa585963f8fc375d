"""The forms EVENTAPI_REDIS_URL takes: a plain Redis URL, or `redis+sentinel://` naming Sentinels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_SCHEME = "redis+sentinel://"
EXPECTED = (
    "a redis://, rediss:// or unix:// URL, or "
    "redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]"
)
_HOST_PORT = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]/@,]+)):(?P<port>[0-9]{1,5})$")
_SERVICE = re.compile(r"^[A-Za-z0-9._-]+$")
_PASSWORD = re.compile(r"^(?P<scheme>[a-z+]+://)(?P<user>[^:@/]*):[^@/]*@")


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """Where the Sentinels listen, the service they watch, and how to log in to its Redis nodes."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # for the Redis nodes; a Sentinel's own is a setting of its own


def parse_redis_url(raw: str) -> str | SentinelUrl:
    """A plain URL unchanged (redis-py reads it), or the parts of a redis+sentinel:// URL; else ValueError."""
    if raw.startswith(PLAIN_SCHEMES):
        return raw
    if not raw.startswith(SENTINEL_SCHEME):
        raise ValueError("unknown scheme")
    rest = raw.removeprefix(SENTINEL_SCHEME)
    authority, _, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if not colon or not secret:
            raise ValueError("credentials must be [user]:password@")
        username, password = unquote(user) or None, unquote(secret)
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    service, _, db = path.partition("/")
    if not _SERVICE.match(service):
        raise ValueError("a service name is required after the hosts")
    if db and not db.isdigit():
        raise ValueError("the database must be a whole number")
    return SentinelUrl(sentinels, service, int(db or 0), username, password)


def _host_port(part: str) -> tuple[str, int]:
    found = _HOST_PORT.match(part)
    if found is None:
        raise ValueError(f"not host:port: {part!r}")
    port = int(found["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return found["ipv6"] or found["host"], port


def redacted(raw: str) -> str:
    """The URL with its password replaced by `***`, fit for error messages and logs."""
    return _PASSWORD.sub(r"\g<scheme>\g<user>:***@", raw)
