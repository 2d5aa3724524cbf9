"""Prometheus text exposition of the stored metrics (``GET /metrics``).

Counters come from the running totals kept beside the datapoints (monotonic since the
state store was created, untouched by retention); gauges are the latest sample, shown
while it is fresh. prometheus_client renders the text: a custom collector builds the
families at each scrape from the store, so no state lives in a global registry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from faasbox.api.metrics import LAMBDA, SQS

#: (metric, family name, help) of the Lambda counters.
_COUNTERS = (
    ("Invocations", "faasbox_function_invocations", "Invocations (throttled ones excluded)."),
    ("Errors", "faasbox_function_errors", "Invocations that ended in error, timeout, "
     "out-of-memory or crash."),
    ("Throttles", "faasbox_function_throttles", "Invocation requests refused (throttled)."),
    ("ColdStarts", "faasbox_function_cold_starts", "Invocations that started a sandbox."),
)
_GAUGES = (
    (LAMBDA, "ConcurrentExecutions", "faasbox_function_concurrent_executions",
     "Sandboxes running an invocation, at the latest sample.", "function"),
    (SQS, "ApproximateNumberOfMessagesVisible", "faasbox_queue_messages_visible",
     "Messages available to receive.", "queue"),
    (SQS, "ApproximateNumberOfMessagesNotVisible", "faasbox_queue_messages_not_visible",
     "Messages received and not yet deleted (in flight).", "queue"),
    (SQS, "ApproximateAgeOfOldestMessage", "faasbox_queue_oldest_message_age_seconds",
     "Age of the oldest message in the queue.", "queue"),
)


class StoreCollector(Collector):
    """Families from rows of ``MetricStore.totals()`` (taken once, at construction)."""

    def __init__(self, rows: Sequence[Any], stale_before: float) -> None:
        self._rows = rows
        self._stale_before = stale_before

    def collect(self) -> Iterator[Metric]:
        by_key: defaultdict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in self._rows:
            by_key[(row.namespace, row.metric)].append(row)
        for metric, name, doc in _COUNTERS:
            family = CounterMetricFamily(name, doc, labels=["function"])
            for row in by_key.get((LAMBDA, metric), []):
                family.add_metric([_value_of(row)], row.sum)
            yield family
        duration = SummaryMetricFamily(
            "faasbox_function_duration_milliseconds", "Invocation duration.",
            labels=["function"],
        )
        for row in by_key.get((LAMBDA, "Duration"), []):
            duration.add_metric([_value_of(row)], count_value=row.samples, sum_value=row.sum)
        yield duration
        for namespace, metric, name, doc, label in _GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=[label])
            for row in by_key.get((namespace, metric), []):
                if row.last_at >= self._stale_before:  # gone or idle: no stale level
                    gauge.add_metric([_value_of(row)], row.last)
            yield gauge


def _value_of(row: Any) -> str:
    """The dimension's value: ``FunctionName=hello`` -> ``hello``."""
    return str(row.dimensions).partition("=")[2]


def exposition(rows: Sequence[Any], stale_before: float) -> str:
    """The text format (version 0.0.4) of ``rows``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(rows, stale_before))
    return generate_latest(registry).decode()
