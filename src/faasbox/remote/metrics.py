"""RemoteMetrics: :class:`Metrics` over HTTP (``/v1/metrics...`` and ``/metrics``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from faasbox.api.metrics import Metrics

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


def _drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class RemoteMetrics(Metrics):
    """:class:`Metrics` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote

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
        params = _drop_none({
            "namespace": namespace, "metric": metric, "statistic": statistic,
            "period_s": period_s, "since": since, "until": until,
            "dimension": [f"{k}={v}" for k, v in dict(dimensions).items()],
        })
        found: list[dict[str, Any]] = self._remote.call(
            "GET", "/v1/metrics/datapoints", params=params)["datapoints"]
        return found

    def list_metrics(self, namespace: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._remote.call(
            "GET", "/v1/metrics", params=_drop_none({"namespace": namespace}))["metrics"]
        return found

    def function_summary(
        self, name: str, *, since: float | None = None, period_s: int | None = None
    ) -> dict[str, Any]:
        summary: dict[str, Any] = self._remote.call(
            "GET", f"/v1/metrics/functions/{quote(name, safe='')}",
            params=_drop_none({"since": since, "period_s": period_s}))
        return summary

    def queue_summary(
        self, name: str, *, since: float | None = None, period_s: int | None = None
    ) -> dict[str, Any]:
        summary: dict[str, Any] = self._remote.call(
            "GET", f"/v1/metrics/queues/{quote(name, safe='')}",
            params=_drop_none({"since": since, "period_s": period_s}))
        return summary

    def collect_now(self) -> dict[str, int]:
        done: dict[str, int] = self._remote.call("POST", "/v1/metrics/collect")
        return done

    def prometheus(self) -> str:
        return self._remote.request("GET", "/metrics").text
