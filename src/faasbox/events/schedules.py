"""ScheduleService: schedules that invoke functions, and the driver that fires them.

The driver ("schedules") wakes at the soonest ``next_run_at``. For each due schedule it
claims the tick in one transaction that moves ``next_run_at`` to the first tick after
now (so ticks missed while down collapse into one run), then hands the invocation to a
worker thread, which calls the sync invoker -- the run's end is known, which is what
the overlap policy needs -- and writes the result to the schedule's row. A crash
between the claim and the invocation skips that tick (at most once per tick).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from faasbox.api.schedules import (
    ERROR,
    FAILED,
    NAME_RE,
    OVERLAPS,
    SUCCEEDED,
    THROTTLED,
    UPDATABLE,
    Schedule,
    Schedules,
    scheduled_event,
)
from faasbox.errors import (
    ConflictError,
    FaasboxError,
    InvalidParameterError,
    ScheduleNotFoundError,
    TooManyRequestsError,
)
from faasbox.events import expressions
from faasbox.events.dispatcher import Driver
from faasbox.registry.functions import split_qualified
from faasbox.stores.schedules import ScheduleStore

if TYPE_CHECKING:
    from faasbox.config import Limits
    from faasbox.invoker import Invoker
    from faasbox.platform import Platform
    from faasbox.registry.functions import Registry

log = logging.getLogger("faasbox.events.schedules")

DRIVER = "schedules"
#: Runs in flight at once, all schedules together (more wait for a worker).
MAX_WORKERS = 32


@lru_cache(maxsize=1024)
def _parse(expression: str, timezone: str) -> expressions.Expression:
    return expressions.parse(expression, timezone)


class ScheduleService(Schedules):
    """The local implementation of :class:`Schedules`."""

    def __init__(
        self,
        store: ScheduleStore,
        registry: Registry,
        invoker: Invoker,
        limits: Limits,
        wake: Callable[[], None],
        max_workers: int = MAX_WORKERS,
    ) -> None:
        self._store = store
        self._registry = registry
        self._invoker = invoker
        self._limits = limits
        self._wake = wake
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="faasbox-schedule")
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.driver = ScheduleDriver(self)

    # -- the API -------------------------------------------------------------------------

    def create(
        self,
        name: str,
        expression: str,
        target: str,
        *,
        timezone: str = "UTC",
        input: Any = None,
        overlap: str = "skip",
        enabled: bool = True,
        start_at: float | None = None,
    ) -> dict[str, Any]:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidParameterError(
                f"invalid schedule name {name!r}: use 1-64 letters, digits, '.', '-' or '_'"
            )
        if not isinstance(enabled, bool):
            raise InvalidParameterError(f"enabled must be true or false, not {enabled!r}")
        now = time.time()
        draft = Schedule(
            name=name, expression=expression, target=target, timezone=timezone,
            input=self._input(input), overlap=overlap, enabled=enabled,
            start_at=now if start_at is None else start_at, created_at=now,
        )
        schedule = self._validated(draft, now)
        self._store.insert(schedule)
        self._wake()
        return schedule.to_dict()

    def update(self, name: str, **changes: Any) -> dict[str, Any]:
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise InvalidParameterError(
                f"cannot update {', '.join(sorted(unknown))}: updatable fields are "
                f"{', '.join(sorted(UPDATABLE))}"
            )
        if "input" in changes:
            changes["input"] = self._input(changes["input"])
        while True:  # retried only when a claim or a finished run changed the row between
            before = self._get(name)
            now = time.time()
            after = self._validated(replace(before, **changes), now, before)
            if self._store.replace(before, after):
                self._wake()
                return after.to_dict()

    def get(self, name: str) -> dict[str, Any]:
        return self._get(name).to_dict()

    def list(self, prefix: str | None = None) -> list[dict[str, Any]]:
        return [schedule.to_dict() for schedule in self._store.list(prefix)]

    def delete(self, name: str) -> None:
        if not self._store.delete(name):
            raise ScheduleNotFoundError(name)

    def enable(self, name: str) -> dict[str, Any]:
        while True:
            before = self._get(name)
            if before.enabled:
                return before.to_dict()
            expression = _parse(before.expression, before.timezone)
            if isinstance(expression, expressions.At) and before.last_tick_at == expression.when:
                raise ConflictError(
                    f"schedule {name!r} is a one-time schedule that already ran; give it a "
                    "new at(...) expression with update to run it again"
                )
            after = replace(before, enabled=True,
                            next_run_at=_first_run(expression, before.start_at, time.time()))
            if self._store.replace(before, after):
                self._wake()
                return after.to_dict()

    def disable(self, name: str) -> dict[str, Any]:
        while True:
            before = self._get(name)
            if not before.enabled:
                return before.to_dict()
            after = replace(before, enabled=False, next_run_at=None)
            if self._store.replace(before, after):
                return after.to_dict()

    def close(self) -> None:
        """Stop taking ticks and wait for runs in progress to finish. Idempotent."""
        self._closed = True
        self._pool.shutdown(wait=True)

    # -- validation ----------------------------------------------------------------------

    def _get(self, name: str) -> Schedule:
        schedule = self._store.get(name) if isinstance(name, str) else None
        if schedule is None:
            raise ScheduleNotFoundError(name)
        return schedule

    def _input(self, value: Any) -> str | None:
        if value is None:
            return None
        try:
            text = orjson.dumps(value).decode()
        except TypeError as exc:
            raise InvalidParameterError(f"input is not JSON-serializable: {exc}") from None
        limit = self._limits.async_payload_bytes
        if len(text) > limit:
            raise InvalidParameterError(
                f"input is {len(text)} bytes of JSON, over the {limit}-byte limit"
            )
        return text

    def _validated(self, draft: Schedule, now: float, before: Schedule | None = None) -> Schedule:
        """``draft`` checked (expression, timezone, target, overlap, start) with its next
        run computed: kept from ``before`` when the timing did not change."""
        if not isinstance(draft.expression, str) or not isinstance(draft.timezone, str):
            raise InvalidParameterError("expression and timezone must be strings")
        expression = _parse(draft.expression, draft.timezone)
        if draft.overlap not in OVERLAPS:
            raise InvalidParameterError(
                f"invalid overlap {draft.overlap!r}: use 'skip' (the default) or 'allow'"
            )
        start_at = draft.start_at
        if isinstance(start_at, bool) or not isinstance(start_at, int | float) or (
            not math.isfinite(start_at)
        ):
            raise InvalidParameterError(
                f"invalid start_at {start_at!r}: give epoch seconds (a number)"
            )
        if not isinstance(draft.target, str):
            raise InvalidParameterError(
                f"invalid target {draft.target!r}: give function[:qualifier]"
            )
        function, qualifier = split_qualified(draft.target)
        self._registry.resolve(function, qualifier)  # raises the NotFoundError that fits
        target = f"{function}:{qualifier}" if qualifier else function
        schedule = replace(draft, expression=expression.text, target=target,
                           start_at=float(start_at))
        timing_same = before is not None and (
            (before.expression, before.timezone, before.start_at)
            == (schedule.expression, schedule.timezone, schedule.start_at)
        )
        if not schedule.enabled or timing_same:
            return schedule
        return replace(schedule, next_run_at=_first_run(expression, schedule.start_at, now))

    # -- firing --------------------------------------------------------------------------

    def run_due(self, now: float) -> float | None:
        """Claim every due tick and start its run; returns the soonest next run."""
        if self._closed:
            return None
        for schedule in self._store.due(now):
            self._fire(schedule, now)
        return self._store.soonest()

    def _fire(self, schedule: Schedule, now: float) -> None:
        tick = schedule.next_run_at
        assert tick is not None
        try:
            expression = _parse(schedule.expression, schedule.timezone)
        except InvalidParameterError as exc:  # stored before a stricter parser: stop it
            log.error("schedule %s has an invalid expression, disabling it: %s",
                      schedule.name, exc)
            self._store.claim(schedule.name, tick, None, run_at=None, finished=True)
            return
        following = expression.next_after(max(now, tick), schedule.start_at)
        with self._lock:
            busy = self._running.get(schedule.name, 0) > 0
            fire = schedule.overlap == "allow" or not busy
            run_at = time.time() if fire else None
            won = self._store.claim(schedule.name, tick, following, run_at=run_at,
                                    finished=following is None and expression.one_time)
            if not won or run_at is None:
                return
            self._running[schedule.name] = self._running.get(schedule.name, 0) + 1
        self._pool.submit(self._run, schedule, tick, run_at)

    def _run(self, schedule: Schedule, tick: float, run_at: float) -> None:
        """Invoke the target once and record how it went (never raises)."""
        request_id: str | None = None
        error: str | None = None
        try:
            if schedule.input is not None:
                event = schedule.input.encode()
            else:
                event = orjson.dumps(scheduled_event(schedule.name, tick))
            result = self._invoker.invoke(schedule.target, event)
            request_id = result.request_id
            status = FAILED if result.function_error else SUCCEEDED
            if result.function_error:
                error = _error_text(result.payload)
        except TooManyRequestsError as exc:  # a failed run; the next tick tries again
            status, error = THROTTLED, exc.message
        except FaasboxError as exc:
            status, error = ERROR, f"{exc.code}: {exc.message}"
        except Exception as exc:  # the run is recorded whatever happened
            log.exception("schedule %s: invoking %s failed", schedule.name, schedule.target)
            status, error = ERROR, f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._running[schedule.name] -= 1
                if not self._running[schedule.name]:
                    del self._running[schedule.name]
        try:
            self._store.finish(schedule.name, run_at, status, request_id, error)
        except Exception:
            log.exception("schedule %s: recording the run failed", schedule.name)


class ScheduleDriver(Driver):
    """The dispatcher's side of :class:`ScheduleService`."""

    name = DRIVER

    def __init__(self, service: ScheduleService) -> None:
        self._service = service

    def run_due(self, now: float) -> float | None:
        return self._service.run_due(now)


def _first_run(expression: expressions.Expression, start_at: float, now: float) -> float | None:
    """When a schedule enabled at ``now`` first runs: its first tick after now; an at()
    whose time has passed runs at once."""
    if isinstance(expression, expressions.At):
        return expression.when
    return expression.next_after(now, start_at)


def _error_text(payload: bytes) -> str:
    """``errorType: errorMessage`` of a Lambda error payload, cut to a readable size."""
    try:
        data = orjson.loads(payload)
        text = f"{data.get('errorType', 'Error')}: {data.get('errorMessage', '')}"
    except (orjson.JSONDecodeError, AttributeError):
        text = payload.decode(errors="replace")
    return text[:1000]


def attach(platform: Platform) -> ScheduleService:
    """Build the service over ``platform``'s stores and register its driver."""
    store = ScheduleStore(platform.database)
    if platform.database.sqlite:
        # One control plane per SQLite state file: a run still marked Running was cut
        # short when the previous one stopped.
        store.interrupt_running()
    service = ScheduleService(
        store, platform.registry, platform.invoker, platform.settings.limits,
        wake=lambda: platform.dispatcher.wake(DRIVER),
    )
    platform.dispatcher.add(service.driver)
    return service
