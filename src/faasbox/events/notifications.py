"""Bucket notifications: their configurations, the S3 event shape, and the driver
that delivers them.

Delivery follows the object store's change feed (``ObjectStore.changes``), in which
every committed write was recorded in the same commit as the object itself: a write is
notified even if the server died right after it, and writes made by other processes
(function code writing the folder store directly) are seen by polling the feed. The
driver reads changes after a cursor kept in the state database, delivers the matching
events in batches (one ``send_many`` per queue; one async invocation per event for a
function, as S3 -> Lambda), then advances the cursor and trims the feed.

At-least-once: a crash (or a failed delivery) between delivery and the cursor's
advance delivers those events again. A destination that no longer exists drops its
events (logged), so one deleted queue never stalls the others.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote_plus

import orjson
import sqlalchemy as sa

from faasbox.api.objects import EVENT_TYPES
from faasbox.errors import InvalidParameterError, NotFoundError, NotificationNotFoundError
from faasbox.events.dispatcher import Driver
from faasbox.model import REGION, Destination, bucket_arn
from faasbox.stores.database import Database
from faasbox.stores.objects import DELETE, Change, ObjectStore

log = logging.getLogger("faasbox.events")

DRIVER = "notifications"
#: How often the feed is polled while notifications exist (writes by this process wake
#: the driver at once; writes by other processes are found by polling).
POLL_S = 0.25
#: ... and while none exist (only to trim the feed).
IDLE_POLL_S = 5.0
#: Delivered changes are trimmed from the feed at most this often.
TRIM_EVERY_S = 1.0
#: Changes handled per run (one batch of deliveries).
BATCH = 1000
#: Notification configurations per bucket.
MAX_PER_BUCKET = 100

metadata = sa.MetaData()

notifications = sa.Table(
    "object_notifications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("bucket", sa.String(63), nullable=False, index=True),
    sa.Column("destination", sa.String(256), nullable=False),
    sa.Column("events", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("suffix", sa.Text, nullable=False),
    sa.Column("after_seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

cursors = sa.Table(
    "object_notification_cursor",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Notification:
    """One configuration: which events of a bucket go where."""

    id: str
    bucket: str
    destination: Destination
    events: tuple[str, ...]
    prefix: str
    suffix: str
    #: Only changes after this feed position (the configuration's creation) match.
    after_seq: int
    created_at: float

    def matches(self, change: Change) -> bool:
        if change.seq <= self.after_seq or change.bucket != self.bucket:
            return False
        if not (change.key.startswith(self.prefix) and change.key.endswith(self.suffix)):
            return False
        family = change.event.partition(":")[0] + ":*"
        return change.event in self.events or family in self.events

    def overlaps(self, other: Notification) -> bool:
        """Whether one change could match both configurations (S3 refuses such pairs,
        whatever their destinations): same bucket, an event type in common, and prefix
        and suffix filters that one key can satisfy at once (of two prefixes one starts
        the other; of two suffixes one ends the other; an empty filter matches all)."""
        return (self.bucket == other.bucket
                and bool(_concrete(self.events) & _concrete(other.events))
                and (self.prefix.startswith(other.prefix)
                     or other.prefix.startswith(self.prefix))
                and (self.suffix.endswith(other.suffix) or other.suffix.endswith(self.suffix)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bucket": self.bucket,
            "destination": str(self.destination),
            "events": list(self.events),
            "prefix": self.prefix,
            "suffix": self.suffix,
            "created_at": self.created_at,
        }


def _concrete(events: Iterable[str]) -> set[str]:
    """The event names (no wildcards) that ``events`` select."""
    names = [name for name in EVENT_TYPES if not name.endswith(":*")]
    return {name for name in names
            if name in events or name.partition(":")[0] + ":*" in events}


def normalize_events(events: Iterable[str] | None) -> tuple[str, ...]:
    """Event types without the ``s3:`` prefix, deduplicated; InvalidParameterError for
    an unknown one or an empty list."""
    if events is None:
        return ("ObjectCreated:*",)
    if isinstance(events, str):
        events = [events]
    found: list[str] = []
    for event in events:
        name = event.removeprefix("s3:") if isinstance(event, str) else event
        if name not in EVENT_TYPES:
            raise InvalidParameterError(
                f"unknown event type {event!r}: use one of {', '.join(EVENT_TYPES)}"
            )
        if name not in found:
            found.append(name)
    if not found:
        raise InvalidParameterError("events must name at least one event type")
    return tuple(found)


class NotificationConfigs:
    """Notification configurations and the delivery cursor, in the state database."""

    def __init__(self, database: Database) -> None:
        self.db = database
        database.create(metadata)

    def add(self, bucket: str, destination: Destination, events: tuple[str, ...],
            prefix: str, suffix: str, after_seq: int) -> Notification:
        """Store a new configuration. Raises InvalidParameterError (nothing stored) for a
        prefix or suffix over 1024 bytes, past ``MAX_PER_BUCKET`` configurations, or when
        it overlaps one of the bucket's configurations (see
        :meth:`Notification.overlaps`: one event would be delivered twice); the check and
        the insert are one transaction, so two concurrent adds cannot both pass it."""
        for text, what in ((prefix, "prefix"), (suffix, "suffix")):
            if not isinstance(text, str) or len(text.encode()) > 1024:
                raise InvalidParameterError(f"invalid {what} {text!r}: up to 1024 bytes")
        made = Notification(uuid.uuid4().hex, bucket, destination, events, prefix, suffix,
                            after_seq, time.time())
        with self.db.write() as conn:
            present = [_notification(row) for row in conn.execute(
                sa.select(notifications).where(notifications.c.bucket == bucket)
                .order_by(notifications.c.created_at, notifications.c.id))]
            if len(present) >= MAX_PER_BUCKET:
                raise InvalidParameterError(
                    f"bucket {bucket} has {len(present)} notifications, the most allowed")
            clash = next((other for other in present if made.overlaps(other)), None)
            if clash is not None:
                raise InvalidParameterError(
                    f"Configurations overlap: notification {clash.id} of bucket {bucket} "
                    f"already selects {', '.join(clash.events)} with prefix "
                    f"{clash.prefix!r} and suffix {clash.suffix!r}; an event would be "
                    "delivered twice (use filters that no key matches both of)")
            conn.execute(notifications.insert().values(
                id=made.id, bucket=bucket, destination=str(destination),
                events=orjson.dumps(list(events)).decode(), prefix=prefix, suffix=suffix,
                after_seq=after_seq, created_at=made.created_at))
        return made

    def list(self, bucket: str | None = None) -> list[Notification]:
        """Configurations of ``bucket`` (of every bucket if None), oldest first."""
        query = sa.select(notifications).order_by(notifications.c.created_at,
                                                  notifications.c.id)
        if bucket is not None:
            query = query.where(notifications.c.bucket == bucket)
        with self.db.read() as conn:
            return [_notification(row) for row in conn.execute(query)]

    def remove(self, bucket: str, notification_id: str) -> None:
        """Raises NotificationNotFoundError."""
        with self.db.write() as conn:
            done = conn.execute(notifications.delete().where(
                (notifications.c.bucket == bucket) & (notifications.c.id == notification_id)))
        if done.rowcount == 0:
            raise NotificationNotFoundError(f"{bucket}/{notification_id}")

    def remove_bucket(self, bucket: str) -> None:
        """Forget every configuration of ``bucket`` (it was deleted). Idempotent."""
        with self.db.write() as conn:
            conn.execute(notifications.delete().where(notifications.c.bucket == bucket))

    def cursor(self) -> int | None:
        """The feed position delivered up to; None before the first run."""
        with self.db.read() as conn:
            seq = conn.execute(sa.select(cursors.c.seq).where(
                cursors.c.name == "objects")).scalar()
        return None if seq is None else int(seq)

    def set_cursor(self, seq: int) -> None:
        with self.db.write() as conn:
            done = conn.execute(cursors.update().where(cursors.c.name == "objects").values(
                seq=seq))
            if done.rowcount == 0:
                conn.execute(cursors.insert().values(name="objects", seq=seq))


def _notification(row: Any) -> Notification:
    return Notification(row.id, row.bucket, Destination.parse(row.destination),
                        tuple(orjson.loads(row.events)), row.prefix, row.suffix,
                        row.after_seq, row.created_at)


def event_record(change: Change, configuration_id: str) -> dict[str, Any]:
    """The S3 event record (``Records[i]``, version 2.1) of one change. The key is
    URL-encoded as S3 does (spaces as ``+``): decode it with ``unquote_plus``."""
    key = change.key if _PLAIN_KEY.fullmatch(change.key) else quote_plus(change.key, safe="/")
    obj: dict[str, Any] = {"key": key}
    if change.event != DELETE:
        obj.update(size=change.size, eTag=change.etag)
    obj["sequencer"] = f"{change.seq:016X}"
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": _event_time(change.time),
        "eventName": change.event,
        "userIdentity": {"principalId": "faasbox"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": f"{change.seq:016X}",
                             "x-amz-id-2": f"faasbox/{change.seq}"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {"name": change.bucket, "ownerIdentity": {"principalId": "faasbox"},
                       "arn": bucket_arn(change.bucket)},
            "object": obj,
        },
    }


#: Keys that URL-encoding leaves as they are (most keys): no need to run quote_plus.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.~/-]*")


def _event_time(when: float) -> str:
    """ISO-8601 UTC with milliseconds, as S3 writes ``eventTime``."""
    seconds = int(when)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int((when - seconds) * 1000):03d}Z"


def event_body(change: Change, configuration_id: str) -> bytes:
    """A whole S3 event (``{"Records": [record]}``) as JSON."""
    return orjson.dumps({"Records": [event_record(change, configuration_id)]})


class QueueSender(Protocol):
    def send_many(self, name: str, bodies: list[str]) -> list[str]: ...


class AsyncInvoker(Protocol):
    def invoke(self, name: str, event: bytes, qualifier: str | None = None) -> str: ...


class NotificationDriver(Driver):
    """Delivers the change feed to the matching notifications; see the module."""

    name = DRIVER
    #: A burst of writes is delivered in runs of up to this spacing (latency <= 10 ms).
    min_interval_s = 0.01

    def __init__(self, store: ObjectStore, configs: NotificationConfigs, queues: QueueSender,
                 invoker: AsyncInvoker, *, poll_s: float = POLL_S,
                 idle_poll_s: float = IDLE_POLL_S, batch: int = BATCH) -> None:
        self.store = store
        self.configs = configs
        self.queues = queues
        self.invoker = invoker
        self.poll_s = poll_s
        self.idle_poll_s = idle_poll_s
        self.batch = batch
        self._delivered = self._trimmed = 0  # feed positions, this process's view
        self._trimmed_at = 0.0

    def run_due(self, now: float) -> float | None:
        cursor = self.configs.cursor()
        if cursor is None:  # first run on this state: start where the oldest config did
            newest = self.store.last_seq()  # read before the configs: none is skipped
            cursor = min([newest, *(c.after_seq for c in self.configs.list())])
            self.configs.set_cursor(cursor)
        self._delivered = max(self._delivered, cursor)  # after a restart: trim what was
        changes = self.store.changes(cursor, self.batch)
        # Configurations are read after the changes: one created before a write (as its
        # caller saw it) is then always among them.
        configs = self.configs.list()
        if changes:
            self.deliver(changes, configs)
            self._delivered = changes[-1].seq
            self.configs.set_cursor(self._delivered)
        self._trim()
        if len(changes) == self.batch:
            return now  # more are waiting
        return time.time() + (self.poll_s if configs else self.idle_poll_s)

    def _trim(self) -> None:
        """Drop delivered changes from the feed, every ``TRIM_EVERY_S`` at most: a trim
        is a write to the object store's index, which uploads are writing too."""
        if self._delivered > self._trimmed and (
                time.monotonic() - self._trimmed_at >= TRIM_EVERY_S):
            self.store.trim_changes(self._delivered)
            self._trimmed, self._trimmed_at = self._delivered, time.monotonic()

    def deliver(self, changes: list[Change], configs: list[Notification]) -> None:
        """Send each change to every configuration it matches, batched per destination.
        Raises what a destination raised, except that it no longer exists."""
        batches: dict[Destination, list[bytes]] = {}
        for change in changes:
            for config in configs:
                if config.matches(change):
                    batches.setdefault(config.destination, []).append(
                        event_body(change, config.id))
        for destination, bodies in batches.items():
            try:
                if destination.kind == "queue":
                    self.queues.send_many(destination.name, [b.decode() for b in bodies])
                else:
                    for body in bodies:
                        self.invoker.invoke(destination.name, body, destination.qualifier)
            except NotFoundError as exc:  # queue, function, alias or version gone
                log.warning("dropping %d bucket notification(s) for %s: %s", len(bodies),
                            destination, exc)
