"""The SQL state store: atomic writes, publish semantics, alias checks, records."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from faasbox.errors import (
    AliasNotFoundError,
    ConflictError,
    FunctionNotFoundError,
    VersionNotFoundError,
)
from faasbox.model import (
    LATEST,
    Alias,
    FunctionConfig,
    FunctionVersion,
    InvocationRecord,
    Status,
)
from faasbox.stores.sql import SqlStateStore


@pytest.fixture
def store(tmp_path: Path):
    s = SqlStateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def latest(name: str = "f", code: str = "a", memory: int = 128) -> FunctionVersion:
    return FunctionVersion(
        name, LATEST, code * 64, None, FunctionConfig("app.handler", memory), time.time()
    )


def test_put_latest_creates_then_updates(store: SqlStateStore) -> None:
    store.put_latest(latest(code="a"))
    store.put_latest(latest(code="b"))
    assert store.get_version("f", LATEST).code_sha256 == "b" * 64
    assert [v.function for v in store.list_latest()] == ["f"]


def test_create_flag_refuses_existing_and_missing(store: SqlStateStore) -> None:
    store.put_latest(latest(), create=True)
    with pytest.raises(ConflictError):
        store.put_latest(latest(), create=True)
    with pytest.raises(FunctionNotFoundError):
        store.put_latest(latest("g"), create=False)


def test_publish_numbers_versions_and_reuses_unchanged(store: SqlStateStore) -> None:
    store.put_latest(latest(code="a"))
    v1 = store.publish("f")
    again = store.publish("f")
    store.put_latest(latest(code="b"))
    v2 = store.publish("f")
    assert (v1.version, again.version, v2.version) == ("1", "1", "2")
    assert store.get_version("f", "1").code_sha256 == "a" * 64
    assert [v.version for v in store.list_versions("f")] == ["1", "2"]


def test_published_version_is_immutable(store: SqlStateStore) -> None:
    store.put_latest(latest(memory=128))
    store.publish("f")
    store.put_latest(latest(memory=512))
    assert store.get_version("f", "1").config.memory_mb == 128


def test_missing_lookups_say_which(store: SqlStateStore) -> None:
    with pytest.raises(FunctionNotFoundError, match="Function not found: nope"):
        store.get_version("nope", LATEST)
    store.put_latest(latest())
    with pytest.raises(VersionNotFoundError, match="f:7"):
        store.get_version("f", "7")
    with pytest.raises(AliasNotFoundError, match="f:live"):
        store.get_alias("f", "live")


def test_alias_to_missing_version_is_refused_and_changes_nothing(store: SqlStateStore) -> None:
    store.put_latest(latest())
    store.publish("f")
    store.put_alias(Alias("f", "live", "1"))
    with pytest.raises(VersionNotFoundError):
        store.put_alias(Alias("f", "live", "1", "9", 0.5))
    assert store.get_alias("f", "live") == Alias("f", "live", "1", None, 0.0)


def test_delete_function_removes_versions_and_aliases(store: SqlStateStore) -> None:
    store.put_latest(latest())
    store.publish("f")
    store.put_alias(Alias("f", "live", "1"))
    store.delete_function("f")
    with pytest.raises(FunctionNotFoundError):
        store.list_versions("f")
    store.put_latest(latest())
    assert store.list_aliases("f") == []
    assert store.publish("f").version == "1"


def test_concurrent_publishes_never_collide(store: SqlStateStore) -> None:
    store.put_latest(latest())
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            store.put_latest(latest(memory=128 + i))
            store.publish("f")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    numbers = [int(v.version) for v in store.list_versions("f")]
    assert numbers == list(range(1, len(numbers) + 1))
    # every published version is whole: its config is one of the written ones
    assert all(128 <= v.config.memory_mb < 136 for v in store.list_versions("f"))


def test_records_round_trip_newest_first(store: SqlStateStore) -> None:
    store.add_records([
        (
            InvocationRecord(
                request_id=f"r{i}", function="f", version=LATEST, qualifier=LATEST,
                status=Status.SUCCESS, started_at=100.0 + i, duration_ms=1.5,
                billed_duration_ms=2, memory_size_mb=128, max_memory_used_mb=20,
                log_offset=10 * i, log_length=10,
            ),
            "f.log",
        )
        for i in range(3)
    ])
    assert store.missing_records(["r1", "r9"]) == {"r9"}
    rows = store.records("f")
    assert [r.request_id for r, _ in rows] == ["r2", "r1", "r0"]
    assert rows[0][0].log_offset == 20 and rows[0][1] == "f.log"
    assert [r.request_id for r, _ in store.records("f", since=100.5)] == ["r2", "r1"]
    assert store.records(request_id="r1")[0][0].status is Status.SUCCESS
