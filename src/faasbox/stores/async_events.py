"""The durable internal queue of async invocations, and their per-function config.

Two tables on the platform's one database:

``async_events``   one row per accepted event until it is finished: the payload, how
                   many times the function ran it (``attempts``) or was throttled
                   (``throttles``), when it is due next, and a lease. A row in state
                   ``invoke`` still has to run; one in state ``deliver`` has run and
                   holds the destination record still to be sent to a queue.
``async_configs``  retries, maximum event age and destinations per function and
                   qualifier ("" = the unqualified function).

Every change is one transaction. A claimed row carries a lease (owner token and expiry);
every later change of that row names the owner, so a worker whose lease expired and
was claimed again changes nothing (at-least-once, never a lost event).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from faasbox.stores.database import Database

metadata = sa.MetaData()

events = sa.Table(
    "async_events",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("function", sa.String(64), nullable=False),
    sa.Column("qualifier", sa.String(128), nullable=False, default=""),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="invoke"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("throttles", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    # The last attempt's response (JSON text), for the destination record.
    sa.Column("last_response", sa.Text),
    # State "deliver": where the record goes ("queue:NAME") and the record itself.
    sa.Column("destination", sa.String(256)),
    sa.Column("record", sa.LargeBinary),
    sa.Index("ix_async_events_due", "next_attempt_at"),
)

configs = sa.Table(
    "async_configs",
    metadata,
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("max_event_age_s", sa.Integer, nullable=False),
    sa.Column("on_success", sa.String(256)),
    sa.Column("on_failure", sa.String(256)),
    sa.Column("updated_at", sa.Float, nullable=False),
)

INVOKE = "invoke"
DELIVER = "deliver"


@dataclass(frozen=True)
class AsyncEvent:
    """One accepted event, as stored. ``qualifier`` is None for the unqualified function."""

    request_id: str
    function: str
    qualifier: str | None
    payload: bytes
    received_at: float
    next_attempt_at: float
    state: str = INVOKE
    attempts: int = 0
    throttles: int = 0
    lease_owner: str | None = None
    last_response: str | None = None
    destination: str | None = None
    record: bytes | None = None

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "function": self.function,
            "qualifier": self.qualifier or "",
            "payload": self.payload,
            "received_at": self.received_at,
            "state": self.state,
            "attempts": self.attempts,
            "throttles": self.throttles,
            "next_attempt_at": self.next_attempt_at,
            "lease_owner": None,
            "lease_until": None,
            "last_response": self.last_response,
            "destination": self.destination,
            "record": self.record,
        }

    @classmethod
    def from_row(cls, row: Any) -> AsyncEvent:
        return cls(
            request_id=row.request_id,
            function=row.function,
            qualifier=row.qualifier or None,
            payload=bytes(row.payload),
            received_at=row.received_at,
            next_attempt_at=row.next_attempt_at,
            state=row.state,
            attempts=row.attempts,
            throttles=row.throttles,
            lease_owner=row.lease_owner,
            last_response=row.last_response,
            destination=row.destination,
            record=bytes(row.record) if row.record is not None else None,
        )


@dataclass(frozen=True)
class AsyncConfig:
    """How async events of one function (and qualifier) are handled."""

    function: str
    qualifier: str | None
    max_retries: int
    max_event_age_s: int
    on_success: str | None = None
    on_failure: str | None = None


class AsyncEventStore:
    """The two tables above over a :class:`Database`. Thread-safe."""

    def __init__(self, database: Database) -> None:
        self._db = database
        database.create(metadata)

    # -- configs ------------------------------------------------------------------------

    def put_config(self, config: AsyncConfig) -> None:
        """Create or replace the config of (function, qualifier)."""
        key = (configs.c.function == config.function) & (
            configs.c.qualifier == (config.qualifier or "")
        )
        with self._db.write() as conn:
            conn.execute(configs.delete().where(key))
            conn.execute(configs.insert().values(
                function=config.function, qualifier=config.qualifier or "",
                max_retries=config.max_retries, max_event_age_s=config.max_event_age_s,
                on_success=config.on_success, on_failure=config.on_failure,
                updated_at=time.time(),
            ))

    def get_config(self, function: str, qualifier: str | None) -> AsyncConfig | None:
        """The config set for exactly (function, qualifier), or None."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(configs).where(
                (configs.c.function == function) & (configs.c.qualifier == (qualifier or ""))
            )).first()
        if row is None:
            return None
        return AsyncConfig(row.function, row.qualifier or None, row.max_retries,
                           row.max_event_age_s, row.on_success, row.on_failure)

    def delete_config(self, function: str, qualifier: str | None) -> bool:
        """Remove the config of (function, qualifier); False when there was none."""
        with self._db.write() as conn:
            done = conn.execute(configs.delete().where(
                (configs.c.function == function) & (configs.c.qualifier == (qualifier or ""))
            ))
        return bool(done.rowcount)

    # -- events -------------------------------------------------------------------------

    def add(self, event: AsyncEvent) -> None:
        """Store a new event (committed when this returns)."""
        with self._db.write() as conn:
            conn.execute(events.insert().values(**event.row()))

    def get(self, request_id: str) -> AsyncEvent | None:
        with self._db.read() as conn:
            row = conn.execute(sa.select(events).where(events.c.request_id == request_id)).first()
        return AsyncEvent.from_row(row) if row is not None else None

    def count(self) -> int:
        """Events not finished yet (waiting, running or with a record to deliver)."""
        with self._db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())

    def claim(self, now: float, limit: int, lease_s: float) -> list[AsyncEvent]:
        """Lease up to ``limit`` due events (never leased, or whose lease expired), the
        longest-waiting first, in one transaction. Each returned event's ``lease_owner``
        must be given back to ``update``/``finish``."""
        if limit <= 0:
            return []
        owner = uuid.uuid4().hex
        free = events.c.lease_until.is_(None) | (events.c.lease_until <= now)
        with self._db.write() as conn:
            ids = conn.execute(
                sa.select(events.c.request_id)
                .where(free & (events.c.next_attempt_at <= now))
                .order_by(events.c.next_attempt_at)
                .limit(limit)
            ).scalars().all()
            if not ids:
                return []
            conn.execute(
                events.update()
                .where(events.c.request_id.in_(ids) & free)
                .values(lease_owner=owner, lease_until=now + lease_s)
            )
            rows = conn.execute(
                sa.select(events).where(events.c.lease_owner == owner)
                .order_by(events.c.next_attempt_at)
            ).all()
        return [AsyncEvent.from_row(row) for row in rows]

    def next_due(self) -> float | None:
        """When the next event becomes claimable (due, or its lease expires); None when
        there is none."""
        with self._db.read() as conn:
            waiting = conn.execute(
                sa.select(sa.func.min(events.c.next_attempt_at)).where(
                    events.c.lease_until.is_(None)
                )
            ).scalar()
            leased = conn.execute(sa.select(sa.func.min(events.c.lease_until))).scalar()
        times = [t for t in (waiting, leased) if t is not None]
        return min(times) if times else None

    def release_leases(self) -> int:
        """Make every leased event claimable now. Only for a start after a crash, when
        no other control plane can hold those leases (one home, one SQLite file)."""
        with self._db.write() as conn:
            done = conn.execute(
                events.update().where(events.c.lease_owner.is_not(None))
                .values(lease_owner=None, lease_until=None)
            )
        return int(done.rowcount)

    def update(self, event: AsyncEvent, *, keep_lease: bool = False) -> bool:
        """Write ``event``'s new state (attempts, due time, last response, or the record
        to deliver) and release its lease unless ``keep_lease``. False (nothing changed)
        when the lease was lost to another claim."""
        values = event.row()
        del values["request_id"]
        if keep_lease:
            del values["lease_owner"], values["lease_until"]
        with self._db.write() as conn:
            done = conn.execute(events.update().where(self._leased(event)).values(**values))
        return bool(done.rowcount)

    def finish(self, event: AsyncEvent, follow_up: AsyncEvent | None = None) -> bool:
        """Remove the finished event and add ``follow_up`` (an event for a function
        destination) in one transaction: the destination gets it exactly once. False
        (nothing changed) when the lease was lost."""
        with self._db.write() as conn:
            done = conn.execute(events.delete().where(self._leased(event)))
            if not done.rowcount:
                return False
            if follow_up is not None:
                conn.execute(events.insert().values(**follow_up.row()))
        return True

    @staticmethod
    def _leased(event: AsyncEvent) -> Any:
        return (events.c.request_id == event.request_id) & (
            events.c.lease_owner == event.lease_owner
        )
