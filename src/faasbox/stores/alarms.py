"""Alarms, their history and their pending actions in the state store.

A change of state, its history row and the actions it calls for (an outbox of events
to deliver) are written in one transaction, conditional on the state and definition
the evaluation saw: two evaluators never both move one alarm, and a crash never leaves
a state change without its actions or history. Delivering an action and deleting it
from the outbox are two steps, so a crash between them delivers it again: actions are
at least once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faasbox.api.alarms import INSUFFICIENT_DATA, AlarmDefinition
from faasbox.stores.database import Database

metadata = sa.MetaData()

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("state_reason", sa.Text, nullable=False),
    sa.Column("state_reason_data", sa.Text, nullable=False, default="{}"),
    sa.Column("state_updated_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

history = sa.Table(
    "alarm_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alarm", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("ix_alarm_history_alarm", "alarm", "id"),
)

outbox = sa.Table(
    "alarm_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alarm", sa.String(64), nullable=False),
    sa.Column("action", sa.String(256), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
)


@dataclass(frozen=True)
class AlarmRow:
    """An alarm as stored: its definition, the revision of it, and its state."""

    definition: AlarmDefinition
    revision: int
    state: str
    state_reason: str
    state_reason_data: dict[str, Any]
    state_updated_at: float
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class PendingAction:
    id: int
    alarm: str
    action: str
    body: str
    attempts: int


class AlarmStore:
    """Alarm rows on the shared database."""

    def __init__(self, database: Database) -> None:
        self.db = database
        database.create(metadata)

    # -- definitions -------------------------------------------------------------------

    def put(self, definition: AlarmDefinition, now: float) -> tuple[AlarmRow, bool]:
        """Insert the alarm (in INSUFFICIENT_DATA) or replace its definition, keeping
        its state; with a ConfigurationUpdate history row. Returns (row, created)."""
        text = json.dumps(definition.to_dict())
        with self.db.write() as conn:
            row = self._row(conn, definition.name)
            created = row is None
            if created:
                conn.execute(alarms.insert().values(
                    name=definition.name, definition=text, revision=1,
                    state=INSUFFICIENT_DATA, state_reason="Unchecked: Initial alarm creation",
                    state_reason_data="{}", state_updated_at=now, created_at=now,
                    updated_at=now))
            else:
                conn.execute(alarms.update().where(alarms.c.name == definition.name).values(
                    definition=text, revision=alarms.c.revision + 1, updated_at=now))
            verb = "created" if created else "updated"
            self._history(conn, definition.name, now, "ConfigurationUpdate",
                          f'Alarm "{definition.name}" {verb}', {"definition": json.loads(text)})
            stored = self._row(conn, definition.name)
        assert stored is not None
        return stored, created

    def get(self, name: str) -> AlarmRow | None:
        with self.db.read() as conn:
            return self._row(conn, name)

    def find(self, prefix: str | None = None, state: str | None = None) -> list[AlarmRow]:
        query = sa.select(alarms).order_by(alarms.c.name)
        if prefix:
            query = query.where(alarms.c.name.startswith(prefix, autoescape=True))
        if state:
            query = query.where(alarms.c.state == state)
        with self.db.read() as conn:
            return [_to_row(r) for r in conn.execute(query).all()]

    def delete(self, name: str) -> bool:
        """Delete the alarm, its history and pending actions; False if none."""
        with self.db.write() as conn:
            gone = conn.execute(alarms.delete().where(alarms.c.name == name)).rowcount
            conn.execute(history.delete().where(history.c.alarm == name))
            conn.execute(outbox.delete().where(outbox.c.alarm == name))
        return bool(gone)

    def history(self, name: str, limit: int) -> list[dict[str, Any]]:
        query = (sa.select(history).where(history.c.alarm == name)
                 .order_by(history.c.id.desc()).limit(limit))
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [{"timestamp": r.timestamp, "type": r.type, "summary": r.summary,
                 "data": json.loads(r.data)} for r in rows]

    # -- state changes and actions -------------------------------------------------------

    def transition(
        self,
        row: AlarmRow,
        new_state: str,
        reason: str,
        reason_data: dict[str, Any],
        now: float,
        actions: list[tuple[str, str]],
    ) -> bool:
        """Move the alarm from ``row.state`` to ``new_state`` if it is still in that
        state at that revision; write the history row and queue ``actions`` ((action,
        event body) pairs) in the same transaction. Returns whether it moved."""
        name = row.definition.name
        with self.db.write() as conn:
            moved = conn.execute(
                alarms.update()
                .where((alarms.c.name == name) & (alarms.c.state == row.state)
                       & (alarms.c.revision == row.revision))
                .values(state=new_state, state_reason=reason,
                        state_reason_data=json.dumps(reason_data), state_updated_at=now)
            ).rowcount
            if not moved:
                return False
            self._history(conn, name, now, "StateUpdate",
                          f"Alarm updated from {row.state} to {new_state}",
                          {"old_state": row.state, "new_state": new_state, "reason": reason,
                           "reason_data": reason_data})
            for action, body in actions:
                conn.execute(outbox.insert().values(alarm=name, action=action, body=body,
                                                    created_at=now, attempts=0))
        return True

    def pending(self, limit: int = 100) -> list[PendingAction]:
        query = sa.select(outbox).order_by(outbox.c.id).limit(limit)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [PendingAction(r.id, r.alarm, r.action, r.body, r.attempts) for r in rows]

    def finish(self, action: PendingAction, summary: str, data: dict[str, Any],
               now: float) -> None:
        """Drop a delivered (or abandoned) action and record it in the history."""
        with self.db.write() as conn:
            gone = conn.execute(outbox.delete().where(outbox.c.id == action.id)).rowcount
            if gone:  # a deleted alarm's actions go without history
                self._history(conn, action.alarm, now, "Action", summary, data)

    def retry_later(self, action: PendingAction) -> None:
        with self.db.write() as conn:
            conn.execute(outbox.update().where(outbox.c.id == action.id)
                         .values(attempts=outbox.c.attempts + 1))

    # -- rows --------------------------------------------------------------------------

    @staticmethod
    def _row(conn: Connection, name: str) -> AlarmRow | None:
        found = conn.execute(sa.select(alarms).where(alarms.c.name == name)).first()
        return None if found is None else _to_row(found)

    @staticmethod
    def _history(conn: Connection, name: str, now: float, kind: str, summary: str,
                 data: dict[str, Any]) -> None:
        conn.execute(history.insert().values(alarm=name, timestamp=now, type=kind,
                                             summary=summary, data=json.dumps(data)))


def _to_row(row: Any) -> AlarmRow:
    return AlarmRow(
        definition=AlarmDefinition.from_dict(json.loads(row.definition)),
        revision=row.revision,
        state=row.state,
        state_reason=row.state_reason,
        state_reason_data=json.loads(row.state_reason_data or "{}"),
        state_updated_at=row.state_updated_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
