"""The change feed of an object store, kept in the adapter's own sqlite3 database.

Shared by :mod:`faasbox.stores.folder` (in ``index.db``, committed in the same
transaction as the index row it announces) and :mod:`faasbox.stores.s3` (in its
journal). Standard library only: sandboxes import the folder adapter under
``python -I -S``.

Every function works on a connection the caller holds; the writing ones (``record``,
``record_many``, ``trim``) run inside the caller's transaction, so a change and the
write it announces commit together or not at all. ``seq`` comes from AUTOINCREMENT, so
it never goes back, even after ``trim`` removed every row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from faasbox.stores.objects import Change

SCHEMA = """
CREATE TABLE IF NOT EXISTS object_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    event TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    time REAL NOT NULL
);
"""

_INSERT = ("INSERT INTO object_events (bucket, key, event, size, etag, time) "
           "VALUES (?, ?, ?, ?, ?, ?)")

#: One change to record: (bucket, key, event, size, etag, time).
Row = tuple[str, str, str, int, str, float]


def create(conn: sqlite3.Connection) -> None:
    """Create the feed's table unless it is there. Idempotent."""
    conn.executescript(SCHEMA)


def record(conn: sqlite3.Connection, bucket: str, key: str, event: str, size: int,
           etag: str, at: float) -> None:
    """Append one change (inside the caller's transaction)."""
    conn.execute(_INSERT, (bucket, key, event, size, etag, at))


def record_many(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Append changes in order (inside the caller's transaction)."""
    conn.executemany(_INSERT, rows)


def changes(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[Change]:
    """Up to ``limit`` changes with ``seq > after_seq``, oldest first."""
    rows = conn.execute(
        "SELECT seq, bucket, key, event, size, etag, time FROM object_events "
        "WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
    return [Change._make(row) for row in rows]


def last_seq(conn: sqlite3.Connection) -> int:
    """The ``seq`` of the newest change ever recorded (0 if none), trimmed or not."""
    row = conn.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'object_events'").fetchone()
    return int(row[0]) if row else 0


def trim(conn: sqlite3.Connection, upto_seq: int) -> None:
    """Forget changes with ``seq <= upto_seq`` (inside the caller's transaction)."""
    conn.execute("DELETE FROM object_events WHERE seq <= ?", (upto_seq,))
