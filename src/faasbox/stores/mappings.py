"""Queue -> function mappings (triggers) in the state database.

One row per mapping in ``event_source_mappings``. Each change is one transaction, so a
mapping is either wholly created, changed or deleted; the pollers that act on them
hold no durable state of their own (the queue holds the messages and their receive
counts), so a restart resumes from the rows alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from faasbox.api.triggers import (
    BATCH_SIZE,
    BATCH_SIZE_MAX,
    BATCH_SIZE_WITHOUT_WINDOW_MAX,
    BATCHING_WINDOW_MAX_S,
    MAX_CONCURRENCY_MAX,
    MAX_CONCURRENCY_MIN,
)
from faasbox.errors import ConflictError, InvalidParameterError, TriggerNotFoundError
from faasbox.model import function_arn, queue_arn
from faasbox.stores.database import Database

metadata = sa.MetaData()

mappings = sa.Table(
    "event_source_mappings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("queue", sa.String(80), nullable=False),
    sa.Column("function", sa.String(64), nullable=False),
    # "" for an unqualified function ($LATEST at each invocation).
    sa.Column("qualifier", sa.String(128), nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("max_batching_window_s", sa.Integer, nullable=False),
    sa.Column("max_concurrency", sa.Integer),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("report_batch_item_failures", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Lambda refuses a second mapping of one queue to one function (and qualifier).
    sa.UniqueConstraint("queue", "function", "qualifier", name="uq_mapping_source_target"),
)


@dataclass(frozen=True)
class Mapping:
    """One mapping's stored settings; ``validate`` before storing."""

    id: str
    queue: str
    function: str
    qualifier: str | None = None
    batch_size: int = BATCH_SIZE
    max_batching_window_s: int = 0
    max_concurrency: int | None = None
    enabled: bool = True
    report_batch_item_failures: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def target(self) -> str:
        """``function`` or ``function:qualifier``, as given at creation."""
        return f"{self.function}:{self.qualifier}" if self.qualifier else self.function

    def validate(self) -> Mapping:
        """Return self, or raise InvalidParameterError naming the bad field."""
        _int_in("batch_size", self.batch_size, 1, BATCH_SIZE_MAX)
        _int_in("max_batching_window_s", self.max_batching_window_s, 0, BATCHING_WINDOW_MAX_S)
        if self.max_concurrency is not None:
            _int_in("max_concurrency", self.max_concurrency, MAX_CONCURRENCY_MIN,
                    MAX_CONCURRENCY_MAX)
        for name in ("enabled", "report_batch_item_failures"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(
                    f"{name}={getattr(self, name)!r} must be true or false"
                )
        if self.batch_size > BATCH_SIZE_WITHOUT_WINDOW_MAX and self.max_batching_window_s < 1:
            raise InvalidParameterError(
                f"batch_size={self.batch_size} is over {BATCH_SIZE_WITHOUT_WINDOW_MAX}: "
                "set max_batching_window_s to at least 1 (as Lambda requires)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "function": self.target,
            "batch_size": self.batch_size,
            "max_batching_window_s": self.max_batching_window_s,
            "max_concurrency": self.max_concurrency,
            "enabled": self.enabled,
            "state": "Enabled" if self.enabled else "Disabled",
            "report_batch_item_failures": self.report_batch_item_failures,
            "event_source_arn": queue_arn(self.queue),
            "function_arn": function_arn(self.function, self.qualifier),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _int_in(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidParameterError(f"{name}={value!r} is out of range {low}-{high}")


class MappingStore:
    """Mappings on a :class:`Database`. Thread-safe; each method is one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database
        database.create(metadata)

    def insert(self, mapping: Mapping) -> Mapping:
        """Store a new mapping (stamped with the time now). Raises ConflictError when
        the queue already maps to the same function and qualifier."""
        now = time.time()
        mapping = replace(mapping, created_at=now, updated_at=now)
        with self._db.write() as conn:
            taken = conn.execute(
                sa.select(mappings.c.id).where(
                    (mappings.c.queue == mapping.queue)
                    & (mappings.c.function == mapping.function)
                    & (mappings.c.qualifier == (mapping.qualifier or ""))
                )
            ).first()
            if taken is not None:
                raise ConflictError(
                    f"queue {mapping.queue} already triggers {mapping.target}: "
                    f"trigger {taken.id}"
                )
            try:
                conn.execute(mappings.insert().values(**_row(mapping)))
            except sa.exc.IntegrityError as exc:  # a concurrent insert won (PostgreSQL)
                raise ConflictError(
                    f"queue {mapping.queue} already triggers {mapping.target}"
                ) from exc
        return mapping

    def get(self, id: str) -> Mapping:
        """Raises TriggerNotFoundError."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(mappings).where(mappings.c.id == id)).first()
        if row is None:
            raise TriggerNotFoundError(id)
        return _mapping(row)

    def list(
        self, queue: str | None = None, function: str | None = None,
        qualifier: str | None = None,
    ) -> list[Mapping]:
        """Mappings by creation time; ``qualifier`` narrows ``function`` to one."""
        query = sa.select(mappings).order_by(mappings.c.created_at, mappings.c.id)
        if queue is not None:
            query = query.where(mappings.c.queue == queue)
        if function is not None:
            query = query.where(mappings.c.function == function)
            if qualifier is not None:
                query = query.where(mappings.c.qualifier == qualifier)
        with self._db.read() as conn:
            rows = conn.execute(query).all()
        return [_mapping(row) for row in rows]

    def update(self, id: str, **changes: Any) -> Mapping:
        """Apply ``changes`` (field values) to the mapping in one transaction, after
        validating the result. Raises TriggerNotFoundError, InvalidParameterError."""
        with self._db.write() as conn:
            row = conn.execute(sa.select(mappings).where(mappings.c.id == id)).first()
            if row is None:
                raise TriggerNotFoundError(id)
            current = _mapping(row)
            changed = replace(current, **changes, updated_at=time.time()).validate()
            if changed == replace(current, updated_at=changed.updated_at):
                return current  # nothing new: keep updated_at as it was
            conn.execute(mappings.update().where(mappings.c.id == id).values(**_row(changed)))
        return changed

    def delete(self, id: str) -> Mapping:
        """Remove the mapping and return it. Raises TriggerNotFoundError."""
        with self._db.write() as conn:
            row = conn.execute(sa.select(mappings).where(mappings.c.id == id)).first()
            if row is None:
                raise TriggerNotFoundError(id)
            conn.execute(mappings.delete().where(mappings.c.id == id))
        return _mapping(row)


def _row(mapping: Mapping) -> dict[str, Any]:
    return {
        "id": mapping.id,
        "queue": mapping.queue,
        "function": mapping.function,
        "qualifier": mapping.qualifier or "",
        "batch_size": mapping.batch_size,
        "max_batching_window_s": mapping.max_batching_window_s,
        "max_concurrency": mapping.max_concurrency,
        "enabled": mapping.enabled,
        "report_batch_item_failures": mapping.report_batch_item_failures,
        "created_at": mapping.created_at,
        "updated_at": mapping.updated_at,
    }


def _mapping(row: Row[Any]) -> Mapping:
    return Mapping(
        id=row.id,
        queue=row.queue,
        function=row.function,
        qualifier=row.qualifier or None,
        batch_size=row.batch_size,
        max_batching_window_s=row.max_batching_window_s,
        max_concurrency=row.max_concurrency,
        enabled=bool(row.enabled),
        report_batch_item_failures=bool(row.report_batch_item_failures),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
