"""Metrics with Amazon CloudWatch semantics, at 10-second resolution.

Namespaces and metrics, each with one dimension:

- ``AWS/Lambda`` (``FunctionName``): ``Invocations``, ``Errors`` (error, timeout,
  out-of-memory and crash), ``Throttles``, ``Duration`` (ms), ``ConcurrentExecutions``
  (busy sandboxes, sampled every 10 s) and ``ColdStarts`` (ours: Lambda has no such
  metric). ``Errors`` and ``ColdStarts`` have one sample per invocation, 0 or 1, so
  ``Sum`` counts them and ``Average`` is their rate; ``Invocations`` and ``Throttles``
  one sample of 1 per call.
- ``AWS/SQS`` (``QueueName``): ``ApproximateNumberOfMessagesVisible``,
  ``ApproximateNumberOfMessagesNotVisible``, ``ApproximateAgeOfOldestMessage`` (s),
  sampled every 10 s.

Statistics: ``SampleCount``, ``Sum``, ``Average``, ``Minimum``, ``Maximum`` and
percentiles ``pNN`` (``p50``, ``p99``, ``p99.9``), estimated within 4.5% (docs/metrics.md).
Periods are multiples of 10 s, aligned to the epoch as CloudWatch aligns them.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Mapping
from typing import Any

from faasbox.errors import InvalidParameterError

#: Storage resolution: every datapoint covers 10 s.
RESOLUTION_S = 10
LAMBDA = "AWS/Lambda"
SQS = "AWS/SQS"

#: Metric names by namespace.
METRICS: dict[str, tuple[str, ...]] = {
    LAMBDA: ("Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions",
             "ColdStarts", "MaxMemoryUsed", "CpuTime"),
    SQS: ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible",
          "ApproximateAgeOfOldestMessage"),
}
#: The metrics folded from invocation records (the others are sampled): SQLite only for
#: now, see :class:`faasbox.stores.metrics.MetricStore`.
FROM_RECORDS = frozenset({"Invocations", "Errors", "Throttles", "Duration", "ColdStarts",
                          "MaxMemoryUsed", "CpuTime"})
#: The one dimension of each namespace, and what its values look like.
DIMENSION = {LAMBDA: "FunctionName", SQS: "QueueName"}
_DIMENSION_VALUE = {LAMBDA: re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
                    SQS: re.compile(r"^[A-Za-z0-9_-]{1,80}$")}

STATISTICS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,3})?|100)$")
#: At most this many datapoints in one answer (CloudWatch's GetMetricStatistics limit).
MAX_DATAPOINTS = 1440


def check_metric(namespace: str, metric: str, dimensions: Mapping[str, str]) -> str:
    """Validate a metric's identity; returns its dimensions as the canonical key
    ``Name=value``. Raises InvalidParameterError naming what is wrong."""
    if namespace not in METRICS:
        raise InvalidParameterError(
            f"unknown namespace {namespace!r}: use one of {', '.join(METRICS)}"
        )
    if metric not in METRICS[namespace]:
        raise InvalidParameterError(
            f"unknown metric {metric!r} in {namespace}: use one of "
            f"{', '.join(METRICS[namespace])}"
        )
    key = DIMENSION[namespace]
    if not isinstance(dimensions, Mapping) or set(dimensions) != {key}:
        shown = dict(dimensions) if isinstance(dimensions, Mapping) else dimensions
        raise InvalidParameterError(
            f"{namespace} metrics take exactly one dimension, {key}; got {shown!r}"
        )
    value = dimensions[key]
    if not isinstance(value, str) or not _DIMENSION_VALUE[namespace].match(value):
        raise InvalidParameterError(f"invalid {key} {value!r}")
    return f"{key}={value}"


def parse_dimensions(pairs: list[str], what: str = "dimension") -> dict[str, str]:
    """``Name=value`` texts (the CLI's ``--dimension``, the HTTP ``dimension`` query
    parameter) into dimensions. Raises InvalidParameterError naming ``what`` and the
    pair that has no ``=``."""
    dimensions = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"{what} {pair!r}: expected Name=value")
        dimensions[key] = value
    return dimensions


def check_statistic(statistic: str) -> str:
    """Return ``statistic`` if known (``p0`` to ``p100`` included); raises
    InvalidParameterError otherwise."""
    if statistic in STATISTICS or (
        isinstance(statistic, str) and _PERCENTILE.match(statistic)
    ):
        return statistic
    raise InvalidParameterError(
        f"unknown statistic {statistic!r}: use {', '.join(STATISTICS)} or a percentile "
        "such as p50, p99 or p99.9"
    )


def check_period(period_s: Any, what: str = "period_s") -> int:
    """A period: a positive multiple of 10 s (at most a day). Raises
    InvalidParameterError."""
    if (
        isinstance(period_s, bool)
        or not isinstance(period_s, int | float)
        or not math.isfinite(period_s)
        or period_s != int(period_s)
        or period_s <= 0
        or int(period_s) % RESOLUTION_S
        or period_s > 86400
    ):
        raise InvalidParameterError(
            f"{what}={period_s!r} must be a multiple of {RESOLUTION_S} s, "
            f"from {RESOLUTION_S} to 86400"
        )
    return int(period_s)


def percentile_of(statistic: str) -> float | None:
    """The percentile of ``pNN`` as a number, or None for the other statistics."""
    return float(statistic[1:]) if statistic.startswith("p") else None


class Metrics(abc.ABC):
    """The metrics of one platform. Timestamps are epoch seconds; a datapoint's
    ``timestamp`` is the start of its period."""

    @abc.abstractmethod
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
        """Datapoints ``{"timestamp", "value", "sample_count"}`` of the periods from
        ``since`` (default: an hour before ``until``) to ``until`` (default: now) that
        have data, oldest first (periods without samples are left out, as CloudWatch
        does). Raises InvalidParameterError for an unknown namespace, metric, dimension
        or statistic, a period that is not a multiple of 10 s, ``since >= until`` or
        more than 1440 periods; ServiceUnavailableError for a metric folded from
        invocation records (``FROM_RECORDS``) where the state store is not SQLite."""

    @abc.abstractmethod
    def list_metrics(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Metrics that have datapoints kept: ``{"namespace", "metric",
        "dimensions"}``, sorted."""

    @abc.abstractmethod
    def function_summary(
        self, name: str, *, since: float | None = None, period_s: int | None = None
    ) -> dict[str, Any]:
        """One function's metrics since ``since`` (default: an hour ago). Raises
        FunctionNotFoundError when no such function exists and none has datapoints
        kept (a deleted function's metrics still answer until retention drops them):
        ``{"function", "since", "until", "period_s", "totals", "series"}``. ``totals``:
        Invocations, Errors, Throttles, ColdStarts (sums), ConcurrentExecutions
        (maximum), Duration ``{"average", "p50", "p99", "maximum"}`` (None without
        calls). ``series``: per metric, ``[timestamp, value]`` for every period (0 or
        None where no data; ``period_s`` defaults to about 30 periods)."""

    @abc.abstractmethod
    def queue_summary(
        self, name: str, *, since: float | None = None, period_s: int | None = None
    ) -> dict[str, Any]:
        """One queue's sampled metrics since ``since``: ``{"queue", "since", "until",
        "period_s", "latest", "maximum", "series"}`` (Maximum per period). Raises
        QueueNotFoundError when no such queue exists and none has datapoints kept."""

    @abc.abstractmethod
    def collect_now(self) -> dict[str, int]:
        """Do what the 10-second tick does, now: fold new invocation records into
        datapoints, sample concurrency and queues, drop datapoints past retention, then
        wake alarm evaluation. Returns ``{"records": folded, "samples": sampled}``."""

    @abc.abstractmethod
    def prometheus(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every function and queue:
        counters since the state store was created, gauges from the latest sample."""
