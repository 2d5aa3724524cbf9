"""One SQL database shared by every state adapter (registry, queues, schedules...).

:class:`Database` owns the SQLAlchemy engine and the transaction discipline; the
adapters in :mod:`faasbox.stores` each define their tables and take a ``Database``, so
that a change spanning two of them (acknowledge a message and record its effect) can
be one transaction through :meth:`Database.write`.

On SQLite (the default) the database runs in WAL mode and writes begin ``IMMEDIATE``:
two writers never both read and then try to upgrade their lock (which fails with
"database is locked"), and readers never block writers.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


class Database:
    """An engine plus ``write()`` / ``read()`` transactions. Thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._local = threading.local()
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if self.sqlite:
            sa.event.listen(self.engine, "connect", self._on_connect)
            sa.event.listen(self.engine, "begin", self._on_begin)
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[Any, dict[str, Any]]] = {}
        self._closed = False

    # SQLite: let SQLAlchemy own transactions, and begin writes IMMEDIATE.
    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    def _on_begin(self, conn: Connection) -> None:
        mode = "IMMEDIATE" if getattr(self._local, "write", False) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    def create(self, metadata: sa.MetaData) -> None:
        """Create the tables of ``metadata`` that do not exist yet."""
        metadata.create_all(self.engine)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises.
        Nested use on one thread is not supported (pass the connection down instead)."""
        self._local.write = True
        try:
            with self.engine.begin() as conn:
                yield conn
        finally:
            self._local.write = False

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (a deferred transaction on SQLite)."""
        with self.engine.connect() as conn:
            yield conn

    def executemany(self, conn: Connection, statement: Any, rows: list[dict[str, Any]]
                    ) -> None:
        """Run ``statement`` once per row (dicts of its parameters) as one DBAPI
        ``executemany``, without SQLAlchemy's per-row parameter processing: for the hot
        bulk writes (queue messages), where that processing cost more than SQLite's own
        work. The values must be plain (numbers, text, bytes, None): no type
        conversion happens."""
        if not rows:
            return
        keys = tuple(rows[0])
        found = self._compiled.get((id(statement), keys))
        if found is None:
            compiled = statement.compile(dialect=conn.dialect, column_keys=list(keys))
            # Values written into the statement itself (``.values(count=0)``) are
            # parameters too: their defaults fill what the rows do not give.
            found = (compiled, dict(compiled.params))
            self._compiled[(id(statement), keys)] = found
        compiled, defaults = found
        if compiled.positional:
            names = compiled.positiontup or ()
            if all(n in rows[0] for n in names):  # the usual case: one C call per row
                pick = operator.itemgetter(*names)
                params = [pick(row) for row in rows] if len(names) > 1 else [
                    (pick(row),) for row in rows]
            else:
                params = [tuple(row[n] if n in row else defaults[n] for n in names)
                          for row in rows]
            conn.exec_driver_sql(compiled.string, params)
        else:
            conn.exec_driver_sql(compiled.string, [{**defaults, **row} for row in rows])

    def close(self) -> None:
        """Release connections. Idempotent."""
        if not self._closed:
            self._closed = True
            self.engine.dispose()
