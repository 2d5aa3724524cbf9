"""Async invocation: accept an event at once, run it from a durable queue with retries.

``AsyncInvoker.invoke`` validates the event and commits it to the ``async_events``
table before it returns the request id (the caller's 202). The ``async-invocations``
driver leases due events in a transaction and runs each on a thread of its own through
the invoker's sync path; every attempt is an ordinary invocation record that names the
async request id and its attempt number.

Semantics (Lambda's): a function error, timeout or crash consumes an attempt; up to
``max_retries`` (0-2) more follow, each after an exponential delay with full jitter and
a minimum (:class:`RetryPolicy`). A throttle consumes none and is retried with its own
backoff until the event is older than ``max_event_age_s`` (60-21600), which sends it to
the on-failure destination with condition ``EventAgeExceeded``. Destinations
(``queue:NAME``, ``function:NAME[:QUALIFIER]``) receive Lambda's destination record.
A function destination's event is added in the transaction that removes the finished
one (exactly once); a queue destination is sent, then the event removed (at least once).

After a crash, leased events are run again: at start on SQLite (the home lock proves
the lease holder dead), else when their lease expires. Delivery is at-least-once, as on
Lambda: handlers should be idempotent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

import orjson

from faasbox.errors import (
    FaasboxError,
    InvalidParameterError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from faasbox.events.dispatcher import Driver
from faasbox.model import LATEST, Destination, InvokeResult, function_arn
from faasbox.registry.functions import split_qualified
from faasbox.stores.async_events import DELIVER, AsyncConfig, AsyncEvent, AsyncEventStore

if TYPE_CHECKING:
    from faasbox.platform import Platform

log = logging.getLogger("faasbox.events.async")

DRIVER_NAME = "async-invocations"
MAX_RETRIES = (0, 2)
MAX_EVENT_AGE_S = (60, 21600)
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_EVENT_AGE_S = 21600
SUCCESS, RETRIES_EXHAUSTED, EVENT_AGE_EXCEEDED = "Success", "RetriesExhausted", "EventAgeExceeded"
_CONFIG_FIELDS = frozenset({"max_retries", "max_event_age_s", "on_success", "on_failure"})


@dataclass(frozen=True)
class RetryPolicy:
    """Delays between attempts: ``max(min_s, uniform(0, base_s * 2**(n-1)))`` after the
    n-th failed attempt (Lambda waits about 1 then 2 minutes), and after the n-th
    throttle ``min(throttle_max_s, max(throttle_base_s, uniform(0, throttle_base_s *
    2**n)))`` (Lambda: 1 s growing to 5 min)."""

    base_s: float = 120.0
    min_s: float = 60.0
    throttle_base_s: float = 1.0
    throttle_max_s: float = 300.0
    #: A destination queue that failed for a reason that may pass is tried again after.
    delivery_retry_s: float = 10.0

    def retry_delay(self, attempt: int, rng: random.Random) -> float:
        return max(self.min_s, rng.uniform(0, self.base_s * 2 ** (attempt - 1)))

    def throttle_delay(self, throttles: int, rng: random.Random) -> float:
        spread = rng.uniform(0, self.throttle_base_s * 2 ** min(throttles, 30))
        return min(self.throttle_max_s, max(self.throttle_base_s, spread))


class _QueueSender(Protocol):
    """What a queue destination needs of the queue service."""

    def get(self, name: str) -> dict[str, Any]: ...

    def send_many(self, name: str, bodies: list[str]) -> list[str]: ...


def parse_destination(text: str) -> tuple[str, str, str | None]:
    """``queue:NAME`` -> ("queue", NAME, None); ``function:NAME[:Q]`` -> ("function",
    NAME, Q). Raises InvalidParameterError for anything else."""
    target = Destination.parse(text)
    return target.kind, target.name, target.qualifier


class AsyncInvoker:
    """Accepts events at once, runs them from a durable queue with retries.

    ``retry`` may be replaced (tests use short delays); ``workers`` events run at a time;
    a claimed event is leased for ``lease_s`` (longer than the longest function timeout).
    """

    def __init__(
        self, platform: Platform, *, retry: RetryPolicy | None = None, workers: int = 16,
        lease_s: float = 960.0,
    ) -> None:
        self._platform = platform
        self._registry = platform.registry
        self._limits = platform.settings.limits
        self.store = AsyncEventStore(platform.database)
        self.retry = retry or RetryPolicy()
        self._rng = random.Random()
        self.driver = _AsyncDriver(self, workers, lease_s)

    # -- accepting events -----------------------------------------------------------------

    def invoke(self, name: str, event: bytes, qualifier: str | None = None) -> str:
        """Accept ``event`` (JSON bytes) for ``name[:qualifier]``; returns the request id
        once the event is durable. Raises PayloadTooLargeError (over the async payload
        limit), InvalidParameterError (not JSON, bad name), NotFoundError (function,
        version or alias). Nothing is stored when it raises."""
        name, qualifier = _key(name, qualifier)
        limit = self._limits.async_payload_bytes
        if len(event) > limit:
            raise PayloadTooLargeError(
                f"async request payload is {len(event)} bytes, over the {limit}-byte limit"
            )
        if not event.strip():
            event = b"null"
        try:
            orjson.loads(event)
        except orjson.JSONDecodeError as exc:
            raise InvalidParameterError(f"payload is not valid JSON: {exc}") from None
        self._registry.resolve(name, qualifier)
        request_id = str(uuid.uuid4())
        now = time.time()
        self.store.add(AsyncEvent(request_id, name, qualifier, event, now, now))
        self._platform.dispatcher.wake(DRIVER_NAME)
        return request_id

    # -- configuration --------------------------------------------------------------------

    def put_config(self, name: str, qualifier: str | None = None, **config: Any) -> dict[str, Any]:
        """Set fields of the async config of ``name`` (or of one qualifier): None keeps a
        field, "" removes a destination. Raises InvalidParameterError (unknown field,
        out of range, malformed destination) or NotFoundError (function, qualifier,
        destination queue or function); nothing changes when it raises."""
        name, qualifier = _key(name, qualifier)
        unknown = set(config) - _CONFIG_FIELDS
        if unknown:
            raise InvalidParameterError(
                f"unknown async config fields: {sorted(unknown)}; known: {sorted(_CONFIG_FIELDS)}"
            )
        self._registry.resolve(name, qualifier)
        current = self.store.get_config(name, qualifier) or self._default(name, qualifier)
        changes = {k: v for k, v in config.items() if v is not None}
        for field, (low, high) in (("max_retries", MAX_RETRIES),
                                   ("max_event_age_s", MAX_EVENT_AGE_S)):
            value = changes.get(field, getattr(current, field))
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise InvalidParameterError(f"{field}={value!r} is out of range {low}-{high}")
        for field in ("on_success", "on_failure"):
            if field in changes:
                if not isinstance(changes[field], str):
                    raise InvalidParameterError(f"{field} must be a string, not {changes[field]!r}")
                changes[field] = changes[field] or None
                if changes[field]:
                    self._check_destination(name, changes[field])
        self.store.put_config(replace(current, **changes))
        return self.get_config(name, qualifier)

    def get_config(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        """The config in force for ``name[:qualifier]``: its own, else the unqualified
        function's, else the defaults. Raises NotFoundError."""
        name, qualifier = _key(name, qualifier)
        self._registry.resolve(name, qualifier)
        config = self.config_for(name, qualifier)
        return {
            "function": name,
            "qualifier": qualifier,
            "max_retries": config.max_retries,
            "max_event_age_s": config.max_event_age_s,
            "on_success": config.on_success,
            "on_failure": config.on_failure,
        }

    def delete_config(self, name: str, qualifier: str | None = None) -> None:
        """Remove the config of ``name[:qualifier]`` (idempotent). Raises NotFoundError
        for an unknown function."""
        name, qualifier = _key(name, qualifier)
        self._registry.get(name)
        self.store.delete_config(name, qualifier)

    def config_for(self, name: str, qualifier: str | None) -> AsyncConfig:
        """The config an event of ``name[:qualifier]`` runs with (see ``get_config``)."""
        found = self.store.get_config(name, qualifier)
        if found is None and qualifier is not None:
            found = self.store.get_config(name, None)
        return replace(found, qualifier=qualifier) if found else self._default(name, qualifier)

    @staticmethod
    def _default(name: str, qualifier: str | None) -> AsyncConfig:
        return AsyncConfig(name, qualifier, DEFAULT_MAX_RETRIES, DEFAULT_MAX_EVENT_AGE_S)

    def _check_destination(self, function: str, text: str) -> None:
        kind, name, qualifier = parse_destination(text)
        if kind == "function":
            if name == function:  # a failing function would feed itself forever
                raise InvalidParameterError(f"{function} cannot be its own destination")
            self._registry.resolve(name, qualifier)
        else:
            self.queues().get(name)

    def queues(self) -> _QueueSender:
        return cast(_QueueSender, self._platform.queues)

    def close(self) -> None:
        """Stop claiming events; running attempts finish and are written. Idempotent."""
        self.driver.close()


class _AsyncDriver(Driver):
    """Claims due events on the dispatcher loop and runs them on its own threads."""

    name = DRIVER_NAME

    def __init__(self, owner: AsyncInvoker, workers: int, lease_s: float) -> None:
        self._owner = owner
        self._store = owner.store
        self._invoker = owner._platform.invoker
        self._dispatcher = owner._platform.dispatcher
        self._workers = workers
        self._lease_s = lease_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="faasbox-async")
        self._lock = threading.Lock()
        self._running = 0
        self._closed = False

    def run_due(self, now: float) -> float | None:
        with self._lock:
            if self._closed:
                return None
            free = self._workers - self._running
            claimed = self._store.claim(now, free, self._lease_s)
            self._running += len(claimed)
            for event in claimed:
                self._pool.submit(self._run, event)
            if self._running >= self._workers:
                return None  # a finishing worker wakes the driver
        return self._store.next_due()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=True)

    # -- one event, on a worker thread ----------------------------------------------------

    def _run(self, event: AsyncEvent) -> None:
        try:
            if event.state == DELIVER:
                self._deliver(event)
            else:
                self._attempt(event)
        except Exception:  # its lease expires and it runs again: never lost
            log.exception("async event %s failed unexpectedly", event.request_id)
        finally:
            with self._lock:
                self._running -= 1
            self._dispatcher.wake(DRIVER_NAME)

    def _attempt(self, event: AsyncEvent) -> None:
        config = self._owner.config_for(event.function, event.qualifier)
        last = orjson.loads(event.last_response) if event.last_response else None
        if time.time() - event.received_at > config.max_event_age_s:
            self._conclude(event, config, EVENT_AGE_EXCEEDED, last)
            return
        attempt = event.attempts + 1
        retry, rng = self._owner.retry, self._owner._rng
        try:
            result = self._invoker.invoke(
                event.function, event.payload, event.qualifier,
                attempt_of=(event.request_id, attempt),
            )
        except TooManyRequestsError:  # no attempt used: try again until the event is too old
            delay = retry.throttle_delay(event.throttles, rng)
            self._store.update(replace(event, throttles=event.throttles + 1,
                                       next_attempt_at=time.time() + delay))
            return
        except ServiceUnavailableError:  # shutting down: it runs after the next start
            self._store.update(event)
            return
        except NotFoundError as exc:  # function, version or alias gone: retries cannot help
            response = {"statusCode": exc.http_status, "executedVersion": None,
                        "functionError": "Unhandled", "payload": exc.to_dict()}
            self._conclude(event, config, RETRIES_EXHAUSTED, response)
            return
        except Exception as exc:  # the node could not run it (recorded as a crash)
            code = exc.code if isinstance(exc, FaasboxError) else type(exc).__name__
            response = {"statusCode": 200, "executedVersion": None, "functionError": "Unhandled",
                        "payload": {"errorType": code, "errorMessage": str(exc)}}
        else:
            response = _response(result)
        event = replace(event, attempts=attempt)
        if response["functionError"] is None:
            self._conclude(event, config, SUCCESS, response)
        elif attempt <= config.max_retries:
            delay = retry.retry_delay(attempt, rng)
            self._store.update(replace(event, next_attempt_at=time.time() + delay,
                                       last_response=orjson.dumps(response).decode()))
        else:
            self._conclude(event, config, RETRIES_EXHAUSTED, response)

    def _conclude(
        self, event: AsyncEvent, config: AsyncConfig, condition: str,
        response: dict[str, Any] | None,
    ) -> None:
        """Send the outcome to its destination (if any) and remove the event."""
        destination = config.on_success if condition == SUCCESS else config.on_failure
        if not destination:
            self._store.finish(event)
            return
        record = destination_record(event, condition, response,
                                    self._owner._limits.async_payload_bytes)
        kind, name, qualifier = parse_destination(destination)
        now = time.time()
        if kind == "function":
            follow_up = AsyncEvent(str(uuid.uuid4()), name, qualifier, record, now, now)
            if self._store.finish(event, follow_up):
                self._dispatcher.wake(DRIVER_NAME)
            return
        delivering = replace(event, state=DELIVER, destination=destination, record=record,
                             next_attempt_at=now)
        if self._store.update(delivering, keep_lease=True):
            self._deliver(delivering)

    def _deliver(self, event: AsyncEvent) -> None:
        assert event.destination is not None and event.record is not None
        _, queue, _ = parse_destination(event.destination)
        try:
            self._owner.queues().send_many(queue, [event.record.decode()])
        except FaasboxError as exc:
            if 400 <= exc.http_status < 500 and exc.http_status != 429:  # it will not pass
                log.warning("dropping the destination record of async event %s for queue "
                            "%s: %s", event.request_id, queue, exc.message)
            else:
                self._later(event)
                return
        except Exception:
            log.exception("sending async event %s's record to queue %s failed; will retry",
                          event.request_id, queue)
            self._later(event)
            return
        self._store.finish(event)

    def _later(self, event: AsyncEvent) -> None:
        due = time.time() + self._owner.retry.delivery_retry_s
        self._store.update(replace(event, next_attempt_at=due))


def _key(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """The function and qualifier (None for ``$LATEST`` or none) events and configs use."""
    name, qualifier = split_qualified(name, qualifier)
    return name, None if qualifier == LATEST else qualifier


def _response(result: InvokeResult) -> dict[str, Any]:
    try:
        payload = orjson.loads(result.payload) if result.payload else None
    except orjson.JSONDecodeError:
        payload = result.payload.decode(errors="replace")
    return {"statusCode": 200, "executedVersion": result.executed_version,
            "functionError": result.function_error, "payload": payload}


def destination_record(
    event: AsyncEvent, condition: str, response: dict[str, Any] | None, limit: int,
) -> bytes:
    """Lambda's destination record of ``event`` as JSON bytes. A response payload that
    would take the record over ``limit`` bytes is left out (``responsePayload`` null and
    ``responsePayloadTruncated`` true)."""
    now = datetime.now(UTC)
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": f"{function_arn(event.function)}:{event.qualifier or LATEST}",
            "condition": condition,
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": orjson.loads(event.payload),
    }
    if response is not None:
        context = {"statusCode": response["statusCode"],
                   "executedVersion": response["executedVersion"]}
        if response["functionError"]:
            context["functionError"] = response["functionError"]
        record["responseContext"] = context
        record["responsePayload"] = response["payload"]
    data = orjson.dumps(record)
    if len(data) > limit and response is not None:
        record.update(responsePayload=None, responsePayloadTruncated=True)
        data = orjson.dumps(record)
    return data


def attach(platform: Platform) -> AsyncInvoker:
    """Build the service and register its driver. On SQLite, leases left by a crashed
    predecessor are released first: the home lock proves no one else holds them."""
    invoker = AsyncInvoker(platform)
    if platform.database.sqlite:
        released = invoker.store.release_leases()
        if released:
            log.info("%d async events were running at the last stop; they run again",
                     released)
    platform.dispatcher.add(invoker.driver)
    return invoker
