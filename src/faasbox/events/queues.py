"""QueueService: durable queues with SQS standard-queue semantics, in the state store.

Messages live in the state database (:mod:`faasbox.stores.queues`), so a message is
durable once ``send`` returns and a crash between receive and delete loses nothing:
the row is still there, invisible until its visibility timeout ends.

Receipt handles are ``base64url(seq, token, MAC(queue, seq, token))`` (keyed BLAKE2b)
with a per-database key: a forged or garbled handle fails its MAC, and a handle from an
earlier receive names a token the row no longer holds. Either way the call raises
:class:`InvalidReceiptHandleError` and changes nothing.

Long polling waits on one in-process :class:`threading.Condition`, notified whenever a
queue may have new visible messages (a send, a release, a redrive, or the
``queues-visibility`` driver seeing a delay or visibility timeout end); a waiter also
wakes by itself when the queue's next invisible message is due. It never busy-loops.
Several control planes on one database (PostgreSQL) would not see each other's
notifications and would rely on that timed wake-up alone: a send on another server is
then seen when the wait ends.

Besides :class:`Queues`, the service offers bulk methods to the other services:
:meth:`~QueueService.receive_batch`, :meth:`~QueueService.delete_handles`,
:meth:`~QueueService.release`, :meth:`~QueueService.send_many`,
:meth:`~QueueService.subscribe` and :meth:`~QueueService.counts`.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import hmac
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from faasbox.api.queues import (
    BATCH_MAX,
    DELAY_MAX_S,
    MAX_MESSAGE_BYTES,
    RECEIVE_WAIT_MAX_S,
    RETENTION_MAX_S,
    RETENTION_MIN_S,
    RETENTION_S,
    VISIBILITY_TIMEOUT_MAX_S,
    VISIBILITY_TIMEOUT_S,
    Message,
    Queues,
)
from faasbox.errors import InvalidParameterError, InvalidReceiptHandleError
from faasbox.events.dispatcher import Dispatcher, Driver
from faasbox.events.queue_checks import (
    BATCH_MAX_BYTES,
    bounded,
    check_batch_bytes,
    entry_ids,
    new_message,
    queue_name,
    show,
)
from faasbox.model import ACCOUNT_ID, queue_arn
from faasbox.stores.database import Database
from faasbox.stores.queues import Claimed, Counts, NewMessage, QueueConfig, QueueStore

if TYPE_CHECKING:
    from faasbox.platform import Platform

log = logging.getLogger("faasbox.queues")

#: ``receive_batch`` takes up to this many messages at once.
RECEIVE_BATCH_MAX = 10_000
MIN_MESSAGE_BYTES = 1024
MAX_RECEIVE_COUNT_MAX = 1000
#: How often expired messages are deleted in bulk (receives also skip them lazily).
RETENTION_SWEEP_S = 60.0
#: The visibility driver runs at most this often: wakes after a timeout ends are at
#: most this late, and a busy queue cannot make it spin.
VISIBILITY_SCAN_MIN_S = 0.1

_HANDLE = struct.Struct(">QQ")
_MAC_BYTES = 16
_ATTRIBUTES = ("visibility_timeout_s", "retention_s", "delay_s", "max_message_bytes",
               "receive_wait_s", "dead_letter_queue", "max_receive_count")


class QueueService(Queues):
    """The local implementation of :class:`Queues` over the state database.

    ``clock`` gives epoch seconds (tests pass their own to step time);
    ``message_bytes_limit`` bounds a queue's ``max_message_bytes`` (the operator's
    ``limits.message_bytes``). With a ``dispatcher`` the service registers the
    ``queues-retention`` and ``queues-visibility`` drivers.
    """

    def __init__(
        self,
        database: Database,
        *,
        dispatcher: Dispatcher | None = None,
        message_bytes_limit: int = MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = QueueStore(database)
        self._key = self.store.secret()
        self._clock = clock
        self._bytes_limit = max(message_bytes_limit, MIN_MESSAGE_BYTES)
        self._cond = threading.Condition()
        self._generation: dict[str, int] = {}
        self._subscribers: builtins.list[Callable[[str], None]] = []
        self._closed = False
        self._visibility: _VisibilityDriver | None = None
        self._dispatcher = dispatcher
        if dispatcher is not None:
            self._visibility = _VisibilityDriver(self)
            dispatcher.add(_RetentionDriver(self))
            dispatcher.add(self._visibility)

    # -- queues ----------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        visibility_timeout_s: int = VISIBILITY_TIMEOUT_S,
        retention_s: int = RETENTION_S,
        delay_s: int = 0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        receive_wait_s: int = 0,
        dead_letter_queue: str | None = None,
        max_receive_count: int | None = None,
    ) -> dict[str, Any]:
        config = self._checked(QueueConfig(
            name=queue_name(name), created_at=self._clock(),
            visibility_timeout_s=visibility_timeout_s, retention_s=retention_s,
            delay_s=delay_s,
            # the default follows a smaller operator limit instead of failing
            max_message_bytes=(min(max_message_bytes, self._bytes_limit)
                               if max_message_bytes == MAX_MESSAGE_BYTES else max_message_bytes),
            receive_wait_s=receive_wait_s, dead_letter_queue=dead_letter_queue,
            max_receive_count=max_receive_count,
        ))
        self.store.create(config)
        return self.get(name)

    def set_attributes(self, name: str, **attributes: Any) -> dict[str, Any]:
        """Change attributes (see :meth:`Queues.set_attributes`); an unknown name or a
        bad value raises InvalidParameterError and changes nothing."""
        queue_name(name)
        unknown = sorted(set(attributes) - set(_ATTRIBUTES))
        if unknown:
            raise InvalidParameterError(
                f"unknown queue attributes {unknown}: use {', '.join(_ATTRIBUTES)}"
            )

        def build(current: QueueConfig) -> QueueConfig:
            changes = dict(attributes)
            if changes.get("dead_letter_queue", ...) is None:
                changes["max_receive_count"] = None  # no policy: no count either
            return self._checked(replace(current, **changes))

        config = self.store.update(name, build)
        self._notify(name)  # a shorter delay may have made messages visible
        return self._describe(config, self.store.counts(name, self._clock()))

    def get(self, name: str) -> dict[str, Any]:
        config, counts = self.store.get(queue_name(name), self._clock())
        return self._describe(config, counts)

    def list(self, prefix: str | None = None) -> builtins.list[dict[str, Any]]:
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidParameterError(f"prefix must be a string, not {prefix!r}")
        return [self._describe(config, counts)
                for config, counts in self.store.all(self._clock(), prefix)]

    def delete(self, name: str) -> None:
        self.store.delete(queue_name(name))
        with self._cond:  # its long polls wake and raise QueueNotFoundError
            self._generation[name] = self._generation.get(name, 0) + 1
            self._cond.notify_all()

    def purge(self, name: str) -> int:
        return self.store.purge(queue_name(name))

    def counts(self, name: str) -> dict[str, Any]:
        """``{"visible", "in_flight", "delayed", "oldest_age_s"}`` of the queue, from one
        aggregate query. Raises QueueNotFoundError."""
        now = self._clock()
        return self.store.counts(queue_name(name), now).to_dict(now)

    def _describe(self, config: QueueConfig, counts: Counts) -> dict[str, Any]:
        return {**config.to_dict(), "arn": queue_arn(config.name),
                **counts.to_dict(self._clock())}

    def _checked(self, config: QueueConfig) -> QueueConfig:
        """``config`` if every attribute is in range, else InvalidParameterError."""
        bounded("visibility_timeout_s", config.visibility_timeout_s, 0,
                 VISIBILITY_TIMEOUT_MAX_S)
        bounded("retention_s", config.retention_s, RETENTION_MIN_S, RETENTION_MAX_S)
        bounded("delay_s", config.delay_s, 0, DELAY_MAX_S)
        bounded("max_message_bytes", config.max_message_bytes, MIN_MESSAGE_BYTES,
                 self._bytes_limit)
        bounded("receive_wait_s", config.receive_wait_s, 0, RECEIVE_WAIT_MAX_S)
        dlq, count = config.dead_letter_queue, config.max_receive_count
        if (dlq is None) != (count is None):
            raise InvalidParameterError(
                "a redrive policy needs both dead_letter_queue and max_receive_count"
            )
        if dlq is not None:
            queue_name(dlq, "dead_letter_queue")
            bounded("max_receive_count", count, 1, MAX_RECEIVE_COUNT_MAX)
        return config

    # -- sending ---------------------------------------------------------------------

    def send(
        self,
        name: str,
        body: str,
        *,
        delay_s: int | None = None,
        message_attributes: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        def build(config: QueueConfig) -> builtins.list[NewMessage]:
            return [new_message(config, body, delay_s, message_attributes)]

        sent = self.store.insert(queue_name(name), self._clock(), build)[0]
        self._sent(name, [sent.delay_s])
        return {"message_id": sent.message_id, "md5_of_body": sent.md5}

    def send_batch(self, name: str, entries: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        queue_name(name)
        ids = entry_ids(entries, {"id", "body", "delay_s", "message_attributes"})
        # an operator who allows larger messages allows a batch of one of them
        check_batch_bytes(entries, max(BATCH_MAX_BYTES, self._bytes_limit))
        failed: builtins.list[dict[str, str]] = []
        good: builtins.list[tuple[str, NewMessage]] = []

        def build(config: QueueConfig) -> builtins.list[NewMessage]:
            for entry_id, entry in zip(ids, entries, strict=True):
                try:
                    new = new_message(config, entry.get("body"), entry.get("delay_s"),
                                       entry.get("message_attributes"))
                except InvalidParameterError as exc:
                    failed.append({"id": entry_id, "code": exc.code, "message": exc.message})
                else:
                    good.append((entry_id, new))
            return [new for _, new in good]

        self.store.insert(name, self._clock(), build)
        self._sent(name, [new.delay_s for _, new in good])
        return {
            "successful": [{"id": entry_id, "message_id": new.message_id,
                            "md5_of_body": new.md5} for entry_id, new in good],
            "failed": failed,
        }

    def send_many(self, name: str, bodies: builtins.list[str]) -> builtins.list[str]:
        """Enqueue any number of messages (the queue's delay, no attributes) in one
        transaction; their message ids in order. Every body is checked first: one bad
        body raises InvalidParameterError (naming its index) and nothing is sent.
        Raises QueueNotFoundError."""
        if not isinstance(bodies, list):
            raise InvalidParameterError("bodies must be a list of strings")

        def build(config: QueueConfig) -> builtins.list[NewMessage]:
            made = []
            for index, body in enumerate(bodies):
                try:
                    made.append(new_message(config, body, None, None))
                except InvalidParameterError as exc:
                    raise InvalidParameterError(f"bodies[{index}]: {exc.message}") from None
            return made

        sent = self.store.insert(queue_name(name), self._clock(), build)
        self._sent(name, [new.delay_s for new in sent[:1]])
        return [new.message_id for new in sent]

    def _sent(self, name: str, delays: builtins.list[int]) -> None:
        """Wake receivers for what is visible now; plan a look when the rest is due."""
        if 0 in delays:
            self._notify(name)
        later = [delay for delay in delays if delay]
        if later:
            self._hint(self._clock() + min(later))

    # -- receiving -------------------------------------------------------------------

    def receive(
        self,
        name: str,
        *,
        max_messages: int = 1,
        wait_s: int | None = None,
        visibility_timeout_s: int | None = None,
    ) -> builtins.list[Message]:
        bounded("max_messages", max_messages, 1, BATCH_MAX)
        if wait_s is not None:
            bounded("wait_s", wait_s, 0, RECEIVE_WAIT_MAX_S)
        return self._receive(name, max_messages, visibility_timeout_s,
                             None if wait_s is None else float(wait_s))

    def receive_batch(
        self,
        name: str,
        max_messages: int,
        *,
        visibility_timeout_s: int | None = None,
        wait_s: float = 0.0,
    ) -> builtins.list[Message]:
        """As :meth:`receive` for 1-10,000 messages (queue -> function mappings), with
        the same receive counts and dead-letter moves; ``wait_s`` (0-20, a float)
        defaults to no wait, not the queue's ``receive_wait_s``. All claimed in one
        transaction."""
        bounded("max_messages", max_messages, 1, RECEIVE_BATCH_MAX)
        if (not isinstance(wait_s, int | float) or isinstance(wait_s, bool)
                or not 0 <= wait_s <= RECEIVE_WAIT_MAX_S):
            raise InvalidParameterError(
                f"wait_s={wait_s!r} is out of range 0-{RECEIVE_WAIT_MAX_S}"
            )
        return self._receive(name, max_messages, visibility_timeout_s, float(wait_s))

    def _receive(
        self, name: str, max_messages: int, visibility_timeout_s: int | None,
        wait_s: float | None,
    ) -> builtins.list[Message]:
        """Claim until messages come or ``wait_s`` (None: the queue's
        ``receive_wait_s``) ends, sleeping on the condition in between."""
        queue_name(name)
        if visibility_timeout_s is not None:
            bounded("visibility_timeout_s", visibility_timeout_s, 0, VISIBILITY_TIMEOUT_MAX_S)
        started = time.monotonic()
        while True:
            with self._cond:
                generation = self._generation.get(name, 0)
            claim = self.store.claim(name, max_messages, self._clock(), visibility_timeout_s)
            if claim.moved and claim.dead_letter_queue:
                self._notify(claim.dead_letter_queue)
            if claim.messages:
                if claim.visible_until is not None:
                    self._hint(claim.visible_until)
                return [self._message(name, m) for m in claim.messages]
            if wait_s is None:
                wait_s = float(claim.receive_wait_s)
            remaining = started + wait_s - time.monotonic()
            if remaining <= 0 or self._closed:
                return []
            now = self._clock()
            due = self.store.next_visible_at(now, name)
            if due is not None:  # a delayed or in-flight message turns visible then
                remaining = min(remaining, max(due - now, 0.0) + 0.01)
            with self._cond:
                if self._generation.get(name, 0) == generation and not self._closed:
                    self._cond.wait(remaining)

    def _message(self, name: str, claimed: Claimed) -> Message:
        return Message(
            message_id=claimed.message_id,
            receipt_handle=self._handle(name, claimed.seq, claimed.token),
            body=claimed.body,
            md5_of_body=claimed.md5,
            attributes={
                "SentTimestamp": str(int(claimed.sent_at * 1000)),
                "ApproximateFirstReceiveTimestamp": str(int(claimed.first_received_at * 1000)),
                "ApproximateReceiveCount": str(claimed.receive_count),
                "SenderId": ACCOUNT_ID,
            },
            message_attributes=dict(claimed.attributes or {}),
        )

    # -- acknowledging ---------------------------------------------------------------

    def delete_message(self, name: str, receipt_handle: str) -> None:
        key = self._parse(queue_name(name), receipt_handle)
        if not self.store.delete_current(name, [key]):
            raise _stale(name)

    def delete_batch(self, name: str, entries: builtins.list[dict[str, str]]) -> dict[str, Any]:
        queue_name(name)
        ids = entry_ids(entries, {"id", "receipt_handle"})
        failed: builtins.list[dict[str, str]] = []
        keys: dict[str, tuple[int, int]] = {}
        for entry_id, entry in zip(ids, entries, strict=True):
            try:
                keys[entry_id] = self._parse(name, entry.get("receipt_handle"))
            except InvalidReceiptHandleError as exc:
                failed.append({"id": entry_id, "code": exc.code, "message": exc.message})
        deleted = self.store.delete_current(name, list(keys.values()))
        stale = _stale(name)
        failed.extend({"id": entry_id, "code": stale.code, "message": stale.message}
                      for entry_id, key in keys.items() if key not in deleted)
        order = {entry_id: index for index, entry_id in enumerate(ids)}
        failed.sort(key=lambda item: order[item["id"]])
        return {"successful": [{"id": entry_id} for entry_id, key in keys.items()
                               if key in deleted],
                "failed": failed}

    def delete_handles(self, name: str, handles: builtins.list[str]) -> builtins.list[str]:
        """Delete many received messages in ONE transaction; returns the handles that
        were not current (forged or stale: nothing deleted for them).
        Raises QueueNotFoundError."""
        queue_name(name)
        keys = self._parse_many(name, handles)
        deleted = self.store.delete_current(name, [k for k in keys.values() if k is not None])
        return [h for h in handles if keys.get(h) not in deleted]

    def change_visibility(
        self, name: str, receipt_handle: str, visibility_timeout_s: int
    ) -> None:
        bounded("visibility_timeout_s", visibility_timeout_s, 0, VISIBILITY_TIMEOUT_MAX_S)
        key = self._parse(queue_name(name), receipt_handle)
        until = self._clock() + visibility_timeout_s
        if not self.store.set_visible_at(name, [key], until):
            raise _stale(name)
        self._released(name, visibility_timeout_s, until)

    def release(
        self, name: str, handles: builtins.list[str], visibility_timeout_s: int = 0
    ) -> None:
        """Make many received messages visible again after ``visibility_timeout_s``
        (0: now) in one transaction; handles that are not current are ignored.
        Raises QueueNotFoundError, InvalidParameterError for a bad timeout."""
        bounded("visibility_timeout_s", visibility_timeout_s, 0, VISIBILITY_TIMEOUT_MAX_S)
        queue_name(name)
        keys = [k for k in self._parse_many(name, handles).values() if k is not None]
        until = self._clock() + visibility_timeout_s
        if self.store.set_visible_at(name, keys, until):
            self._released(name, visibility_timeout_s, until)

    def _released(self, name: str, visibility_timeout_s: int, until: float) -> None:
        if visibility_timeout_s == 0:
            self._notify(name)
        else:
            self._hint(until)

    def redrive(self, dead_letter_queue: str, *, destination: str | None = None) -> int:
        queue_name(dead_letter_queue, "dead_letter_queue")
        if destination is not None:
            queue_name(destination, "destination")
        moved = self.store.redrive(dead_letter_queue, destination, self._clock())
        for queue in moved:
            self._notify(queue)
        return sum(moved.values())

    # -- receipt handles -------------------------------------------------------------

    def _handle(self, name: str, seq: int, token: int) -> str:
        raw = _HANDLE.pack(seq, token)
        mac = self._mac(name, raw)
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def _mac(self, name: str, raw: bytes) -> bytes:
        # Keyed BLAKE2b is a MAC in its own right and ~5x cheaper than HMAC-SHA256 here,
        # which counts at two handles (receive, delete) per message.
        return hashlib.blake2b(name.encode() + b"\0" + raw, key=self._key[:64],
                               digest_size=_MAC_BYTES).digest()

    def _parse(self, name: str, handle: Any) -> tuple[int, int]:
        """``(seq, token)`` of a handle this platform signed for queue ``name``."""
        if not isinstance(handle, str) or len(handle) != 43:
            raise InvalidReceiptHandleError(f"receipt handle {show(handle)} is malformed")
        try:
            data = base64.urlsafe_b64decode(handle + "=")
        except (binascii.Error, ValueError):
            raise InvalidReceiptHandleError(
                f"receipt handle {show(handle)} is malformed"
            ) from None
        raw, mac = data[:_HANDLE.size], data[_HANDLE.size:]
        good = self._mac(name, raw)
        # one spelling per handle: base64 ignores the last character's 2 spare bits, so
        # without this check 4 different strings would pass for the same handle
        canonical = base64.urlsafe_b64encode(data).decode().rstrip("=") == handle
        if (len(data) != _HANDLE.size + _MAC_BYTES or not canonical
                or not hmac.compare_digest(mac, good)):
            raise InvalidReceiptHandleError(
                f"receipt handle {show(handle)} was not issued by queue {name}"
            )
        seq, token = _HANDLE.unpack(raw)
        return seq, token

    def _parse_many(self, name: str, handles: Any) -> dict[str, tuple[int, int] | None]:
        if not isinstance(handles, list):
            raise InvalidParameterError("handles must be a list of receipt handles")
        keys: dict[str, tuple[int, int] | None] = {}
        for handle in handles:
            try:
                keys[handle] = self._parse(name, handle)
            except InvalidReceiptHandleError:
                keys[handle] = None
            except TypeError:  # unhashable junk
                raise InvalidParameterError(f"{show(handle)} is not a receipt handle") from None
        return keys

    # -- notifications ---------------------------------------------------------------

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(queue_name)`` whenever the queue may have newly visible
        messages: after a send, a release or change of visibility to 0, a redrive, a
        move to a dead-letter queue, and (within ``VISIBILITY_SCAN_MIN_S`` plus the
        dispatcher's latency) when a delay or visibility timeout ends. It runs on the
        notifying thread, so it must be quick; its exceptions are logged and ignored.
        A wake-up is a hint: the queue may turn out empty."""
        self._subscribers.append(callback)

    def _notify(self, name: str) -> None:
        with self._cond:
            self._generation[name] = self._generation.get(name, 0) + 1
            self._cond.notify_all()
        for callback in list(self._subscribers):
            try:
                callback(name)
            except Exception:
                log.exception("queue subscriber %r failed for %s", callback, name)

    def _hint(self, visible_at: float) -> None:
        """A message turns visible at ``visible_at``: have the visibility driver look
        then (a cheap comparison unless it is sooner than planned)."""
        visibility, dispatcher = self._visibility, self._dispatcher
        if visibility is not None and dispatcher is not None and visibility.plan(visible_at):
            dispatcher.wake(visibility.name)

    def close(self) -> None:
        """Stop long polls (they return empty). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _RetentionDriver(Driver):
    """Deletes messages past their queue's retention, every ``RETENTION_SWEEP_S``."""

    name = "queues-retention"

    def __init__(self, service: QueueService) -> None:
        self._service = service

    def run_due(self, now: float) -> float | None:
        dropped = self._service.store.expire(self._service._clock())
        if dropped:
            log.info("dropped %d messages past their retention", dropped)
        return now + RETENTION_SWEEP_S


class _VisibilityDriver(Driver):
    """Notifies subscribers when delayed or in-flight messages turn visible: at each
    run, the queues with a ``visible_at`` since the last run, then sleeps until the
    soonest future ``visible_at`` (or until a receive plans a sooner one)."""

    name = "queues-visibility"

    def __init__(self, service: QueueService) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._since = service._clock()
        self._planned = float("inf")

    def plan(self, visible_at: float) -> bool:
        """Note a future visible time; True if the driver should run sooner for it."""
        with self._lock:
            if visible_at < self._planned:
                self._planned = visible_at
                return True
            return False

    def run_due(self, now: float) -> float | None:
        service = self._service
        clock_now = service._clock()
        with self._lock:
            self._planned = float("inf")
        for queue in service.store.turned_visible(self._since, clock_now):
            service._notify(queue)
        self._since = clock_now
        due = service.store.next_visible_at(clock_now)
        if due is None:
            return None
        due = max(due, clock_now + VISIBILITY_SCAN_MIN_S)
        with self._lock:
            self._planned = min(self._planned, due)
        return now + (due - clock_now)


def _stale(name: str) -> InvalidReceiptHandleError:
    return InvalidReceiptHandleError(
        f"receipt handle is no longer current for queue {name}: the message was received "
        "again or deleted"
    )


def attach(platform: Platform) -> QueueService:
    """Build the service over ``platform``'s database and register its drivers."""
    return QueueService(
        platform.database,
        dispatcher=platform.dispatcher,
        message_bytes_limit=platform.settings.limits.message_bytes,
    )

