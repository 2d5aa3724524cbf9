"""Logs and invocation records: ``/v1/functions/{name}/logs`` and ``/v1/records``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from faasbox.server.deps import ClientDep

router = APIRouter(prefix="/v1", tags=["logs"])

Limit = Annotated[int, Query(ge=1, le=10_000)]


@router.get("/functions/{name}/logs", response_class=PlainTextResponse)
def logs(
    name: str,
    client: ClientDep,
    request_id: str | None = None,
    since: float | None = None,
    limit: Limit = 100,
) -> PlainTextResponse:
    """Framed log text (START/END/REPORT) of the latest invocations, of one request id,
    or of those started after ``since`` (seconds since the epoch)."""
    text = client.logs(name, request_id=request_id, since=since, limit=limit)
    return PlainTextResponse(text)


@router.get("/records")
def records(
    client: ClientDep,
    function: str | None = None,
    request_id: str | None = None,
    limit: Limit = 100,
) -> dict[str, list[dict[str, Any]]]:
    """Invocation records, newest first, of one function or one request id."""
    found = client.records(function, request_id=request_id, limit=limit)
    return {"records": [record.to_dict() for record in found]}
