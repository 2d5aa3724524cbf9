"""MetricService: function and queue metrics, collected every 10 seconds.

Each tick (the "metrics" driver) folds the invocation records written since the last
tick into 10-second datapoints (by each call's start time), samples busy sandboxes per
function and every queue's counts, deletes datapoints older than
``settings.metrics_retention_s``, then wakes the "alarms" driver. Queries merge the
stored datapoints into the period asked for.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from faasbox.api.metrics import (
    DIMENSION,
    FROM_RECORDS,
    LAMBDA,
    MAX_DATAPOINTS,
    METRICS,
    RESOLUTION_S,
    SQS,
    Metrics,
    check_metric,
    check_period,
    check_statistic,
)
from faasbox.errors import (
    FunctionNotFoundError,
    InvalidParameterError,
    QueueNotFoundError,
    ServiceUnavailableError,
)
from faasbox.events.dispatcher import Driver
from faasbox.model import Status, validate_name
from faasbox.stores.metrics import RECORDS_NEED_SQLITE, MetricStore, Sample, Stats

if TYPE_CHECKING:
    from faasbox.platform import Platform

log = logging.getLogger(__name__)

#: Default look-back of queries and summaries.
DEFAULT_SINCE_S = 3600
#: Summaries pick a period giving about this many points.
SUMMARY_POINTS = 30
_ERRORS = frozenset({Status.ERROR, Status.TIMEOUT, Status.OOM, Status.CRASH})
_QUEUE_FIELDS = (
    ("ApproximateNumberOfMessagesVisible", "visible"),
    ("ApproximateNumberOfMessagesNotVisible", "in_flight"),
    ("ApproximateAgeOfOldestMessage", "oldest_age_s"),
)


def record_samples(row: Any) -> Iterable[Sample]:
    """The samples one invocation record contributes (CloudWatch's Lambda metrics: a
    throttled request counts only as a throttle)."""
    dims = f"FunctionName={row.function}"
    at = row.started_at
    if row.status == Status.THROTTLED:
        return (Sample(LAMBDA, "Throttles", dims, at, 1.0),)
    samples = [
        Sample(LAMBDA, "Invocations", dims, at, 1.0),
        Sample(LAMBDA, "Errors", dims, at, 1.0 if row.status in _ERRORS else 0.0),
        Sample(LAMBDA, "Duration", dims, at, float(row.duration_ms)),
        Sample(LAMBDA, "ColdStarts", dims, at, 0.0 if row.init_duration_ms is None else 1.0),
        Sample(LAMBDA, "MaxMemoryUsed", dims, at, float(row.max_memory_used_mb)),
    ]
    if row.cpu_time_ms is not None:  # measured at the cgroup isolation level only
        samples.append(Sample(LAMBDA, "CpuTime", dims, at, float(row.cpu_time_ms)))
    return samples


class MetricService(Metrics):
    """The local implementation of :class:`Metrics`. ``interval_s``: time between
    ticks (the datapoints stay 10 s wide whatever it is)."""

    def __init__(self, platform: Platform, interval_s: float = RESOLUTION_S) -> None:
        self._platform = platform
        self.interval_s = interval_s
        self.store = MetricStore(platform.database, RESOLUTION_S)
        self._lock = threading.Lock()  # one collection at a time: samples of one tick
        if not self.store.can_fold:
            log.warning("%s; only concurrency and queue levels are collected",
                        RECORDS_NEED_SQLITE)
        self._closed = False

    # -- collection ------------------------------------------------------------------

    def collect_now(self, now: float | None = None) -> dict[str, int]:
        now = time.time() if now is None else now
        with self._lock:
            self._platform.records.flush()  # calls that returned are in the store
            folded = 0
            while self.store.can_fold:
                done = self.store.fold_invocations(record_samples)
                folded += done
                if not done:
                    break
            sampled = self._sample_functions(now) + self._sample_queues(now)
            retention = self._platform.settings.metrics_retention_s
            self.store.trim(now - retention)
        self._platform.dispatcher.wake("alarms")
        return {"records": folded, "samples": sampled}

    def _sample_functions(self, now: float) -> int:
        """ConcurrentExecutions: busy sandboxes per function (0 for those that have idle
        ones only); merged, so a 10-second datapoint's Maximum is its peak."""
        busy: Counter[str] = Counter()
        for sandbox in self._platform.node.stats()["sandboxes"]:
            busy[sandbox["function"]] += sandbox["state"] == "busy"
        at = _ended_slot(now)
        samples = [Sample(LAMBDA, "ConcurrentExecutions", f"FunctionName={fn}", at, float(n))
                   for fn, n in busy.items()]
        self.store.record_samples(samples, replace=False)
        return len(samples)

    def _sample_queues(self, now: float) -> int:
        """Queue levels: the latest sample of a 10-second slot is its datapoint."""
        at = _ended_slot(now)
        samples: list[Sample] = []
        for queue in self._platform.queues.list():
            dims = f"QueueName={queue['name']}"
            samples.extend(Sample(SQS, metric, dims, at, float(queue[field]))
                           for metric, field in _QUEUE_FIELDS)
        self.store.record_samples(samples, replace=True)
        return len(samples)

    # -- queries ---------------------------------------------------------------------

    def get(
        self,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        *,
        statistic: str = "Sum",
        period_s: int = 60,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        dims = check_metric(namespace, metric, dimensions)
        self.check_collected(namespace, metric)
        check_statistic(statistic)
        period = check_period(period_s)
        start, end = _window(since, until, period)
        return [
            {"timestamp": ts, "value": _number(stats.value(statistic)),
             "sample_count": stats.count}
            for ts, stats in self.periods((namespace, metric, dims), period, start, end)
        ]

    def check_collected(self, namespace: str, metric: str) -> None:
        """Raises ServiceUnavailableError for a metric this store cannot collect (one
        folded from invocation records, where the state store is not SQLite), rather
        than answer zeros that look like no traffic."""
        if namespace == LAMBDA and metric in FROM_RECORDS and not self.store.can_fold:
            raise ServiceUnavailableError(RECORDS_NEED_SQLITE)

    def periods(
        self, key: tuple[str, str, str], period_s: int, start: float, end: float
    ) -> list[tuple[int, Stats]]:
        """Stored datapoints of ``key`` merged into ``period_s`` periods (aligned to the
        epoch) from the one holding ``start`` to the one holding ``end``; only periods
        with data, oldest first. For alarms and queries alike."""
        first = int(start // period_s) * period_s
        merged: dict[int, Stats] = {}
        for ts, stats in self.store.stats(key, first, end):
            bucket = ts - ts % period_s
            if bucket in merged:
                merged[bucket].merge(stats)
            else:
                merged[bucket] = stats
        return sorted(merged.items())

    def list_metrics(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace is not None and namespace not in METRICS:
            raise InvalidParameterError(
                f"unknown namespace {namespace!r}: use one of {', '.join(METRICS)}"
            )
        found = []
        for ns, metric, dims in self.store.keys(namespace):
            key, _, value = dims.partition("=")
            found.append({"namespace": ns, "metric": metric, "dimensions": {key: value}})
        return found

    def function_summary(
        self, name: str, *, since: float | None = None, period_s: int | None = None
    ) -> dict[str, Any]:
        validate_name(name)
        self.check_collected(LAMBDA, "Invocations")
        start, end, period = _summary_window(since, period_s)
        dims = f"FunctionName={name}"
        try:
            self._platform.registry.get(name)
        except FunctionNotFoundError:  # a typo, unless it is a deleted function's history
            if not self.store.has_datapoints(LAMBDA, METRICS[LAMBDA], dims):
                raise
        totals: dict[str, Any] = {}
        series: dict[str, list[list[Any]]] = {}
        for metric in METRICS[LAMBDA]:
            points = self.periods((LAMBDA, metric, dims), period, start, end)
            whole = Stats()
            for _, stats in points:
                whole.merge(stats)
            statistic = {"Duration": "Average", "ConcurrentExecutions": "Maximum",
                         "MaxMemoryUsed": "Maximum", "CpuTime": "Average"}.get(metric, "Sum")
            series[metric] = _series(points, statistic, start, end, period,
                                     zero=statistic == "Sum")
            if metric in ("Duration", "CpuTime"):
                shown = {"average": "Average", "p50": "p50", "p99": "p99", "maximum": "Maximum"}
                totals[metric] = {
                    label: _number(whole.value(stat)) if whole.count else None
                    for label, stat in shown.items()
                }
            elif metric in ("ConcurrentExecutions", "MaxMemoryUsed"):
                totals[metric] = _number(whole.max) if whole.count else 0
            else:
                totals[metric] = _number(whole.sum)
        return {"function": name, "since": start, "until": end, "period_s": period,
                "totals": totals, "series": series}

    def queue_summary(
        self, name: str, *, since: float | None = None, period_s: int | None = None
    ) -> dict[str, Any]:
        check_metric(SQS, METRICS[SQS][0], {DIMENSION[SQS]: name})
        start, end, period = _summary_window(since, period_s)
        dims = f"QueueName={name}"
        try:
            self._platform.queues.get(name)
        except QueueNotFoundError:  # a typo, unless it is a deleted queue's history
            if not self.store.has_datapoints(SQS, METRICS[SQS], dims):
                raise
        latest: dict[str, Any] = {}
        maximum: dict[str, Any] = {}
        series: dict[str, list[list[Any]]] = {}
        for metric in METRICS[SQS]:
            points = self.periods((SQS, metric, dims), period, start, end)
            series[metric] = _series(points, "Maximum", start, end, period, zero=False)
            maximum[metric] = _number(max(s.max for _, s in points)) if points else None
            newest = self.store.stats((SQS, metric, dims), end - 2 * RESOLUTION_S, end + 1)
            latest[metric] = _number(newest[-1][1].max) if newest else None
        return {"queue": name, "since": start, "until": end, "period_s": period,
                "latest": latest, "maximum": maximum, "series": series}

    def prometheus(self) -> str:
        from faasbox.observe.prometheus import exposition

        return exposition(self.store.totals(), stale_before=time.time() - 6 * self.interval_s)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop background work (the driver is stopped by the dispatcher). Idempotent."""
        self._closed = True


class MetricsDriver(Driver):
    """Collects on every ``interval_s`` boundary of the clock, then wakes alarms."""

    name = "metrics"

    def __init__(self, service: MetricService) -> None:
        self._service = service

    def run_due(self, now: float) -> float | None:
        interval = self._service.interval_s
        self._service.collect_now(now)
        return (math.floor(time.time() / interval) + 1) * interval


def _ended_slot(now: float) -> float:
    """Where a level sampled at ``now`` is stored: in the 10-second slot that ended last
    (at an aligned tick, the level at the slot's end), so alarms evaluating complete
    periods see it at once."""
    return math.floor(now / RESOLUTION_S) * RESOLUTION_S - RESOLUTION_S


def _window(since: float | None, until: float | None, period: int) -> tuple[float, float]:
    end = time.time() if until is None else float(until)
    start = end - DEFAULT_SINCE_S if since is None else float(since)
    if not (math.isfinite(start) and math.isfinite(end)) or start >= end:
        raise InvalidParameterError(f"since ({start}) must be before until ({end})")
    if (end - start) / period > MAX_DATAPOINTS:
        raise InvalidParameterError(
            f"{end - start:.0f} s at period_s={period} is over {MAX_DATAPOINTS} datapoints:"
            " ask for a longer period or a shorter time range"
        )
    return start, end


def _summary_window(
    since: float | None, period_s: int | None
) -> tuple[float, float, int]:
    end = time.time()
    start = end - DEFAULT_SINCE_S if since is None else float(since)
    if not math.isfinite(start) or start >= end:
        raise InvalidParameterError(f"since ({start}) must be in the past")
    if period_s is None:
        raw = (end - start) / SUMMARY_POINTS
        # a little slack: "15m" asked a moment ago is still 30-second points
        period_s = max(RESOLUTION_S, math.ceil(raw / RESOLUTION_S - 0.05) * RESOLUTION_S)
    period = check_period(period_s)
    _window(start, end, period)
    return start, end, period


def _series(
    points: list[tuple[int, Stats]], statistic: str, start: float, end: float, period: int,
    *, zero: bool,
) -> list[list[Any]]:
    """Every period from ``start`` to ``end``: its value, or 0 / None without data."""
    found = {ts: _number(stats.value(statistic)) for ts, stats in points}
    first = int(start // period) * period
    return [[ts, found.get(ts, 0 if zero else None)] for ts in range(first, int(end) + 1, period)]


def _number(value: float) -> float | int | None:
    """JSON-friendly: whole numbers as int, NaN as None, others rounded to 3 places."""
    if math.isnan(value) or math.isinf(value):
        return None
    return int(value) if value == int(value) else round(value, 3)


def attach(platform: Platform) -> MetricService:
    """Build the service over ``platform``'s stores and register its driver."""
    service = MetricService(platform)
    platform.dispatcher.add(MetricsDriver(service))
    return service
