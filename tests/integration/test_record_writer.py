"""The record writer: group commits, retries when the store fails, recovery."""

from __future__ import annotations

import time
from pathlib import Path

from faasbox.model import InvocationRecord, Status
from faasbox.observe.records import RecordWriter
from faasbox.stores.sql import SqlStateStore


class FailingAtFirst(SqlStateStore):
    """A real SQLite store whose first ``failures`` commits of records fail (as a full
    disk or a locked database would)."""

    def __init__(self, url: str, failures: int) -> None:
        super().__init__(url)
        self.failures = failures

    def add_records(self, records):  # type: ignore[no-untyped-def]
        if self.failures > 0:
            self.failures -= 1
            raise OSError("disk full (injected)")
        super().add_records(records)


def record(i: int) -> InvocationRecord:
    return InvocationRecord(
        request_id=f"r{i}", function="f", version="$LATEST", qualifier="$LATEST",
        status=Status.SUCCESS, started_at=1000.0 + i, duration_ms=1.0, billed_duration_ms=1,
        memory_size_mb=128, max_memory_used_mb=2,
    )


def test_a_failing_store_is_retried_until_every_record_is_in(tmp_path: Path) -> None:
    store = FailingAtFirst(f"sqlite:///{tmp_path / 'state.db'}", failures=3)
    writer = RecordWriter(store, tmp_path / "records.journal")
    try:
        for i in range(5):
            writer.add(record(i), "f.log", 10 * i, 10)
        deadline = time.time() + 15
        while len(store.records("f")) < 5:
            assert time.time() < deadline, "records never committed after the store recovered"
            time.sleep(0.05)
        assert store.failures == 0
        rows = {r.request_id: r for r, _ in store.records("f")}
        assert rows["r3"].log_offset == 30 and rows["r3"].log_length == 10
    finally:
        writer.close()
        store.close()


def test_records_left_in_the_journal_are_recovered_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    broken = FailingAtFirst(url, failures=10_000)  # never commits: only the journal has them
    writer = RecordWriter(broken, tmp_path / "records.journal")
    for i in range(3):
        writer.add(record(i), "f.log", 0, 0)
    writer.close()  # gives up on the store, keeps the journal
    assert (tmp_path / "records.journal").stat().st_size > 0
    broken.close()

    store = SqlStateStore(url)
    writer = RecordWriter(store, tmp_path / "records.journal")
    try:
        assert sorted(r.request_id for r, _ in store.records("f")) == ["r0", "r1", "r2"]
        assert (tmp_path / "records.journal").stat().st_size == 0
    finally:
        writer.close()
        store.close()
