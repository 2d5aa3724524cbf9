"""Queue tables and their transactions, on the shared state database.

One row per message. A message's state is its timestamps, not a status column:
``visible_at <= now`` is visible, ``visible_at > now`` is in flight once received
(``receive_count > 0``) or delayed before that, ``expires_at <= now`` is gone (dropped
lazily). Every receive writes a fresh random ``token``: a receipt handle names
``(seq, token)``, so a handle from an earlier receive no longer matches the row.

Every method is one transaction, so a SIGKILL at any line leaves each message either
before or after the change: a received message whose delete never committed becomes
visible again when its visibility timeout ends. Bulk paths use ``executemany``, never a
query per message. Writes on SQLite begin ``IMMEDIATE`` (see :mod:`.database`), which
serializes claims, so two receivers never get the same message; on PostgreSQL the claim
query locks its rows with ``FOR UPDATE SKIP LOCKED`` instead.

The service (:mod:`faasbox.events.queues`) validates input and builds handles; this
module only reads and writes rows, with times passed in (``now``, epoch seconds).
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faasbox.errors import ConflictError, InvalidParameterError, QueueNotFoundError
from faasbox.stores.database import Database

metadata = sa.MetaData()

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("visibility_timeout_s", sa.Integer, nullable=False),
    sa.Column("retention_s", sa.Integer, nullable=False),
    sa.Column("delay_s", sa.Integer, nullable=False),
    sa.Column("max_message_bytes", sa.Integer, nullable=False),
    sa.Column("receive_wait_s", sa.Integer, nullable=False),
    sa.Column("dead_letter_queue", sa.String(80)),
    sa.Column("max_receive_count", sa.Integer),
)

messages = sa.Table(
    "queue_messages",
    metadata,
    # rowid on SQLite: the cheapest key, and the tie-break of delivery order.
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
        autoincrement=True,
    ),
    sa.Column("queue", sa.String(80), nullable=False),
    sa.Column("message_id", sa.String(36), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("md5", sa.String(32), nullable=False),
    sa.Column("attributes", sa.Text),  # message attributes as JSON, NULL when none
    sa.Column("sent_at", sa.Float, nullable=False),
    sa.Column("visible_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("receive_count", sa.Integer, nullable=False),
    sa.Column("first_received_at", sa.Float),
    sa.Column("token", sa.BigInteger, nullable=False),  # 0: no receive since sent/moved
    sa.Column("source_queue", sa.String(80)),  # set while in a dead-letter queue
    # "next visible messages of queue Q" is a range scan of this index.
    sa.Index("ix_queue_messages_visible", "queue", "visible_at"),
    sa.Index("ix_queue_messages_expires", "expires_at"),
)

#: One row: the key that signs receipt handles, made once per database.
queue_keys = sa.Table(
    "queue_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("secret", sa.LargeBinary, nullable=False),
)

#: Receipt keys per statement; far below every driver's limit on bound parameters.
_CHUNK = 500

# The hot statements, built once: building an expression per call costs more than
# running it on SQLite.
_m = messages.c
_bp = sa.bindparam
_SELECT_QUEUE = sa.select(queues).where(queues.c.name == _bp("name"))
_CLAIM = (
    sa.select(_m.seq, _m.message_id, _m.body, _m.md5, _m.attributes, _m.sent_at,
              _m.expires_at, _m.receive_count, _m.first_received_at)
    .where((_m.queue == _bp("q")) & (_m.visible_at <= _bp("now")))
    .order_by(_m.visible_at, _m.seq)
    .limit(_bp("n"))
)
_INSERT = messages.insert()
_DELIVER = messages.update().where(_m.seq == _bp("s")).values(
    token=_bp("t"), receive_count=_bp("c"), first_received_at=_bp("f"), visible_at=_bp("v"),
)
_DROP = messages.delete().where(_m.seq == _bp("s"))
_MOVE = messages.update().where(_m.seq == _bp("s")).values(
    queue=_bp("dlq"), source_queue=_bp("src"), receive_count=0, token=0,
    first_received_at=None, expires_at=_bp("e"),
)
# ``seq IN`` first: it makes SQLite look rows up by key; the row-value test alone would
# scan the queue's whole index range.
_CURRENT = (
    _m.seq.in_(_bp("seqs", expanding=True)) & (_m.queue == _bp("q"))
    & sa.tuple_(_m.seq, _m.token).in_(_bp("keys", expanding=True))
)
_DELETE_CURRENT = messages.delete().where(_CURRENT).returning(_m.seq, _m.token)
_TOUCH_CURRENT = messages.update().where(_CURRENT).values(visible_at=_bp("v")).returning(
    _m.seq, _m.token
)


@dataclass(frozen=True)
class QueueConfig:
    """A queue's attributes, as stored."""

    name: str
    created_at: float
    visibility_timeout_s: int
    retention_s: int
    delay_s: int
    max_message_bytes: int
    receive_wait_s: int
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def same_attributes(self, other: QueueConfig) -> bool:
        mine, theirs = self.to_dict(), other.to_dict()
        del mine["created_at"], theirs["created_at"]
        return mine == theirs


@dataclass(frozen=True)
class Counts:
    """Approximate counts of one queue's unexpired messages at one instant."""

    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    oldest_sent_at: float | None = None

    def to_dict(self, now: float) -> dict[str, Any]:
        oldest = self.oldest_sent_at
        return {
            "visible": self.visible,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "oldest_age_s": max(0, int(now - oldest)) if oldest is not None else 0,
        }


@dataclass(frozen=True)
class NewMessage:
    """A validated message to insert."""

    message_id: str
    body: str
    md5: str
    attributes: dict[str, Any] | None
    delay_s: int


@dataclass(frozen=True)
class Claimed:
    """One delivered message, as the claim left it."""

    seq: int
    token: int
    message_id: str
    body: str
    md5: str
    attributes: dict[str, Any] | None
    sent_at: float
    first_received_at: float
    receive_count: int


@dataclass(frozen=True)
class Claim:
    """What one receive did: the messages delivered, and how many it moved to the
    dead-letter queue (``dead_letter_queue``) because they were past
    ``max_receive_count``."""

    messages: list[Claimed]
    moved: int = 0
    dead_letter_queue: str | None = None
    visible_until: float | None = None
    #: The queue's long-poll default, read in the same transaction.
    receive_wait_s: int = 0


class QueueStore:
    """Queues and messages in a :class:`Database` (SQLAlchemy Core)."""

    def __init__(self, database: Database) -> None:
        self.db = database
        database.create(metadata)
        postgres = database.engine.dialect.name == "postgresql"
        self._claim = _CLAIM.with_for_update(skip_locked=True) if postgres else _CLAIM

    # -- the handle key ---------------------------------------------------------------

    def secret(self) -> bytes:
        """The key that signs receipt handles: made on first use, then the same for
        every process on this database (so handles survive a restart)."""
        with self.db.write() as conn:
            found = conn.execute(sa.select(queue_keys.c.secret)).scalar()
            if found is None:
                found = secrets.token_bytes(32)
                conn.execute(queue_keys.insert().values(id=1, secret=found))
        return bytes(found)

    # -- queues -----------------------------------------------------------------------

    def create(self, config: QueueConfig) -> QueueConfig:
        """Insert the queue, or return it when it exists with the same attributes.
        Raises ConflictError (other attributes) or QueueNotFoundError (no such
        dead-letter queue)."""
        with self.db.write() as conn:
            existing = _queue(conn, config.name)
            if existing is not None:
                if not existing.same_attributes(config):
                    raise ConflictError(
                        f"queue {config.name} exists with other attributes: "
                        "change them with set_attributes (faasbox queue attrs)"
                    )
                return existing
            _check_dead_letter_queue(conn, config)
            conn.execute(queues.insert().values(**config.to_dict()))
        return config

    def update(self, name: str, build: Callable[[QueueConfig], QueueConfig]) -> QueueConfig:
        """Write ``build(current)`` in one transaction (``build`` may raise to change
        nothing). Raises QueueNotFoundError."""
        with self.db.write() as conn:
            config = build(_require(conn, name))
            _check_dead_letter_queue(conn, config)
            values = config.to_dict()
            del values["name"], values["created_at"]
            conn.execute(queues.update().where(queues.c.name == name).values(**values))
        return config

    def get(self, name: str, now: float) -> tuple[QueueConfig, Counts]:
        """The queue and its counts. Raises QueueNotFoundError."""
        with self.db.read() as conn:
            config = _require(conn, name)
            counts = _counts(conn, now, name).get(name, Counts())
        return config, counts

    def all(self, now: float, prefix: str | None = None) -> list[tuple[QueueConfig, Counts]]:
        """Queues sorted by name, with their counts (two queries in all)."""
        query = sa.select(queues).order_by(queues.c.name)
        if prefix:
            query = query.where(queues.c.name.startswith(prefix, autoescape=True))
        with self.db.read() as conn:
            configs = [QueueConfig(**row._mapping) for row in conn.execute(query)]
            counts = _counts(conn, now) if configs else {}
        return [(config, counts.get(config.name, Counts())) for config in configs]

    def delete(self, name: str) -> None:
        """Delete the queue and its messages. Raises QueueNotFoundError, or
        ConflictError while it is the dead-letter queue of another queue."""
        with self.db.write() as conn:
            _require(conn, name)
            sources = conn.execute(
                sa.select(queues.c.name).where(queues.c.dead_letter_queue == name)
            ).scalars().all()
            sources = [source for source in sources if source != name]
            if sources:
                raise ConflictError(
                    f"queue {name} is the dead-letter queue of {', '.join(sources)}: "
                    "remove their redrive policy first"
                )
            conn.execute(messages.delete().where(messages.c.queue == name))
            conn.execute(queues.delete().where(queues.c.name == name))

    def purge(self, name: str) -> int:
        """Delete every message of the queue; how many. Raises QueueNotFoundError."""
        with self.db.write() as conn:
            _require(conn, name)
            return conn.execute(messages.delete().where(messages.c.queue == name)).rowcount

    # -- messages -----------------------------------------------------------------------

    def insert(
        self, name: str, now: float, build: Callable[[QueueConfig], list[NewMessage]]
    ) -> list[NewMessage]:
        """Insert ``build(queue)`` in one transaction (``build`` validates against the
        queue's attributes and may raise to insert nothing). Raises QueueNotFoundError."""
        with self.db.write() as conn:
            config = _require(conn, name)
            new = build(config)
            if new:
                expires_at = now + config.retention_s
                self.db.executemany(conn, _INSERT, [
                    {
                        "queue": name, "message_id": m.message_id, "body": m.body,
                        "md5": m.md5,
                        "attributes": json.dumps(m.attributes) if m.attributes else None,
                        "sent_at": now, "visible_at": now + m.delay_s,
                        "expires_at": expires_at, "receive_count": 0,
                        "first_received_at": None, "token": 0, "source_queue": None,
                    }
                    for m in new
                ])
        return new

    def claim(
        self, name: str, max_messages: int, now: float, visibility_timeout_s: int | None
    ) -> Claim:
        """Receive up to ``max_messages`` visible messages in one transaction: each gets
        a new token, ``receive_count + 1`` and ``visible_at = now + visibility``.
        Expired messages met on the way are deleted; messages already received
        ``max_receive_count`` times move to the dead-letter queue instead (SQS moves on
        the receive that would exceed it), visible there at once with a fresh count and
        ``source_queue`` kept for redrive. Raises QueueNotFoundError."""
        with self.db.write() as conn:
            config = _require(conn, name)
            visibility = (config.visibility_timeout_s if visibility_timeout_s is None
                          else visibility_timeout_s)
            dlq = _queue(conn, config.dead_letter_queue) if config.dead_letter_queue else None
            limit = config.max_receive_count if dlq is not None else None
            delivered: list[Claimed] = []
            moved_count = 0
            while len(delivered) < max_messages:
                wanted = max_messages - len(delivered)
                rows = conn.execute(self._claim, {"q": name, "now": now, "n": wanted}).all()
                expired: list[dict[str, Any]] = []
                moved: list[dict[str, Any]] = []
                fresh: list[Claimed] = []
                for row in rows:
                    if row.expires_at <= now:
                        expired.append({"s": row.seq})
                    elif dlq is not None and limit is not None and row.receive_count >= limit:
                        moved.append({"s": row.seq, "e": row.sent_at + dlq.retention_s})
                    else:
                        fresh.append(Claimed(
                            seq=row.seq, token=_new_token(), message_id=row.message_id,
                            body=row.body, md5=row.md5,
                            attributes=json.loads(row.attributes) if row.attributes else None,
                            sent_at=row.sent_at,
                            first_received_at=row.first_received_at or now,
                            receive_count=row.receive_count + 1,
                        ))
                # every row selected changes here, so the next select sees past them
                _write_claim(self.db, conn, name, expired, moved, fresh, now + visibility,
                             dlq)
                delivered.extend(fresh)
                moved_count += len(moved)
                if len(rows) < wanted:
                    break
        return Claim(
            messages=delivered, moved=moved_count,
            dead_letter_queue=dlq.name if dlq is not None else None,
            visible_until=now + visibility if delivered else None,
            receive_wait_s=config.receive_wait_s,
        )

    def delete_current(self, name: str, keys: list[tuple[int, int]]) -> set[tuple[int, int]]:
        """Delete the messages whose ``(seq, token)`` is current, in one transaction;
        returns the pairs deleted. Raises QueueNotFoundError."""
        with self.db.write() as conn:
            _require(conn, name)
            return _returning(conn, _DELETE_CURRENT, name, keys, {})

    def set_visible_at(
        self, name: str, keys: list[tuple[int, int]], visible_at: float
    ) -> set[tuple[int, int]]:
        """Set ``visible_at`` of the messages whose ``(seq, token)`` is current; returns
        the pairs changed. Raises QueueNotFoundError."""
        with self.db.write() as conn:
            _require(conn, name)
            return _returning(conn, _TOUCH_CURRENT, name, keys, {"v": visible_at})

    def redrive(self, dead_letter_queue: str, destination: str | None, now: float) -> dict[str,
                                                                                           int]:
        """Move the dead-letter queue's messages back to their source queue (or to
        ``destination``), visible now, with receive count 0 and no current handle;
        retention counts from when they were first sent, as SQS does. Messages whose
        source queue is gone, or that were sent to the queue directly, stay unless
        ``destination`` is given. Returns ``{queue: moved}``. Raises
        QueueNotFoundError for either queue."""
        moved: dict[str, int] = {}
        with self.db.write() as conn:
            _require(conn, dead_letter_queue)
            if destination is not None:
                targets = [_require(conn, destination)]
            else:
                names = conn.execute(
                    sa.select(messages.c.source_queue).distinct().where(
                        (messages.c.queue == dead_letter_queue)
                        & messages.c.source_queue.is_not(None)
                    )
                ).scalars().all()
                targets = [c for c in (_queue(conn, n) for n in names) if c is not None]
            for target in targets:
                where = messages.c.queue == dead_letter_queue
                if destination is None:
                    where = where & (messages.c.source_queue == target.name)
                count = conn.execute(
                    messages.update().where(where).values(
                        queue=target.name, source_queue=None, receive_count=0, token=0,
                        first_received_at=None, visible_at=now,
                        expires_at=messages.c.sent_at + target.retention_s,
                    )
                ).rowcount
                if count:
                    moved[target.name] = count
        return moved

    def expire(self, now: float) -> int:
        """Delete every message past its retention, in all queues; how many."""
        with self.db.write() as conn:
            return conn.execute(messages.delete().where(messages.c.expires_at <= now)).rowcount

    def counts(self, name: str, now: float) -> Counts:
        """Counts of one queue (one aggregate query). Raises QueueNotFoundError."""
        with self.db.read() as conn:
            _require(conn, name)
            return _counts(conn, now, name).get(name, Counts())

    def next_visible_at(self, now: float, name: str | None = None) -> float | None:
        """The soonest ``visible_at`` after ``now`` of an unexpired message (of queue
        ``name``, or of any queue), or None. One index probe per queue."""
        with self.db.read() as conn:
            names = [name] if name is not None else list(
                conn.execute(sa.select(queues.c.name)).scalars()
            )
            soonest: float | None = None
            for queue in names:
                found = conn.execute(
                    sa.select(sa.func.min(messages.c.visible_at)).where(
                        (messages.c.queue == queue) & (messages.c.visible_at > now)
                    )
                ).scalar()
                if found is not None and (soonest is None or found < soonest):
                    soonest = found
        return soonest

    def turned_visible(self, since: float, now: float) -> list[str]:
        """Queues with a message whose ``visible_at`` lies in ``(since, now]``: their
        delay or visibility timeout ended in that time."""
        with self.db.read() as conn:
            names = conn.execute(sa.select(queues.c.name)).scalars().all()
            return [
                queue for queue in names
                if conn.execute(
                    sa.select(messages.c.seq).where(
                        (messages.c.queue == queue) & (messages.c.visible_at > since)
                        & (messages.c.visible_at <= now)
                    ).limit(1)
                ).first() is not None
            ]


def _new_token() -> int:
    # Tokens tell receives apart; the handle's MAC, not their secrecy, stops forgery,
    # so a seeded generator will do (os.urandom per message showed in profiles).
    return _tokens.getrandbits(63) or 1  # never 0: 0 means "no receive to acknowledge"


_tokens = random.Random()


def _write_claim(
    db: Database, conn: Connection, name: str, expired: list[dict[str, Any]],
    moved: list[dict[str, Any]], fresh: list[Claimed], visible_at: float,
    dlq: QueueConfig | None,
) -> None:
    """Write one round of a claim: drop the expired, move to the DLQ, deliver."""
    if expired:
        db.executemany(conn, _DROP, expired)
    if moved and dlq is not None:
        db.executemany(conn, _MOVE, [{**m, "dlq": dlq.name, "src": name} for m in moved])
    if fresh:
        db.executemany(conn, _DELIVER, [
            {"s": m.seq, "t": m.token, "c": m.receive_count, "f": m.first_received_at,
             "v": visible_at}
            for m in fresh
        ])


def _returning(
    conn: Connection, statement: Any, name: str, keys: list[tuple[int, int]],
    params: dict[str, Any],
) -> set[tuple[int, int]]:
    """Run a ``... WHERE (seq, token) IN keys RETURNING seq, token`` statement over
    ``keys`` in chunks; the pairs it matched."""
    done: set[tuple[int, int]] = set()
    unique = sorted(set(keys))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start:start + _CHUNK]
        seqs = [seq for seq, _ in chunk]
        rows = conn.execute(statement, {"q": name, "seqs": seqs, "keys": chunk, **params})
        done.update((row.seq, row.token) for row in rows)
    return done


def _counts(conn: Connection, now: float, name: str | None = None) -> dict[str, Counts]:
    m = messages.c
    visible = m.visible_at <= now
    query = (
        sa.select(
            m.queue,
            sa.func.sum(sa.case((visible, 1), else_=0)),
            sa.func.sum(sa.case(((~visible) & (m.receive_count > 0), 1), else_=0)),
            sa.func.sum(sa.case(((~visible) & (m.receive_count == 0), 1), else_=0)),
            sa.func.min(m.sent_at),
        )
        .where(m.expires_at > now)
        .group_by(m.queue)
    )
    if name is not None:
        query = query.where(m.queue == name)
    return {
        row[0]: Counts(int(row[1] or 0), int(row[2] or 0), int(row[3] or 0), row[4])
        for row in conn.execute(query)
    }


def _queue(conn: Connection, name: str) -> QueueConfig | None:
    row = conn.execute(_SELECT_QUEUE, {"name": name}).first()
    return QueueConfig(**row._mapping) if row is not None else None


def _require(conn: Connection, name: str) -> QueueConfig:
    config = _queue(conn, name)
    if config is None:
        raise QueueNotFoundError(name)
    return config


def _check_dead_letter_queue(conn: Connection, config: QueueConfig) -> None:
    dlq = config.dead_letter_queue
    if dlq is None:
        return
    if dlq == config.name:
        raise InvalidParameterError(f"queue {dlq} cannot be its own dead-letter queue")
    if _queue(conn, dlq) is None:
        raise QueueNotFoundError(dlq)


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
