"""`eventapi export` and `eventapi import` as real processes: backups, restores, the move to Redis."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from eventapi.events import Event, event_id
from eventapi.history_file import Header, encode
from eventapi.refresh.xml_feed import parse
from eventapi.settings import Settings
from eventapi.sim import SimServer
from eventapi.sim.feeds import generate_feed
from eventapi.store import Version
from eventapi.wiring import build_store, opened_store
from tests.support.feeds import MADRID, SampleFeed
from tests.support.redis_server import RedisServer, key_prefix
from tests.support.sample_service import LATEST, SAMPLE_RANGE, serve_the_three_samples
from tests.support.service_process import ServiceProcess, http, run_command
from tests.support.waiting import wait_for

JULY_1 = datetime(2021, 7, 1, 20)
# Hundreds of events over the sample events' weeks: days shared with them, plans that run past midnight.
GENERATED = generate_feed(400, 2, seed=7, first_day=date(2021, 6, 20), days=60)
GENERATED_ONLINE = {event.id for event in parse(GENERATED, MADRID).events if event.online}
# Whole ranges, ranges cutting days at their edges, an offset, a range holding nothing.
QUERIES = [
    "/search",
    SAMPLE_RANGE,
    "/search?starts_at=2021-06-30T21:00:00&ends_at=2021-07-31T21:20:00",
    "/search?starts_at=2021-02-10T19:00:00Z&ends_at=2021-06-30",
    "/search?starts_at=2021-07-10T18:30:00%2B02:00&ends_at=2021-08-05T21:15:00",
    "/events?ends_at=2021-07-31T20:00:00",
    "/search?starts_at=2030-01-01",
]


@dataclass(frozen=True)
class StoreState:
    """What a store holds and serves: its version, its events' id and JSON, its days and their blobs."""

    version: Version
    events: list[tuple[str, bytes]]
    days: list[int]
    day_blobs: list[bytes]


def store_env(kind: str, tmp_path: Path, redis_url: str) -> dict[str, str]:
    """The settings of a new, empty store of this kind: a Redis prefix, or a snapshot file."""
    if kind == "redis":
        return {"EVENTAPI_REDIS_URL": redis_url, "EVENTAPI_REDIS_PREFIX": key_prefix()}
    return {"EVENTAPI_SNAPSHOT_PATH": str(tmp_path / f"events-{key_prefix()}.json")}


def state_of(env: dict[str, str]) -> StoreState:
    async def read() -> StoreState:
        async with opened_store(build_store(Settings.from_env(env))) as store:
            read = await store.read_days(None, None)
            events = sorted((event.id, event.json) for event in await store.stored_events())
            return StoreState(read.version, events, read.days, read.day_blobs)

    return asyncio.run(read())


def fill(env: dict[str, str], *feeds: list[Event]) -> StoreState:
    """Merge the feeds into the store, as refreshes would, and return what it then holds."""

    async def merge() -> None:
        async with opened_store(build_store(Settings.from_env(env))) as store:
            for feed in feeds:
                await store.merge(feed)

    asyncio.run(merge())
    return state_of(env)


def sample_feeds() -> list[list[Event]]:
    """The provider's three sample answers (one event leaves the feed, another changes)."""
    samples = SampleFeed("response_1.xml", "response_2.xml", "response_3_planlist.xml")
    return [asyncio.run(samples.fetch()).events for _ in range(3)]


def event(base: str, title: str = "T", day: int = 0) -> Event:
    start = JULY_1 + timedelta(days=day)
    return Event(event_id(base, "1"), base, "1", title, start, start + timedelta(hours=1), 1.0, 2.0, True)


def export(env: dict[str, str], path: Path) -> None:
    done = run_command(["export", "--output", str(path)], env)
    assert done.returncode == 0, done.stderr


def import_(env: dict[str, str], path: Path, *options: str) -> str:
    done = run_command(["import", str(path), *options], env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("source", "target"), [("embedded", "redis"), ("redis", "embedded")])
def test_export_then_import_into_an_empty_store_gives_the_same_events_and_day_blobs(
    source: str, target: str, tmp_path: Path, redis_url: str
) -> None:
    """A backup restored into a new store holds the same events and serves the same bytes, day by day."""
    source_env, target_env = store_env(source, tmp_path, redis_url), store_env(target, tmp_path, redis_url)
    before = fill(source_env, *sample_feeds())
    export(source_env, tmp_path / "history.jsonl")
    header = orjson.loads((tmp_path / "history.jsonl").read_bytes().split(b"\n")[0])
    assert (header["generation"], header["epoch"], header["events"]) == (
        before.version.generation, before.version.epoch, len(before.events)
    )  # fmt: skip
    assert "3 of 3 events written" in import_(target_env, tmp_path / "history.jsonl")
    after = state_of(target_env)
    assert (after.events, after.days, after.day_blobs) == (before.events, before.days, before.day_blobs)
    assert after.version.generation == 1 and after.version.epoch not in ("", before.version.epoch)


def test_history_moved_from_the_embedded_store_to_redis_serves_byte_identical_answers(
    sim: SimServer, tmp_path: Path, redis_url: str
) -> None:
    """The migration path: `make run`'s history, exported and imported, answers the same with no provider."""
    embedded = {"EVENTAPI_SNAPSHOT_PATH": str(tmp_path / "events.json")}
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_REFRESH_INTERVAL": "0.2", **embedded}
    with ServiceProcess(settings, tmp_path / "embedded.log") as service:
        serve_the_three_samples(service, sim)
        # Then a feed of its own: the three sample events are history the provider no longer lists.
        sim.set_feeds([GENERATED])
        service.wait_until(
            lambda: served_count(service) == 3 + len(GENERATED_ONLINE), "the new feed is served"
        )
        export(embedded, tmp_path / "history.jsonl")  # while it serves: the snapshot is replaced whole
        before = {query: http("GET", service.base_url + query) for query in QUERIES}
    assert [status for status, _ in before.values()] == [200] * len(QUERIES)
    redis = store_env("redis", tmp_path, redis_url)
    import_(redis, tmp_path / "history.jsonl")
    with SimServer() as gone:
        dead_provider = gone.url  # nothing listens there any more
    settings = {"EVENTAPI_PROVIDER_URL": dead_provider, "EVENTAPI_REFRESH_INTERVAL": "0.3", **redis}
    with ServiceProcess(settings, tmp_path / "redis.log") as service:
        service.wait_until(lambda: service.get("/status")[1]["refresh"]["last_error"], "a refresh fails")
        after = {query: http("GET", service.base_url + query) for query in QUERIES}
    assert after == before
    titles = {e["title"] for e in orjson.loads(after["/search"][1])["data"]["events"]}
    assert set(LATEST) <= titles  # the events that had left the feed came along


def served_count(service: ServiceProcess) -> int:
    status, body = service.get("/search")
    return len(body["data"]["events"]) if status == 200 else -1


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_import_keeps_newer_values_by_default_replace_makes_the_file_win_and_twice_is_a_no_op(
    kind: str, tmp_path: Path, redis_url: str
) -> None:
    """The store is taken as at least as fresh as a backup, unless told otherwise; imports are idempotent."""
    backup_env, env = store_env(kind, tmp_path, redis_url), store_env(kind, tmp_path, redis_url)
    fill(backup_env, [event("a", "old"), event("b", "only in the backup")])
    export(backup_env, tmp_path / "history.jsonl")
    filled = fill(env, [event("a", "newer"), event("c", "only in the store", day=3)])

    assert "1 of 2 events written" in import_(env, tmp_path / "history.jsonl")
    merged = state_of(env)
    assert titles(merged) == {"a": "newer", "b": "only in the backup", "c": "only in the store"}
    assert merged.version.generation == filled.version.generation + 1
    assert "0 of 2 events written" in import_(env, tmp_path / "history.jsonl")
    assert state_of(env) == merged

    assert "1 of 2 events written" in import_(env, tmp_path / "history.jsonl", "--replace")
    replaced = state_of(env)
    assert titles(replaced) == {"a": "old", "b": "only in the backup", "c": "only in the store"}
    assert replaced.version.generation == merged.version.generation + 1
    assert "0 of 2 events written" in import_(env, tmp_path / "history.jsonl", "--replace")
    assert state_of(env) == replaced


def titles(state: StoreState) -> dict[str, str]:
    by_id = {event_id(base, "1"): base for base in "abc"}
    return {by_id[event_id_]: orjson.loads(raw)["title"] for event_id_, raw in state.events}


def break_line(lines: list[bytes], number: int, edit: str) -> None:
    """Spoil line `number` (1 is the header) of an exported file in one of a few ways."""
    fields = orjson.loads(lines[number - 1])
    if edit == "not json":
        lines[number - 1] = lines[number - 1][:30]
        return
    if edit == "format version":
        fields["version"] = 99
    elif edit == "missing field":
        del fields["event"]["start_time"]
    elif edit == "id mismatch":
        fields["id"] = event_id("someone else", "1")
    elif edit == "bad date":
        fields["event"]["start_date"] = "2021-13-01"
    lines[number - 1] = orjson.dumps(fields)


@pytest.mark.parametrize(
    ("kind", "edit", "line"),
    [
        ("redis", "not json", 3),
        ("redis", "format version", 1),
        ("redis", "missing field", 2),
        ("redis", "id mismatch", 3),
        ("redis", "bad date", 3),
        ("redis", "cut short", 1),
        ("embedded", "bad date", 3),
    ],
)
def test_a_file_with_a_bad_line_is_refused_whole_and_nothing_is_written(
    kind: str, edit: str, line: int, tmp_path: Path, redis_url: str
) -> None:
    """Earlier good lines are not written either: an import is one transaction, the bad line named."""
    backup_env, env = store_env(kind, tmp_path, redis_url), store_env(kind, tmp_path, redis_url)
    fill(backup_env, [event("a", "from the backup"), event("b", day=1)])
    export(backup_env, tmp_path / "history.jsonl")
    lines = (tmp_path / "history.jsonl").read_bytes().splitlines()
    if edit == "cut short":
        lines = lines[:-1]  # a backup whose copy stopped early: the header's count says so
    else:
        break_line(lines, line, edit)
    (tmp_path / "history.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    filled = fill(env, [event("c", day=2)])
    snapshot = Path(env["EVENTAPI_SNAPSHOT_PATH"]).read_bytes() if kind == "embedded" else None

    for options in ([], ["--replace"]):
        done = run_command(["import", str(tmp_path / "history.jsonl"), *options], env)
        assert done.returncode == 1 and done.stdout == ""
        assert f"history.jsonl: line {line}: " in done.stderr and "nothing written" in done.stderr
        assert state_of(env) == filled
    if snapshot is not None:
        assert Path(env["EVENTAPI_SNAPSHOT_PATH"]).read_bytes() == snapshot


def test_export_of_an_empty_store_is_the_header_alone(tmp_path: Path, redis_url: str) -> None:
    """A new store's backup is one line, and importing it writes nothing (generation stays 0)."""
    env = store_env("redis", tmp_path, redis_url)
    done = run_command(["export"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "export: 0 events of generation 0" in done.stderr
    header = orjson.loads(done.stdout)
    assert (header["format"], header["version"], header["generation"], header["events"]) == (
        "eventapi-history", 1, 0, 0
    )  # fmt: skip
    restored = run_command(["import", "-"], store_env("redis", tmp_path, redis_url), stdin=done.stdout)
    assert restored.returncode == 0 and "0 of 0 events written" in restored.stdout
    assert "generation 0" in restored.stdout


def test_export_piped_into_import_moves_the_history(tmp_path: Path, redis_url: str) -> None:
    """`eventapi export | eventapi import -` moves a history without a file in between."""
    source, target = store_env("redis", tmp_path, redis_url), store_env("redis", tmp_path, redis_url)
    before = fill(source, [event("a"), event("b", day=5)])
    exported = run_command(["export"], source)
    restored = run_command(["import", "-"], target, stdin=exported.stdout)
    assert restored.returncode == 0, restored.stderr
    assert state_of(target).day_blobs == before.day_blobs


@pytest.mark.parametrize("command", [["export"], ["import", "history.jsonl"]])
def test_the_embedded_store_without_a_snapshot_file_is_refused(command: list[str], tmp_path: Path) -> None:
    """Without EVENTAPI_SNAPSHOT_PATH the embedded store's history lives in no file a command could reach."""
    (tmp_path / "history.jsonl").write_text('{"format":"eventapi-history","version":1}\n')
    done = run_command([command[0], *(str(tmp_path / name) for name in command[1:])], {})
    assert done.returncode == 2 and "set EVENTAPI_SNAPSHOT_PATH" in done.stderr


def test_export_of_a_snapshot_path_with_no_file_is_refused(tmp_path: Path) -> None:
    """A mistyped snapshot path must not give an empty backup that looks fine."""
    done = run_command(["export"], {"EVENTAPI_SNAPSHOT_PATH": str(tmp_path / "typo.json")})
    assert done.returncode == 2 and "no such file" in done.stderr


@pytest.mark.parametrize("command", ["export", "import"])
def test_an_unreachable_redis_fails_the_command_and_leaves_no_file(command: str, tmp_path: Path) -> None:
    """A backup job against a Redis that is down exits 1 with the cause, leaving no file that looks fine."""
    backup = tmp_path / "history.jsonl"
    if command == "import":
        backup.write_bytes(next(encode(Header(Version(0, ""), "", 0), [])))
    with SimServer() as gone:
        closed_port = gone.url.split(":")[2].split("/")[0]
    env = {"EVENTAPI_REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"}
    done = run_command([command, "--output" if command == "export" else "--", str(backup)], env)
    assert done.returncode == 1 and "redis unavailable" in done.stderr
    assert [path.name for path in tmp_path.iterdir()] == (["history.jsonl"] if command == "import" else [])


def test_an_rdb_snapshot_restores_into_an_appendonly_redis_only_through_one_start_without_it(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """docs/backup.md's procedure: with `appendonly yes` Redis ignores dump.rdb and starts empty."""
    source = redis_server_factory()
    env = {"EVENTAPI_REDIS_URL": source.url, "EVENTAPI_REDIS_PREFIX": key_prefix()}
    backed_up = fill(env, [event("a"), event("b", day=1)])
    with redis.Redis.from_url(source.url) as client:
        client.save()
    dump = (source.data_dir / "dump.rdb").read_bytes()

    aof = redis_server_factory("--appendonly", "yes")
    aof.stop()
    shutil.rmtree(aof.data_dir / "appendonlydir")
    (aof.data_dir / "dump.rdb").write_bytes(dump)
    aof.start()
    assert state_of(env | {"EVENTAPI_REDIS_URL": aof.url}).events == []  # the trap

    aof.stop()
    shutil.rmtree(aof.data_dir / "appendonlydir")
    loader = redis_server_factory("--dir", str(aof.data_dir))  # appendonly no: it loads dump.rdb
    with redis.Redis.from_url(loader.url) as client:
        client.config_set("appendonly", "yes")
        asyncio.run(wait_for(lambda: aof_written(client), "the append-only file written from memory"))
    loader.stop()
    aof.start()
    assert state_of(env | {"EVENTAPI_REDIS_URL": aof.url}) == backed_up


def aof_written(client: redis.Redis) -> bool:
    persistence = client.info("persistence")
    return bool(persistence["aof_enabled"] and not persistence["aof_rewrite_in_progress"]
                and not persistence["aof_rewrite_scheduled"])  # fmt: skip
