"""Queue -> function mappings: the service, its driver, and the pollers.

Each enabled mapping has a :class:`_Runner` with 1 to ``max_concurrency`` poller
threads. A poller receives a batch (one receive transaction, gathering more during
the batching window), invokes the function synchronously with the SQS event, and
acts on the outcome (one delete transaction):

- success: delete the batch, or with ``report_batch_item_failures`` (opt-in, as on
  Lambda) every message but those named in ``batchItemFailures`` (a malformed answer
  fails the whole batch);
- function error, timeout, crash: delete nothing; the batch comes back when the
  queue's visibility timeout ends (its receive count then drives the redrive policy);
- throttled: wait a growing backoff, give the batch back at once, and shrink.

Scaling: a poller whose batch came back full while the queue still has visible
messages wakes an idle poller or starts one more (up to the cap); an extra poller
that finds nothing for ``POLLER_IDLE_EXIT_S`` exits, so an idle mapping keeps one.
Pollers sleep on a condition that the queue service signals when a queue may have new
messages (``queues.subscribe``), checking anyway every ``IDLE_POLL_S`` (messages whose
delay or visibility timeout ended). Nothing durable lives here: the queue holds the
messages, the store holds the mappings, so a restart resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from faasbox.api.queues import Message
from faasbox.api.triggers import BATCH_SIZE, MAX_CONCURRENCY_MAX, UPDATABLE, Triggers
from faasbox.errors import (
    FaasboxError,
    InvalidParameterError,
    NotFoundError,
    ServiceUnavailableError,
    TooManyRequestsError,
    TriggerNotFoundError,
)
from faasbox.events.dispatcher import Driver
from faasbox.model import LATEST, REGION, queue_arn
from faasbox.registry.functions import split_qualified
from faasbox.stores.mappings import Mapping, MappingStore

if TYPE_CHECKING:
    from faasbox.platform import Platform

log = logging.getLogger("faasbox.events.mappings")

#: An idle poller looks at its queue at least this often even unsignalled (a safety net:
#: the queue service signals sends, releases and ended visibility timeouts).
IDLE_POLL_S = 5.0
#: A poller beyond the first that received nothing for this long exits.
POLLER_IDLE_EXIT_S = 3.0
#: At most one new poller per mapping this often, so a burst does not fork a crowd.
GROW_EVERY_S = 0.05
#: Throttled: back off from the first to the last, doubling.
THROTTLE_BACKOFF_S = (0.1, 5.0)
#: The queue or the function is missing: look again after this long.
PROBLEM_BACKOFF_S = 2.0
#: How long ``close`` waits for in-flight batches before leaving them to the node's
#: shutdown (their messages come back after the visibility timeout).
CLOSE_WAIT_S = 10.0

NO_RECORDS = "No records processed"
OK = "OK"

_EVENT_HEAD = b'{"Records":['
_EVENT_TAIL = b"]}"


class MappingService(Triggers):
    """The local implementation of :class:`Triggers`.

    ``max_pollers`` caps mappings without ``max_concurrency``; by default it is the
    number of sandboxes of the function's memory size that the node's capacity holds
    (more would only be throttled), at most 1000.
    """

    def __init__(self, platform: Platform, *, max_pollers: int | None = None) -> None:
        self._store = MappingStore(platform.database)
        self.queues = platform.queues
        self.registry = platform.registry
        self.invoker = platform.invoker
        self._capacity_mb = platform.settings.capacity_mb
        self.payload_limit = platform.settings.limits.sync_payload_bytes
        self._max_pollers = max_pollers
        self._lock = threading.Lock()
        self._runners: dict[str, _Runner] = {}
        self.results: dict[str, str] = {}
        self._closed = False
        self.queues.subscribe(self._on_queue)

    # -- Triggers --------------------------------------------------------------------

    def create(
        self,
        queue: str,
        function: str,
        *,
        batch_size: int = BATCH_SIZE,
        max_batching_window_s: int = 0,
        max_concurrency: int | None = None,
        enabled: bool = True,
        report_batch_item_failures: bool = False,
    ) -> dict[str, Any]:
        if not isinstance(function, str):
            raise InvalidParameterError(f"function must be NAME[:QUALIFIER], not {function!r}")
        name, qualifier = split_qualified(function)
        mapping = Mapping(
            id=str(uuid.uuid4()),
            queue=queue,
            function=name,
            qualifier=None if qualifier == LATEST else qualifier,
            batch_size=batch_size,
            max_batching_window_s=max_batching_window_s,
            max_concurrency=max_concurrency,
            enabled=enabled,
            report_batch_item_failures=report_batch_item_failures,
        ).validate()
        visibility_s = self.queues.get(queue)["visibility_timeout_s"]
        timeout_s = self._function_timeout_s(name, mapping.qualifier)
        if visibility_s < timeout_s:
            raise InvalidParameterError(
                f"queue {queue}'s visibility timeout ({visibility_s} s) is shorter than "
                f"function {mapping.target}'s timeout ({timeout_s} s): a batch would come "
                "back while it is still being processed; raise the visibility timeout"
            )
        stored = self._store.insert(mapping)
        self._apply(stored.id)
        return self._describe(stored)

    def get(self, id: str) -> dict[str, Any]:
        return self._describe(self._store.get(id))

    def list(
        self, queue: str | None = None, function: str | None = None
    ) -> list[dict[str, Any]]:
        name = qualifier = None
        if function is not None:
            name, qualifier = split_qualified(function)
            qualifier = "" if qualifier == LATEST else qualifier
        return [self._describe(m) for m in self._store.list(queue, name, qualifier)]

    def update(self, id: str, **changes: Any) -> dict[str, Any]:
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise InvalidParameterError(
                f"unknown trigger fields: {sorted(unknown)}; known: {list(UPDATABLE)}"
            )
        # None leaves a field as it is; only max_concurrency=None means something (no limit)
        changes = {k: v for k, v in changes.items() if v is not None or k == "max_concurrency"}
        mapping = self._store.update(id, **changes)
        self._apply(id)
        return self._describe(mapping)

    def enable(self, id: str) -> dict[str, Any]:
        return self.update(id, enabled=True)

    def disable(self, id: str) -> dict[str, Any]:
        return self.update(id, enabled=False)

    def delete(self, id: str) -> None:
        self._store.delete(id)
        self._apply(id)

    # -- lifecycle -------------------------------------------------------------------

    def resume(self) -> None:
        """Bring the runners in line with the stored mappings (at start: resume)."""
        with self._lock:
            stored = {m.id: m for m in self._store.list()}
            for id in [id for id in self._runners if id not in stored]:
                self._runners.pop(id).stop()
            for mapping in stored.values():
                self._apply_locked(mapping)

    def close(self) -> None:
        """Stop every poller, letting in-flight batches finish (up to ``CLOSE_WAIT_S``).
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runners = list(self._runners.values())
            self._runners.clear()
        for runner in runners:
            runner.stop()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for runner in runners:
            if not runner.join(deadline - time.monotonic()):
                log.warning("trigger %s: a batch is still running at shutdown; its "
                            "messages come back after the visibility timeout",
                            runner.mapping.id)

    # -- internals -------------------------------------------------------------------

    def _function_timeout_s(self, name: str, qualifier: str | None) -> int:
        """The longest timeout among the versions ``name:qualifier`` may run."""
        if qualifier is None or qualifier.isdigit():
            return self.registry.get(name, qualifier or LATEST).config.timeout_s
        alias = self.registry.alias(name, qualifier)
        versions = [alias.version] + ([alias.additional_version]
                                      if alias.additional_version else [])
        return max(self.registry.get(name, v).config.timeout_s for v in versions)

    def _describe(self, mapping: Mapping) -> dict[str, Any]:
        data = mapping.to_dict()
        runner = self._runners.get(mapping.id)
        data["pollers"] = runner.pollers if runner is not None else 0
        data["last_processing_result"] = self.results.get(mapping.id, NO_RECORDS)
        return data

    def _apply(self, id: str) -> None:
        """Start, reconfigure or stop the runner of mapping ``id`` as its row now says.
        Read under the lock, so concurrent changes apply in the order they committed."""
        with self._lock:
            try:
                mapping = self._store.get(id)
            except TriggerNotFoundError:  # deleted
                runner = self._runners.pop(id, None)
                if runner is not None:
                    runner.stop()
                self.results.pop(id, None)
                return
            self._apply_locked(mapping)

    def _prewarm(self, mapping: Mapping) -> None:
        """A trigger just started: its first batch should find a warm sandbox, not pay
        for an interpreter and the function's imports."""
        with contextlib.suppress(NotFoundError):  # the pollers report it
            self.invoker.prewarm(mapping.function, mapping.qualifier)

    def _apply_locked(self, mapping: Mapping) -> None:
        if self._closed:
            return
        runner = self._runners.get(mapping.id)
        if not mapping.enabled:
            if runner is not None:
                self._runners.pop(mapping.id).stop()
        elif runner is None:
            runner = self._runners[mapping.id] = _Runner(self, mapping)
            runner.start_poller()
            self._prewarm(mapping)
        else:
            runner.reconfigure(mapping)

    def _on_queue(self, queue: str) -> None:
        """Queue service callback: ``queue`` may have newly visible messages."""
        for runner in list(self._runners.values()):
            if runner.mapping.queue == queue:
                runner.signal()

    def cap(self, mapping: Mapping, memory_mb: int) -> int:
        """Most pollers ``mapping`` (of a function of ``memory_mb``) may run now."""
        if mapping.max_concurrency is not None:
            return mapping.max_concurrency
        if self._max_pollers is not None:
            return self._max_pollers
        return max(1, min(MAX_CONCURRENCY_MAX, self._capacity_mb // max(memory_mb, 1)))


class _Runner:
    """The pollers of one enabled mapping. ``mapping`` is swapped on update; pollers
    read it at the start of each batch."""

    def __init__(self, service: MappingService, mapping: Mapping) -> None:
        self.service = service
        self.mapping = mapping
        self.pollers = 0
        self._waiting = 0
        self._signals = 0
        self._stopped = False
        self._grown_at = 0.0
        self._cond = threading.Condition()
        self._threads: set[threading.Thread] = set()
        self._queues = service.queues

    # -- control (any thread) ----------------------------------------------------------

    def start_poller(self) -> None:
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self.pollers:  # growth is paced; the first poller is not growth
            self._grown_at = time.monotonic()
        self.pollers += 1
        thread = threading.Thread(target=self._poll, daemon=True,
                                  name=f"faasbox-trigger-{self.mapping.id[:8]}")
        self._threads.add(thread)
        thread.start()

    def reconfigure(self, mapping: Mapping) -> None:
        with self._cond:
            self.mapping = mapping
            self._signals += 1
            self._cond.notify_all()  # pollers over a lowered cap leave at once

    def signal(self) -> None:
        with self._cond:
            self._signals += 1
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def join(self, timeout_s: float) -> bool:
        """Wait for the pollers to exit; False if some still run after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _result(self, text: str) -> None:
        self.service.results[self.mapping.id] = text

    # -- a poller thread -----------------------------------------------------------------

    def _poll(self) -> None:
        idle_since = time.monotonic()
        backoff = 0.0  # > 0 after a throttle: a poller to spare
        counted = True
        try:
            while True:
                mapping = self.mapping
                with self._cond:
                    idle = time.monotonic() - idle_since > POLLER_IDLE_EXIT_S
                    over = (mapping.max_concurrency is not None
                            and self.pollers > mapping.max_concurrency)
                    if self._stopped or (self.pollers > 1 and (idle or over or backoff > 0)):
                        self.pollers -= 1
                        counted = False
                        return
                    seen = self._signals
                try:
                    got, backoff = self._round(mapping, seen, backoff)
                except Exception as exc:  # a poller must outlive any one failure
                    if isinstance(exc, FaasboxError):
                        self._result(f"PROBLEM: {exc.message}")
                    else:
                        log.exception("trigger %s: poller failed", mapping.id)
                        self._result("PROBLEM: internal error (see the server log)")
                    self._sleep(PROBLEM_BACKOFF_S)
                    continue
                if got:
                    idle_since = time.monotonic()
        finally:
            with self._cond:
                if counted:
                    self.pollers -= 1
                self._threads.discard(threading.current_thread())

    def _round(self, mapping: Mapping, seen: int, backoff: float) -> tuple[bool, float]:
        """Receive one batch and settle it, or wait when there is none. Returns whether
        a batch came and the throttling backoff now. Raises NotFoundError when the
        queue or the function is gone (before anything is received)."""
        version = self.service.registry.resolve(mapping.function, mapping.qualifier)
        batch = self._collect(mapping)
        if not batch:
            self._wait(seen, IDLE_POLL_S)
            return False, backoff
        if len(batch) >= mapping.batch_size:
            self._more(mapping, self.service.cap(mapping, version.config.memory_mb))
        unsettled = self._process(mapping, batch)
        if not unsettled:
            return True, 0.0
        low, high = THROTTLE_BACKOFF_S
        backoff = min(high, max(low, backoff * 2))
        self._sleep(backoff)  # the batch stays invisible meanwhile: no one retries at once
        self._queues.release(mapping.queue, [m.receipt_handle for m in unsettled], 0)
        return True, backoff

    def _wait(self, seen: int, timeout_s: float) -> None:
        """Sleep until signalled, stopped, or ``timeout_s``."""
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._signals != seen or self._stopped, timeout_s)
            finally:
                self._waiting -= 1

    def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopped, seconds)

    def _more(self, mapping: Mapping, cap: int) -> None:
        """A full batch: if more messages wait, wake an idle poller or start one."""
        with self._cond:
            if self._waiting:
                self._signals += 1
                self._cond.notify()
                return
            if (self.pollers >= cap or self._stopped
                    or time.monotonic() - self._grown_at < GROW_EVERY_S):
                return
        if self._queues.counts(mapping.queue)["visible"] > 0:
            with self._cond:
                if self.pollers < cap and not self._stopped:
                    self._start_locked()

    def _collect(self, mapping: Mapping) -> list[Message]:
        """One batch: up to ``batch_size`` messages, gathering for the batching window
        while it is not full. Empty when the queue has nothing visible."""
        batch = list(self._queues.receive_batch(mapping.queue, mapping.batch_size))
        if not batch or mapping.max_batching_window_s == 0:
            return batch
        deadline = time.monotonic() + mapping.max_batching_window_s
        while len(batch) < mapping.batch_size:
            with self._cond:
                if self._stopped:
                    break
                seen = self._signals
            more = self._queues.receive_batch(mapping.queue, mapping.batch_size - len(batch))
            if more:
                batch.extend(more)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait(seen, min(left, IDLE_POLL_S))
        return batch

    def _process(self, mapping: Mapping, batch: list[Message]) -> list[Message]:
        """Invoke the function with ``batch``, in chunks whose event stays under the
        sync payload limit, settling each. Returns the messages left unsettled because
        the invocation was throttled (empty otherwise)."""
        arn = queue_arn(mapping.queue)
        parts = [(m, orjson.dumps(_record(m, arn))) for m in batch]
        chunks = list(_chunks(parts, self.service.payload_limit))
        for number, chunk in enumerate(chunks):
            if not self._invoke(mapping, chunk):
                return [m for rest in chunks[number:] for m, _ in rest]
        return []

    def _invoke(self, mapping: Mapping, chunk: list[tuple[Message, bytes]]) -> bool:
        """One invocation and its settlement. False when throttled (nothing settled)."""
        event = _EVENT_HEAD + b",".join(part for _, part in chunk) + _EVENT_TAIL
        messages = [m for m, _ in chunk]
        try:
            result = self.service.invoker.invoke(mapping.function, event, mapping.qualifier)
        except TooManyRequestsError:
            self._result("PROBLEM: Function call throttled")
            return False
        except (NotFoundError, ServiceUnavailableError) as exc:
            # It never ran: hand the batch straight back rather than wait out the timeout.
            self._queues.release(mapping.queue, [m.receipt_handle for m in messages], 0)
            raise exc from None
        except FaasboxError as exc:  # e.g. one message too big alone: the batch fails
            self._result(f"PROBLEM: {exc.message}")
            return True
        if result.function_error:
            self._result("PROBLEM: Function call failed")
            return True
        done = messages
        if mapping.report_batch_item_failures:
            failed = batch_item_failures(result.payload, {m.message_id for m in messages})
            if failed is None:
                self._result("PROBLEM: Function returned an invalid batchItemFailures response")
                return True
            done = [m for m in messages if m.message_id not in failed]
        if done:
            stale = self._queues.delete_handles(mapping.queue, [m.receipt_handle for m in done])
            if stale:
                log.warning("trigger %s: %d message(s) were received again before their "
                            "batch finished; raise the visibility timeout of queue %s",
                            mapping.id, len(stale), mapping.queue)
        self._result(OK)
        return True


def batch_item_failures(payload: bytes, ids: set[str]) -> set[str] | None:
    """The message ids a function's answer reports as failed (Lambda's
    ReportBatchItemFailures): empty for null, a non-object, or an object without (or
    with an empty or null) ``batchItemFailures``. None -- the whole batch failed -- for
    invalid JSON or any entry whose ``itemIdentifier`` is not a message id of the
    batch."""
    try:
        response = orjson.loads(payload) if payload.strip() else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(response, dict):
        return set()
    entries = response.get("batchItemFailures")
    if entries is None:
        return set()
    if not isinstance(entries, list):
        return None
    failed = set()
    for entry in entries:
        ident = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(ident, str) or ident not in ids:
            return None
        failed.add(ident)
    return failed


def _record(message: Message, arn: str) -> dict[str, Any]:
    """One entry of the SQS event's ``Records``, as Lambda builds it."""
    return {
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": message.attributes,
        "messageAttributes": {
            name: _event_attribute(value) for name, value in message.message_attributes.items()
        },
        "md5OfBody": message.md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    }


def _event_attribute(value: Any) -> Any:
    """SQS API attribute (``DataType``, ``StringValue``...) -> the event's lower-camel
    shape (``dataType``, ``stringValue``, ``stringListValues``, ``binaryListValues``)."""
    if not isinstance(value, dict):
        return value
    shaped: dict[str, Any] = {"stringListValues": [], "binaryListValues": []}
    for key, item in value.items():
        shaped[key[:1].lower() + key[1:]] = item
    return shaped


def _chunks(
    parts: list[tuple[Message, bytes]], limit: int
) -> Iterator[list[tuple[Message, bytes]]]:
    """Split encoded records into runs whose event stays within ``limit`` bytes (a
    record too big alone goes alone, and its invocation is refused as too large)."""
    size = len(_EVENT_HEAD) + len(_EVENT_TAIL)
    chunk: list[tuple[Message, bytes]] = []
    used = size
    for part in parts:
        extra = len(part[1]) + (1 if chunk else 0)
        if chunk and used + extra > limit:
            yield chunk
            chunk, used = [], size
            extra = len(part[1])
        chunk.append(part)
        used += extra
    if chunk:
        yield chunk


class MappingDriver(Driver):
    """Resumes the stored mappings when the dispatcher starts; stops them at close."""

    name = "mappings"

    def __init__(self, service: MappingService) -> None:
        self._service = service

    def run_due(self, now: float) -> float | None:
        self._service.resume()
        return None

    def close(self) -> None:
        self._service.close()


def attach(platform: Platform) -> MappingService:
    """Build the service over ``platform``'s stores and register its driver."""
    service = MappingService(platform)
    platform.dispatcher.add(MappingDriver(service))
    return service
