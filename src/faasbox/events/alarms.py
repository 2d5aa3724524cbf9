"""AlarmService: CloudWatch metric alarms, evaluated after every metrics tick.

Evaluation (:func:`evaluate`) is a pure function of the alarm, the metric's values per
period and the time. The window is the last ``evaluation_periods`` complete periods;
the running period may fire the alarm early where its breach is final (a Sum that
already reached a ``>=`` threshold). Levels sampled at a tick belong to the period that
just ended, so a queue that got too deep fires at the tick that saw it. Missing periods
count as
``treat_missing_data`` says: ``breaching`` and ``notBreaching`` fill them in;
``missing`` and ``ignore`` judge the periods that have data (with
``datapoints_to_alarm`` capped at their number), and when none has data ``missing``
gives ``INSUFFICIENT_DATA`` while ``ignore`` keeps the current state.

Actions are delivered at least once: the state change, its history and its events are
one transaction (an outbox); delivery happens after it and is retried until it
succeeds, is refused for good (the target is gone), or has failed ``MAX_ATTEMPTS``
times. A crash between delivering and noting it delivers the event again; never
losing an alarm is worth a duplicate, which every Lambda and SQS consumer tolerates.
What a crash left in the outbox is delivered when the platform opens again
(:meth:`AlarmService.resume`, before the dispatcher starts).
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from faasbox.api.alarms import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    OPERATORS,
    STATES,
    AlarmDefinition,
    Alarms,
    compare,
    parse_action,
)
from faasbox.errors import (
    AlarmNotFoundError,
    FaasboxError,
    InvalidParameterError,
    NotFoundError,
    PayloadTooLargeError,
)
from faasbox.events.dispatcher import Driver
from faasbox.model import ACCOUNT_ID, LATEST, REGION, alarm_arn, validate_name
from faasbox.stores.alarms import AlarmRow, AlarmStore, PendingAction

if TYPE_CHECKING:
    from faasbox.platform import Platform

log = logging.getLogger(__name__)

#: An action that keeps failing (not for good) is given up after this many tries.
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation: the state the alarm should be in, and why."""

    state: str
    reason: str
    reason_data: dict[str, Any]


def evaluate(
    alarm: AlarmDefinition, values: Mapping[int, float], now: float, current: str
) -> Evaluation:
    """The state ``alarm`` should be in at ``now``, given the statistic's value per
    period start (periods without data are absent) and its ``current`` state.

    The window is the last ``evaluation_periods`` complete periods. The period still
    running at ``now`` can only fire the alarm early, and only where its value cannot
    stop breaching as more data comes (see :func:`final_when_breaching`)."""
    period = alarm.period_s
    running = int(now // period) * period
    outcome = _judge(alarm, values, running - period, now, current)
    if (outcome.state != ALARM and running in values and final_when_breaching(alarm)
            and compare(alarm.comparison_operator, values[running], alarm.threshold)):
        early = _judge(alarm, values, running, now, current)
        if early.state == ALARM:
            return early
    return outcome


def final_when_breaching(alarm: AlarmDefinition) -> bool:
    """Whether a breach of a running period stays a breach once the period is complete:
    Sum, SampleCount and Maximum only grow as samples come in (counts are never
    negative), Minimum only shrinks."""
    if alarm.comparison_operator.startswith("Greater"):
        return alarm.statistic in ("Sum", "SampleCount", "Maximum")
    return alarm.statistic == "Minimum"


def _judge(
    alarm: AlarmDefinition, values: Mapping[int, float], last: int, now: float, current: str
) -> Evaluation:
    """M of N over the ``evaluation_periods`` periods ending with the one at ``last``."""
    period, n = alarm.period_s, alarm.evaluation_periods
    window = [last - (n - 1 - i) * period for i in range(n)]
    present = [(ts, values[ts]) for ts in window if ts in values]
    missing = n - len(present)
    breaches = sum(compare(alarm.comparison_operator, v, alarm.threshold) for _, v in present)
    needed = alarm.datapoints_to_alarm
    treat = alarm.treat_missing_data
    data = {
        "version": "1.0",
        "queryDate": iso(now),
        "startDate": iso(window[0]),
        "statistic": alarm.statistic,
        "period": period,
        "recentDatapoints": [v for _, v in present],
        "threshold": alarm.threshold,
        "evaluatedDatapoints": [
            {"timestamp": iso(ts), **({"value": values[ts]} if ts in values else {})}
            for ts in reversed(window)
        ],
    }
    if treat == "breaching":
        breaches += missing
    elif treat in ("missing", "ignore"):
        if not present:
            if treat == "ignore":
                return Evaluation(current, f"No data in {n} periods: state kept", data)
            unit = "datapoint was" if n == 1 else "datapoints were"
            return Evaluation(
                INSUFFICIENT_DATA, f"Insufficient Data: {n} {unit} unknown.", data
            )
        needed = min(needed, len(present))
    state = ALARM if breaches >= needed else OK
    shown = ", ".join(f"{_show(v)} ({iso(ts)[:19]})" for ts, v in reversed(present))
    missing_note = f", {missing} missing treated as {treat}" if missing else ""
    reason = (
        f"Threshold Crossed: {breaches} out of the last {n} datapoints [{shown}"
        f"{missing_note}] {'was' if breaches == 1 else 'were'} "
        f"{OPERATORS[alarm.comparison_operator]} the threshold ({_show(alarm.threshold)})"
        f" (minimum {needed} datapoint{'s' if needed != 1 else ''} for ALARM)."
    )
    return Evaluation(state, reason, data)


def iso(ts: float) -> str:
    """CloudWatch's timestamp format: ``2024-05-01T12:00:00.000+0000``."""
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _show(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def alarm_event(row: AlarmRow, outcome: Evaluation, now: float) -> dict[str, Any]:
    """The event CloudWatch gives a Lambda function as an alarm action."""
    alarm = row.definition
    return {
        "source": "aws.cloudwatch",
        "alarmArn": alarm_arn(alarm.name),
        "accountId": ACCOUNT_ID,
        "time": iso(now),
        "region": REGION,
        "alarmData": {
            "alarmName": alarm.name,
            "state": {"value": outcome.state, "reason": outcome.reason,
                      "reasonData": json.dumps(outcome.reason_data), "timestamp": iso(now)},
            "previousState": {"value": row.state, "reason": row.state_reason,
                              "reasonData": json.dumps(row.state_reason_data),
                              "timestamp": iso(row.state_updated_at)},
            "configuration": {
                "description": alarm.description,
                "metrics": [{
                    "id": "m1",
                    "metricStat": {
                        "metric": {"namespace": alarm.namespace, "name": alarm.metric,
                                   "dimensions": dict(alarm.dimensions)},
                        "period": alarm.period_s,
                        "stat": alarm.statistic,
                    },
                    "returnData": True,
                }],
            },
        },
    }


class AlarmService(Alarms):
    """The local implementation of :class:`Alarms`, over ``platform.metrics``."""

    def __init__(self, platform: Platform, interval_s: float = 10.0) -> None:
        self._platform = platform
        self.interval_s = interval_s
        self.store = AlarmStore(platform.database)
        self._lock = threading.Lock()  # one evaluation pass at a time
        self._closed = False

    # -- definitions -----------------------------------------------------------------

    def put(self, name: str, **definition: Any) -> dict[str, Any]:
        alarm = AlarmDefinition.from_fields(name, definition)
        self._platform.metrics.check_collected(alarm.namespace, alarm.metric)
        for action in {*alarm.alarm_actions, *alarm.ok_actions,
                       *alarm.insufficient_data_actions}:
            self._check_target(action)
        row, _ = self.store.put(alarm, time.time())
        self._platform.dispatcher.wake("alarms")
        return _to_dict(row)

    def _check_target(self, action: str) -> None:
        """Raises the NotFoundError of a missing target, as schedules and bucket
        notifications do (FunctionNotFoundError, QueueNotFoundError...)."""
        kind, name, qualifier = parse_action(action)
        if kind == "queue":
            self._platform.queues.get(name)
        elif qualifier is None or qualifier.isdigit():
            self._platform.registry.get(name, qualifier or LATEST)
        else:
            self._platform.registry.alias(name, qualifier)

    def get(self, name: str) -> dict[str, Any]:
        return _to_dict(self._require(name))

    def list(self, prefix: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        if state is not None and state not in STATES:
            raise InvalidParameterError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
        return [_to_dict(row) for row in self.store.find(prefix, state)]

    def delete(self, name: str) -> None:
        validate_name(name, "alarm name")
        if not self.store.delete(name):
            raise AlarmNotFoundError(name)

    def history(self, name: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        self._require(name)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidParameterError(f"limit={limit!r} must be between 1 and 1000")
        return self.store.history(name, limit)

    def _require(self, name: str) -> AlarmRow:
        validate_name(name, "alarm name")
        row = self.store.get(name)
        if row is None:
            raise AlarmNotFoundError(name)
        return row

    # -- evaluation ------------------------------------------------------------------

    def evaluate_now(self, now: float | None = None) -> builtins.list[dict[str, Any]]:
        now = time.time() if now is None else now
        changed = []
        with self._lock:
            for row in self.store.find():
                try:
                    moved = self._evaluate(row, now)
                except Exception:  # one broken alarm must not stop the others
                    log.exception("evaluating alarm %s failed", row.definition.name)
                    continue
                if moved is not None:
                    changed.append(moved)
            self._deliver(now)
        return changed

    def _evaluate(self, row: AlarmRow, now: float) -> dict[str, Any] | None:
        alarm = row.definition
        period = alarm.period_s
        start = (int(now // period) - alarm.evaluation_periods) * period
        key = (alarm.namespace, alarm.metric, alarm.dimensions_key)
        values = {}
        for ts, stats in self._platform.metrics.periods(key, period, start, now + period):
            value = stats.value(alarm.statistic)
            if not math.isnan(value):
                values[ts] = value
        outcome = evaluate(alarm, values, now, row.state)
        if outcome.state == row.state:
            return None
        event = json.dumps(alarm_event(row, outcome, now))
        actions = [(action, event) for action in alarm.actions_for(outcome.state)]
        if not self.store.transition(row, outcome.state, outcome.reason, outcome.reason_data,
                                     now, actions):
            return None  # changed meanwhile (re-put, deleted): the next pass sees it
        log.info("alarm %s: %s -> %s", alarm.name, row.state, outcome.state)
        moved = self.store.get(alarm.name)
        return _to_dict(moved) if moved is not None else None

    def resume(self) -> int:
        """Deliver the actions a crash left in the outbox (their state change committed,
        their delivery not yet noted). Called at start, before the dispatcher runs, so
        that they go out even if no alarm changes again. Returns how many were tried;
        those that failed in a way that may pass are retried at later evaluations."""
        with self._lock:
            return self._deliver(time.time())

    def _deliver(self, now: float) -> int:
        pending_actions = self.store.pending()
        for pending in pending_actions:
            try:
                receipt = self._send(pending)
            except (NotFoundError, InvalidParameterError, PayloadTooLargeError) as exc:
                self._give_up(pending, exc, now)
            except Exception as exc:  # busy or shutting down: try again next pass
                if pending.attempts + 1 >= MAX_ATTEMPTS:
                    self._give_up(pending, exc, now)
                else:
                    log.warning("alarm %s action %s failed (will retry): %s",
                                pending.alarm, pending.action, exc)
                    self.store.retry_later(pending)
            else:
                self.store.finish(pending, f"Successfully executed action {pending.action}",
                                  {"action": pending.action, **receipt}, now)
        return len(pending_actions)

    def _send(self, pending: PendingAction) -> dict[str, Any]:
        kind, name, qualifier = parse_action(pending.action)
        if kind == "function":
            request_id = self._platform.async_invoker.invoke(
                name, pending.body.encode(), qualifier)
            return {"request_id": request_id}
        sent = self._platform.queues.send(name, pending.body)
        return {"message_id": sent["message_id"]}

    def _give_up(self, pending: PendingAction, exc: Exception, now: float) -> None:
        message = exc.message if isinstance(exc, FaasboxError) else repr(exc)
        log.warning("alarm %s action %s failed for good: %s", pending.alarm, pending.action,
                    message)
        self.store.finish(pending, f"Failed to execute action {pending.action}: {message}",
                          {"action": pending.action, "error": message}, now)

    def close(self) -> None:
        """Stop background work (the driver is stopped by the dispatcher). Idempotent."""
        self._closed = True


class AlarmsDriver(Driver):
    """Evaluates every alarm when woken (after each metrics tick) and at least every
    ``interval_s``."""

    name = "alarms"

    def __init__(self, service: AlarmService) -> None:
        self._service = service

    def run_due(self, now: float) -> float | None:
        self._service.evaluate_now(now)
        # the fallback timer runs mid-slot, never racing the metrics tick at its edge
        interval = self._service.interval_s
        return (math.floor(time.time() / interval) + 1.5) * interval


def _to_dict(row: AlarmRow) -> dict[str, Any]:
    return {
        **row.definition.to_dict(),
        "arn": alarm_arn(row.definition.name),
        "state": row.state,
        "state_reason": row.state_reason,
        "state_updated_at": row.state_updated_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def attach(platform: Platform) -> AlarmService:
    """Build the service over ``platform``'s stores and register its driver."""
    service = AlarmService(platform)
    service.resume()
    platform.dispatcher.add(AlarmsDriver(service))
    return service
