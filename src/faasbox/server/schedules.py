"""Schedules: ``/v1/schedules`` (docs/schedules.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from faasbox.server.auth import may_deliver
from faasbox.server.deps import ClientDep

router = APIRouter(prefix="/v1", tags=["schedules"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateBody(_Body):
    """A new schedule. ``input`` (any JSON) is sent as the event; null or left out
    sends the EventBridge scheduled event."""

    name: str
    expression: str = Field(examples=["rate(5 minutes)", "cron(0 9 ? * MON-FRI *)"])
    target: str = Field(description="function[:qualifier]")
    timezone: str = "UTC"
    input: Any = None
    overlap: str = Field("skip", description="'skip' or 'allow'")
    enabled: bool = True
    start_at: float | None = Field(None, description="epoch seconds; default now")


class UpdateBody(_Body):
    """Fields to change; those left out are unchanged (``input: null`` removes it)."""

    expression: str | None = None
    target: str | None = None
    timezone: str | None = None
    input: Any = None
    overlap: str | None = None
    start_at: float | None = None


@router.post("/schedules")
def create_schedule(body: CreateBody, client: ClientDep, request: Request) -> dict[str, Any]:
    """Create a schedule; 409 if the name is taken, 404 if the target does not exist. The
    caller must be allowed to invoke the target."""
    may_deliver(request, f"function:{body.target}")
    return client.schedules.create(
        body.name, body.expression, body.target, timezone=body.timezone, input=body.input,
        overlap=body.overlap, enabled=body.enabled, start_at=body.start_at,
    )


@router.get("/schedules")
def list_schedules(client: ClientDep, prefix: str | None = None) -> dict[str, Any]:
    """Schedules sorted by name, with their last and next runs."""
    return {"schedules": client.schedules.list(prefix)}


@router.get("/schedules/{name}")
def get_schedule(name: str, client: ClientDep) -> dict[str, Any]:
    return client.schedules.get(name)


@router.patch("/schedules/{name}")
def update_schedule(name: str, body: UpdateBody, client: ClientDep, request: Request
                    ) -> dict[str, Any]:
    """Change the fields given in the body (a new target: the caller may invoke it)."""
    if body.target is not None:
        may_deliver(request, f"function:{body.target}")
    return client.schedules.update(name, **body.model_dump(exclude_unset=True))


@router.delete("/schedules/{name}", status_code=204)
def delete_schedule(name: str, client: ClientDep) -> Response:
    client.schedules.delete(name)
    return Response(status_code=204)


@router.post("/schedules/{name}/enable")
def enable_schedule(name: str, client: ClientDep) -> dict[str, Any]:
    """Enable (idempotent): the next run is the first tick from now."""
    return client.schedules.enable(name)


@router.post("/schedules/{name}/disable")
def disable_schedule(name: str, client: ClientDep) -> dict[str, Any]:
    """Disable (idempotent)."""
    return client.schedules.disable(name)
