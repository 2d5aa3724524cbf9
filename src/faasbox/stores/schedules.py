"""The ``schedules`` table: schedules and their run state, on the shared database.

Every change is one transaction. Claiming a tick is a compare-and-set on
``next_run_at``, so two dispatchers (or a dispatcher racing an update) never both fire
one tick.
"""

from __future__ import annotations

import builtins
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from faasbox.api.schedules import INTERRUPTED, RUNNING, Schedule
from faasbox.errors import ConflictError
from faasbox.stores.database import Database

metadata = sa.MetaData()

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("expression", sa.Text, nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("input", sa.Text),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("overlap", sa.String(8), nullable=False),
    sa.Column("start_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("next_run_at", sa.Float, index=True),
    sa.Column("last_run_at", sa.Float),
    sa.Column("last_tick_at", sa.Float),
    sa.Column("last_status", sa.String(16)),
    sa.Column("last_request_id", sa.String(64)),
    sa.Column("last_error", sa.Text),
    sa.Column("run_count", sa.Integer, nullable=False, default=0),
    sa.Column("skipped_count", sa.Integer, nullable=False, default=0),
)

_COLUMNS = tuple(f.name for f in fields(Schedule))


def _schedule(row: RowMapping) -> Schedule:
    return Schedule(**{name: row[name] for name in _COLUMNS})


class ScheduleStore:
    """Schedules in SQL (SQLite or PostgreSQL through :class:`Database`)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        database.create(metadata)

    def insert(self, schedule: Schedule) -> Schedule:
        """Add ``schedule``. Raises ConflictError if its name is taken."""
        with self._db.write() as conn:
            if self._get(conn, schedule.name) is not None:
                raise ConflictError(f"schedule {schedule.name!r} already exists")
            conn.execute(schedules.insert().values(
                {name: getattr(schedule, name) for name in _COLUMNS}
            ))
        return schedule

    def get(self, name: str) -> Schedule | None:
        with self._db.read() as conn:
            return self._get(conn, name)

    @staticmethod
    def _get(conn: Connection, name: str) -> Schedule | None:
        row = conn.execute(
            sa.select(schedules).where(schedules.c.name == name)
        ).mappings().first()
        return _schedule(row) if row is not None else None

    def list(self, prefix: str | None = None) -> list[Schedule]:
        query = sa.select(schedules).order_by(schedules.c.name)
        if prefix:
            query = query.where(
                schedules.c.name.startswith(prefix, autoescape=True)
            )
        with self._db.read() as conn:
            return [_schedule(row) for row in conn.execute(query).mappings()]

    def replace(self, before: Schedule, after: Schedule) -> bool:
        """Write ``after`` over the row if it still reads as ``before`` (its timing and
        run state: a claim or a finished run in between makes this return False, and
        the caller reads again and retries)."""
        current = sa.and_(
            schedules.c.name == before.name,
            _same(schedules.c.next_run_at, before.next_run_at),
            _same(schedules.c.last_run_at, before.last_run_at),
            schedules.c.run_count == before.run_count,
        )
        with self._db.write() as conn:
            done = conn.execute(schedules.update().where(current).values(
                {name: getattr(after, name) for name in _COLUMNS if name != "name"}
            ))
        return done.rowcount == 1

    def delete(self, name: str) -> bool:
        with self._db.write() as conn:
            done = conn.execute(schedules.delete().where(schedules.c.name == name))
        return done.rowcount == 1

    def due(self, now: float) -> builtins.list[Schedule]:
        """Enabled schedules whose next run is at or before ``now``, soonest first."""
        query = sa.select(schedules).where(
            schedules.c.enabled.is_(True), schedules.c.next_run_at <= now
        ).order_by(schedules.c.next_run_at)
        with self._db.read() as conn:
            return [_schedule(row) for row in conn.execute(query).mappings()]

    def soonest(self) -> float | None:
        """The earliest next run of any enabled schedule."""
        query = sa.select(sa.func.min(schedules.c.next_run_at)).where(
            schedules.c.enabled.is_(True)
        )
        with self._db.read() as conn:
            value = conn.execute(query).scalar()
        return float(value) if value is not None else None

    def claim(
        self, name: str, tick: float, following: float | None, *, run_at: float | None,
        finished: bool = False,
    ) -> bool:
        """Take the tick ``tick``: move ``next_run_at`` from it to ``following`` -- only
        if it still is ``tick`` and the schedule is enabled (compare-and-set, so one
        claimer wins). With ``run_at`` the claim starts a run (status Running, counted);
        without, the tick is skipped (counted). ``finished`` disables the schedule (an
        at() with no tick left). Returns whether this call won the tick."""
        values: dict[str, Any] = {"next_run_at": following}
        if finished:
            values["enabled"] = False
        if run_at is not None:
            values.update(
                last_run_at=run_at, last_tick_at=tick, last_status=RUNNING,
                last_request_id=None, last_error=None,
                run_count=schedules.c.run_count + 1,
            )
        else:
            values["skipped_count"] = schedules.c.skipped_count + 1
        with self._db.write() as conn:
            done = conn.execute(schedules.update().where(
                schedules.c.name == name,
                schedules.c.next_run_at == tick,
                schedules.c.enabled.is_(True),
            ).values(values))
        return done.rowcount == 1

    def finish(
        self, name: str, run_at: float, status: str, request_id: str | None,
        error: str | None,
    ) -> bool:
        """Record the end of the run that started at ``run_at`` -- unless a later run
        has started since (its state wins) or the schedule is gone."""
        with self._db.write() as conn:
            done = conn.execute(schedules.update().where(
                schedules.c.name == name, schedules.c.last_run_at == run_at,
            ).values(last_status=status, last_request_id=request_id, last_error=error))
        return done.rowcount == 1

    def interrupt_running(self) -> int:
        """Mark runs left Running by a stopped control plane as Interrupted."""
        with self._db.write() as conn:
            done = conn.execute(schedules.update().where(
                schedules.c.last_status == RUNNING
            ).values(last_status=INTERRUPTED, last_error="the control plane stopped"))
        return done.rowcount


def _same(column: Any, value: float | None) -> Any:
    return column.is_(None) if value is None else column == value
