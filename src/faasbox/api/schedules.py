"""Schedules with EventBridge Scheduler semantics.

A schedule invokes one function (``name[:qualifier]``) at the ticks of an expression --
``rate(...)``, ``cron(...)`` (EventBridge's six fields), ``at(...)`` (once) or a five-field
Unix cron -- read in the schedule's IANA timezone. The function receives the schedule's
fixed ``input`` when one is set, otherwise an EventBridge scheduled event
(:func:`scheduled_event`).

Delivery is at most once per tick: claiming a tick moves ``next_run_at`` on in one
transaction before the function runs, so a tick never fires twice, and a crash between
the claim and the invocation skips that tick. Ticks missed while the platform was down
fire once (not once each) when it is back, then the schedule resumes at its next future
tick. With ``overlap="skip"`` (the default) a tick that comes while the previous run is
still going is skipped and counted; ``"allow"`` runs both.

Schedule dicts are JSON-ready: ``name``, ``arn``, ``expression``, ``timezone``,
``target``, ``input`` (the fixed input, or None), ``enabled``, ``overlap``,
``start_at``, ``created_at``, ``next_run_at`` (None when disabled or done),
``last_run_at``, ``last_tick_at`` (the tick that run was for), ``last_status``
(None, or one of :data:`RUN_STATUSES`), ``last_request_id``, ``last_error``,
``run_count``, ``skipped_count``. Times are epoch seconds.
"""

from __future__ import annotations

import abc
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from faasbox.model import ACCOUNT_ID, REGION, schedule_arn

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
OVERLAPS = ("skip", "allow")
#: ``last_status`` values: the run is going; the function returned; it failed (handler
#: error, timeout, out of memory); it was throttled (not retried: the next tick runs as
#: usual); it could not be invoked at all (its function is gone...); the control plane
#: stopped while it ran.
RUNNING, SUCCEEDED, FAILED, THROTTLED, ERROR, INTERRUPTED = (
    "Running", "Succeeded", "Failed", "Throttled", "Error", "Interrupted",
)
RUN_STATUSES = (RUNNING, SUCCEEDED, FAILED, THROTTLED, ERROR, INTERRUPTED)
#: Fields ``Schedules.update`` may change.
UPDATABLE = frozenset({"expression", "timezone", "target", "input", "overlap", "start_at"})


@dataclass(frozen=True)
class Schedule:
    """One schedule as stored. ``input`` is the fixed input's JSON text, or None."""

    name: str
    expression: str
    target: str
    timezone: str = "UTC"
    input: str | None = None
    enabled: bool = True
    overlap: str = "skip"
    start_at: float = 0.0
    created_at: float = 0.0
    next_run_at: float | None = None
    last_run_at: float | None = None
    last_tick_at: float | None = None
    last_status: str | None = None
    last_request_id: str | None = None
    last_error: str | None = None
    run_count: int = 0
    skipped_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input"] = None if self.input is None else orjson.loads(self.input)
        return {"name": self.name, "arn": schedule_arn(self.name), **data}


def event_time(tick: float) -> str:
    """``tick`` as EventBridge writes event times: ``2024-05-01T12:00:00Z``."""
    return datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(schedule: str, tick: float) -> dict[str, Any]:
    """The EventBridge scheduled event a schedule without fixed input sends."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": event_time(tick),
        "region": REGION,
        "resources": [schedule_arn(schedule)],
        "detail": {},
    }


class Schedules(abc.ABC):
    """The schedules of one platform. Names: ``^[A-Za-z0-9_.-]{1,64}$``.

    Every method that takes bad input raises InvalidParameterError naming what is
    wrong and changes nothing; a missing schedule raises ScheduleNotFoundError."""

    @abc.abstractmethod
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
        """Create a schedule and return it.

        ``target`` is ``function[:qualifier]`` and must resolve now (else the
        function's, version's or alias's NotFoundError). ``input`` is any JSON value
        sent as the event (None: the scheduled event). ``start_at`` (default now):
        rate() ticks are ``start_at + k * period`` (k >= 1) and cron ticks before it do
        not fire. The first run is the first tick after now; an at() time already past
        runs once, as soon as possible. Raises ConflictError if the name is taken."""

    @abc.abstractmethod
    def update(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change some of :data:`UPDATABLE` (validated as in ``create``; ``input=None``
        removes the fixed input) and return the schedule. An enabled schedule's next
        run is computed again from now when its timing changed."""

    @abc.abstractmethod
    def get(self, name: str) -> dict[str, Any]:
        """The schedule."""

    @abc.abstractmethod
    def list(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """Schedules sorted by name, optionally those whose name starts with ``prefix``."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete the schedule. A run in progress finishes; its result is dropped."""

    @abc.abstractmethod
    def enable(self, name: str) -> dict[str, Any]:
        """Enable the schedule (idempotent): it runs next at its first tick after now
        (ticks missed while disabled do not fire). Raises ConflictError for an at()
        schedule that already ran (update its expression first)."""

    @abc.abstractmethod
    def disable(self, name: str) -> dict[str, Any]:
        """Disable the schedule (idempotent): no more runs; a run in progress finishes."""
