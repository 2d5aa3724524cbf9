"""Metric alarms: ``/v1/alarms``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from faasbox.server.auth import may_deliver
from faasbox.server.deps import ClientDep

router = APIRouter(prefix="/v1/alarms", tags=["alarms"])


class AlarmBody(BaseModel):
    """An alarm definition (docs/metrics.md). Required: namespace, metric, dimensions,
    statistic, period_s, evaluation_periods, threshold, comparison_operator."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = None
    metric: str | None = None
    dimensions: dict[str, str] | None = None
    statistic: str | None = None
    period_s: int | None = None
    evaluation_periods: int | None = None
    datapoints_to_alarm: int | None = None
    threshold: float | None = None
    comparison_operator: str | None = None
    treat_missing_data: str | None = None
    description: str | None = None
    actions_enabled: bool | None = None
    alarm_actions: list[str] | None = None
    ok_actions: list[str] | None = None
    insufficient_data_actions: list[str] | None = None


@router.get("")
def list_alarms(
    client: ClientDep, prefix: str | None = None, state: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Alarms sorted by name, optionally by name prefix or state."""
    return {"alarms": client.alarms.list(prefix, state)}


@router.post("/evaluate")
def evaluate(client: ClientDep) -> dict[str, list[dict[str, Any]]]:
    """Evaluate every alarm now and deliver pending actions; the alarms that changed."""
    return {"changed": client.alarms.evaluate_now()}


@router.put("/{name}")
def put_alarm(name: str, body: AlarmBody, client: ClientDep, request: Request
              ) -> dict[str, Any]:
    """Create the alarm or replace its definition (its state is kept). The caller must be
    allowed to send to or invoke each action's destination."""
    for action in [*(body.alarm_actions or []), *(body.ok_actions or []),
                   *(body.insufficient_data_actions or [])]:
        may_deliver(request, action)
    fields = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return client.alarms.put(name, **fields)


@router.get("/{name}")
def get_alarm(name: str, client: ClientDep) -> dict[str, Any]:
    """The alarm's definition and state."""
    return client.alarms.get(name)


@router.delete("/{name}", status_code=204)
def delete_alarm(name: str, client: ClientDep) -> Response:
    """Delete the alarm, its history and undelivered actions."""
    client.alarms.delete(name)
    return Response(status_code=204)


@router.get("/{name}/history")
def history(
    name: str, client: ClientDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, list[dict[str, Any]]]:
    """State changes, configuration updates and actions, newest first."""
    return {"history": client.alarms.history(name, limit=limit)}
