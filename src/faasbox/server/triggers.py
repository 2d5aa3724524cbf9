"""Queue -> function mappings: ``/v1/triggers`` (docs/triggers.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from faasbox.api import triggers as api
from faasbox.server.auth import may, may_deliver
from faasbox.server.deps import ClientDep

router = APIRouter(prefix="/v1", tags=["triggers"])


class _Body(BaseModel):
    # strict: "10" or true is no batch size; the service's own checks say what is wrong
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateBody(_Body):
    """A new mapping; omitted settings take Lambda's defaults."""

    queue: str
    function: str = Field(description="NAME or NAME:QUALIFIER", examples=["resize:live"])
    batch_size: StrictInt = api.BATCH_SIZE
    max_batching_window_s: StrictInt = 0
    max_concurrency: StrictInt | None = None
    enabled: StrictBool = True
    report_batch_item_failures: StrictBool = False


class UpdateBody(_Body):
    """Settings to change; those left out are unchanged (``max_concurrency: null``
    removes the limit)."""

    batch_size: StrictInt | None = None
    max_batching_window_s: StrictInt | None = None
    max_concurrency: StrictInt | None = None
    enabled: StrictBool | None = None
    report_batch_item_failures: StrictBool | None = None


@router.post("/triggers", status_code=201)
def create_trigger(body: CreateBody, client: ClientDep, request: Request) -> dict[str, Any]:
    """Create a mapping and start polling (unless ``enabled`` is false). The caller must
    be allowed to receive from the queue and invoke the function."""
    may(request, "queues:ReceiveMessage", f"queue:{body.queue}")
    may_deliver(request, f"function:{body.function}")
    return client.triggers.create(
        body.queue,
        body.function,
        batch_size=body.batch_size,
        max_batching_window_s=body.max_batching_window_s,
        max_concurrency=body.max_concurrency,
        enabled=body.enabled,
        report_batch_item_failures=body.report_batch_item_failures,
    )


@router.get("/triggers")
def list_triggers(
    client: ClientDep, queue: str | None = None, function: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Mappings by creation time, optionally of one queue and/or one function."""
    return {"triggers": client.triggers.list(queue=queue, function=function)}


@router.get("/triggers/{id}")
def get_trigger(id: str, client: ClientDep) -> dict[str, Any]:
    """One mapping with its live status (pollers, last processing result)."""
    return client.triggers.get(id)


@router.patch("/triggers/{id}")
def update_trigger(id: str, body: UpdateBody, client: ClientDep) -> dict[str, Any]:
    """Change settings of a mapping; pollers use them from their next batch."""
    changes = body.model_dump(exclude_unset=True)
    for key in ("batch_size", "max_batching_window_s", "enabled",
                "report_batch_item_failures"):
        if key in changes and changes[key] is None:
            del changes[key]  # null: unchanged (only max_concurrency has a null value)
    return client.triggers.update(id, **changes)


@router.post("/triggers/{id}/enable")
def enable_trigger(id: str, client: ClientDep) -> dict[str, Any]:
    """Resume polling (idempotent)."""
    return client.triggers.enable(id)


@router.post("/triggers/{id}/disable")
def disable_trigger(id: str, client: ClientDep) -> dict[str, Any]:
    """Stop polling (idempotent); batches being processed finish."""
    return client.triggers.disable(id)


@router.delete("/triggers/{id}", status_code=204)
def delete_trigger(id: str, client: ClientDep) -> Response:
    """Stop polling and remove the mapping; the queue and its messages stay."""
    client.triggers.delete(id)
    return Response(status_code=204)
