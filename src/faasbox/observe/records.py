"""Invocation records, written behind the call without losing one on a crash.

The calling thread appends each finished record to a journal file with one ``write``
(a few microseconds; it survives a SIGKILL of the control plane because it is in the
kernel's page cache at once), then hands it to one writer thread that inserts records
into the state store in group commits. Reads flush the writer first, so a client always
sees its own calls. At start, :meth:`RecordWriter.recover` inserts whatever the journal
holds that the store lacks (a crash between the journal write and the commit), then
empties the journal.

Without this, a synchronous SQL commit per call was 60% of a warm invocation's time.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from pathlib import Path

import orjson

from faasbox.model import InvocationRecord
from faasbox.stores.state import StateStore

log = logging.getLogger(__name__)

#: Empty the journal once everything in it is committed and it is this large.
ROTATE_BYTES = 16 * 1024 * 1024
BATCH = 512
#: Longest wait between retries when the store refuses a batch.
MAX_BACKOFF_S = 2.0
#: The writer gathers records this long before a commit: one short burst of work per
#: window instead of one per call, so it rarely holds the GIL when a reply arrives.
COMMIT_WINDOW_S = 0.02


def _line(record: InvocationRecord, log_file: str, offset: int, length: int) -> bytes:
    data = record.to_dict()
    data.update(log_file=log_file, log_offset=offset, log_length=length)
    return orjson.dumps(data) + b"\n"


def _parse(line: bytes) -> tuple[InvocationRecord, str] | None:
    try:
        data = orjson.loads(line)
        record = InvocationRecord.from_dict(data)
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None  # a line torn by a crash mid-write: its call never returned
    record = replace(record, log_offset=data["log_offset"], log_length=data["log_length"])
    return record, data["log_file"]


class RecordWriter:
    """Durable, batched invocation records. One per platform; thread-safe."""

    def __init__(self, store: StateStore, journal: Path) -> None:
        self._store = store
        self._path = journal
        self._lock = threading.Lock()  # journal appends and the queue
        self._cond = threading.Condition(self._lock)
        self._queue: list[tuple[InvocationRecord, str, int, int]] = []
        self._added = 0
        self._committed = 0
        self._closed = False
        self._error: BaseException | None = None
        self._hurry = threading.Event()  # a reader is waiting: commit without the window
        self.recover()
        self._fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._thread = threading.Thread(target=self._run, name="faasbox-records", daemon=True)
        self._thread.start()

    def recover(self) -> int:
        """Insert journal records missing from the store, then empty the journal.
        Idempotent: a crash during recovery just repeats it. Returns how many."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return 0
        entries = [e for e in (_parse(line) for line in data.splitlines()) if e]
        missing = self._store.missing_records([r.request_id for r, _ in entries])
        todo = [(r, f) for r, f in entries if r.request_id in missing]
        for start in range(0, len(todo), BATCH):
            self._store.add_records(todo[start : start + BATCH])
        os.truncate(self._path, 0)
        return len(todo)

    def add(
        self, record: InvocationRecord, log_file: str = "", offset: int = 0, length: int = 0
    ) -> None:
        """Journal ``record`` (whose log block is ``length`` bytes at ``offset`` of
        ``log_file``) and queue it for the store. Returns once it is crash-safe."""
        line = _line(record, log_file, offset, length)
        with self._cond:
            if self._closed:
                raise RuntimeError("record writer is closed")
            os.write(self._fd, line)
            self._size += len(line)
            self._queue.append((record, log_file, offset, length))
            self._added += 1
            if len(self._queue) == 1:
                self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record added so far is committed to the store."""
        with self._cond:
            target = self._added
            if self._committed >= target:
                return
            self._hurry.set()
            self._cond.wait_for(
                lambda: self._committed >= target or self._error is not None or self._closed,
                timeout=timeout_s,
            )

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if not self._queue and self._closed:
                    return
            if backoff:
                self._hurry.wait(backoff)  # the store failed: retry, closing or not
            elif not self._closed:
                self._hurry.wait(COMMIT_WINDOW_S)
            self._hurry.clear()
            with self._cond:
                batch = self._queue[:BATCH]
            try:
                self._store.add_records(
                    [(replace(r, log_offset=o, log_length=n), f) for r, f, o, n in batch]
                )
            except Exception as exc:  # the journal keeps them: retry, recover() at worst
                log.warning("invocation records not committed yet (%s); retrying", exc)
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                    if self._closed and backoff >= MAX_BACKOFF_S:
                        return  # give up at close: the next start recovers them
                backoff = min(MAX_BACKOFF_S, max(0.05, backoff * 2))
                continue
            backoff = 0.0
            with self._cond:
                del self._queue[: len(batch)]
                self._committed += len(batch)
                self._error = None
                # Everything journaled is committed: the journal can start over.
                if self._committed == self._added and self._size > ROTATE_BYTES:
                    os.ftruncate(self._fd, 0)
                    self._size = 0
                self._cond.notify_all()

    def close(self) -> None:
        """Commit what is queued, stop the writer, empty the journal. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._hurry.set()
            self._cond.notify_all()
        self._thread.join(timeout=30)
        with self._cond:
            if self._committed == self._added:
                os.ftruncate(self._fd, 0)
        os.close(self._fd)
