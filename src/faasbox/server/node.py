"""What the node runs now: ``GET /v1/sandboxes``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from faasbox.server.deps import ClientDep

router = APIRouter(prefix="/v1", tags=["node"])


@router.get("/sandboxes")
def sandboxes(client: ClientDep) -> dict[str, list[dict[str, Any]]]:
    """Live sandboxes (idle or busy); empty once every function scaled to zero."""
    return {"sandboxes": client.sandboxes()}
