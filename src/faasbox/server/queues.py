"""Queues and messages: ``/v1/queues`` (docs/queues.md).

Receipt handles are URL-safe (base64url), so they travel in paths as they are; the
routes take any text there, so a garbled handle is answered ReceiptHandleIsInvalid.

A long poll holds a thread while it waits (up to 20 s). Receives therefore run in
threads of their own (:class:`ReceiveSlots`), apart from the shared pool of the other
routes: a thousand waiting receivers never hold up the send that wakes them. A receive
that finds every slot taken is answered 429 at once, never queued.
"""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from faasbox.api import queues as api
from faasbox.api.queues import Message
from faasbox.sdk import Client
from faasbox.server.auth import may_deliver
from faasbox.server.deps import ClientDep
from faasbox.server.slots import Slots

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["queues"])

#: Receives one server runs at once when not told otherwise (a waiting one costs a
#: parked thread, no CPU).
DEFAULT_RECEIVE_SLOTS = 1024


class ReceiveSlots(Slots):
    """At most ``size`` receives (long polls) at a time."""

    def __init__(self, size: int = DEFAULT_RECEIVE_SLOTS) -> None:
        super().__init__(size, "queue receives")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateBody(_Body):
    """Queue attributes; omitted ones take SQS's defaults."""

    visibility_timeout_s: int = api.VISIBILITY_TIMEOUT_S
    retention_s: int = api.RETENTION_S
    delay_s: int = 0
    max_message_bytes: int = api.MAX_MESSAGE_BYTES
    receive_wait_s: int = 0
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None


class AttributesBody(_Body):
    """Attributes to change; those left out are unchanged. ``dead_letter_queue: null``
    removes the redrive policy."""

    visibility_timeout_s: int | None = None
    retention_s: int | None = None
    delay_s: int | None = None
    max_message_bytes: int | None = None
    receive_wait_s: int | None = None
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None


class SendBody(_Body):
    body: str
    delay_s: int | None = None
    message_attributes: dict[str, Any] | None = None


class BatchBody(_Body):
    entries: list[dict[str, Any]] = Field(description="1-10 entries, each with a unique id")


class ReceiveBody(_Body):
    max_messages: int = 1
    wait_s: int | None = Field(
        default=None, description="long polling, 0-20 s (default: the queue's)"
    )
    visibility_timeout_s: int | None = None


class VisibilityBody(_Body):
    visibility_timeout_s: int


class RedriveBody(_Body):
    destination: str | None = None


@router.get("/queues")
def list_queues(client: ClientDep, prefix: str | None = None) -> dict[str, Any]:
    """Queues with their attributes and approximate counts, sorted by name."""
    return {"queues": client.queues.list(prefix)}


@router.put("/queues/{name}")
def create_queue(
    name: str, client: ClientDep, request: Request, body: CreateBody | None = None
) -> dict[str, Any]:
    """Create a queue (again with the same attributes: returns it; other: 409). A
    dead-letter queue named needs queues:SendMessage on it."""
    if body is not None and body.dead_letter_queue:
        may_deliver(request, f"queue:{body.dead_letter_queue}")
    return client.queues.create(name, **(body or CreateBody()).model_dump())


@router.get("/queues/{name}")
def get_queue(name: str, client: ClientDep) -> dict[str, Any]:
    """The queue's attributes and approximate counts."""
    return client.queues.get(name)


@router.patch("/queues/{name}")
def set_attributes(name: str, body: AttributesBody, client: ClientDep, request: Request
                   ) -> dict[str, Any]:
    """Change attributes; returns the queue (a dead-letter queue: queues:SendMessage on
    it)."""
    if body.dead_letter_queue:
        may_deliver(request, f"queue:{body.dead_letter_queue}")
    return client.queues.set_attributes(name, **body.model_dump(exclude_unset=True))


@router.delete("/queues/{name}", status_code=204)
def delete_queue(name: str, client: ClientDep) -> Response:
    """Delete the queue and its messages."""
    client.queues.delete(name)
    return Response(status_code=204)


@router.post("/queues/{name}/purge")
def purge(name: str, client: ClientDep) -> dict[str, int]:
    """Delete every message of the queue."""
    return {"purged": client.queues.purge(name)}


@router.post("/queues/{name}/messages")
def send(name: str, body: SendBody, client: ClientDep) -> dict[str, str]:
    """Enqueue one message: ``{"message_id", "md5_of_body"}``."""
    return client.queues.send(
        name, body.body, delay_s=body.delay_s, message_attributes=body.message_attributes
    )


@router.post("/queues/{name}/messages/batch")
def send_batch(name: str, body: BatchBody, client: ClientDep) -> dict[str, Any]:
    """Enqueue 1-10 messages; each entry succeeds or fails alone."""
    return client.queues.send_batch(name, body.entries)


@router.post("/queues/{name}/receive")
async def receive(
    name: str, request: Request, body: ReceiveBody | None = None
) -> dict[str, Any]:
    """Receive up to ``max_messages`` (1-10), long polling up to ``wait_s``. 429 when
    the server's receive slots are all waiting already."""
    body = body or ReceiveBody()
    # the client straight from the app: a sync dependency would take a shared thread
    client: Client = request.app.state.client
    # (typed by hand: Queues.list shadows ``list`` in the annotations of faasbox.api.queues)
    found: list[Message] = await request.app.state.receive_slots.run(partial(
        client.queues.receive, name, max_messages=body.max_messages, wait_s=body.wait_s,
        visibility_timeout_s=body.visibility_timeout_s,
    ))
    return {"messages": [message.to_dict() for message in found]}


@router.delete("/queues/{name}/messages/{receipt_handle:path}", status_code=204)
def delete_message(name: str, receipt_handle: str, client: ClientDep) -> Response:
    """Delete a received message by its current receipt handle."""
    client.queues.delete_message(name, receipt_handle)
    return Response(status_code=204)


@router.post("/queues/{name}/messages/delete-batch")
def delete_batch(name: str, body: BatchBody, client: ClientDep) -> dict[str, Any]:
    """Delete 1-10 received messages: entries ``{"id", "receipt_handle"}``."""
    return client.queues.delete_batch(name, body.entries)


@router.put("/queues/{name}/messages/{receipt_handle:path}/visibility", status_code=204)
def change_visibility(
    name: str, receipt_handle: str, body: VisibilityBody, client: ClientDep
) -> Response:
    """Make a received message visible again after ``visibility_timeout_s``."""
    client.queues.change_visibility(name, receipt_handle, body.visibility_timeout_s)
    return Response(status_code=204)


@router.post("/queues/{name}/redrive")
def redrive(name: str, client: ClientDep, request: Request,
            body: RedriveBody | None = None) -> dict[str, int]:
    """Move a dead-letter queue's messages back to their source queue (or to
    ``destination``: queues:SendMessage on it)."""
    if body is not None and body.destination:
        may_deliver(request, f"queue:{body.destination}")
    return {"moved": client.queues.redrive(name, destination=(body or RedriveBody()).destination)}
