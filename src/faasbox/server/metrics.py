"""Metrics: ``/v1/metrics...`` (JSON) and ``/metrics`` (Prometheus text exposition)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from faasbox.api.metrics import parse_dimensions
from faasbox.server.deps import ClientDep

#: No prefix: the Prometheus route lives at the root, where scrapers look for it.
router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse, tags=["prometheus"])
def prometheus(client: ClientDep) -> PlainTextResponse:
    """Prometheus text exposition: function counters and duration summary since the
    state store was created; concurrency and queue gauges from the latest sample."""
    return PlainTextResponse(client.metrics.prometheus(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/metrics")
def list_metrics(
    client: ClientDep, namespace: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Metrics that have datapoints kept, optionally of one namespace."""
    return {"metrics": client.metrics.list_metrics(namespace)}


@router.get("/v1/metrics/datapoints")
def datapoints(
    client: ClientDep,
    namespace: str,
    metric: str,
    dimension: Annotated[list[str], Query(description="Name=value, e.g. FunctionName=hello")],
    statistic: str = "Sum",
    period_s: int = 60,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """One statistic of one metric per period (periods with data only, oldest first)."""
    found = client.metrics.get(
        namespace, metric, parse_dimensions(dimension), statistic=statistic,
        period_s=period_s, since=since, until=until,
    )
    return {"datapoints": found}


@router.get("/v1/metrics/functions/{name}")
def function_summary(
    name: str, client: ClientDep, since: float | None = None, period_s: int | None = None
) -> dict[str, Any]:
    """A function's totals and series since ``since`` (default: the last hour)."""
    return client.metrics.function_summary(name, since=since, period_s=period_s)


@router.get("/v1/metrics/queues/{name}")
def queue_summary(
    name: str, client: ClientDep, since: float | None = None, period_s: int | None = None
) -> dict[str, Any]:
    """A queue's latest and peak levels and series since ``since``."""
    return client.metrics.queue_summary(name, since=since, period_s=period_s)


@router.post("/v1/metrics/collect")
def collect(client: ClientDep) -> dict[str, int]:
    """Collect now (what the 10-second tick does): fold records, sample levels."""
    return client.metrics.collect_now()
