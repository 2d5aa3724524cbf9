"""Invoke: ``POST /v1/functions/{name}/invoke``, as Lambda's Invoke API, and the async
config routes ``/v1/functions/{name}/async-config``.

The body is the event as raw JSON (empty means ``null``); the answer is the handler's
JSON with ``X-Amz-Function-Error``, ``X-Amz-Executed-Version``, ``X-Amzn-RequestId`` and,
for ``X-Amz-Log-Type: Tail``, ``X-Amz-Log-Result`` (base64 of the log's last 4 KB).
With ``X-Amz-Invocation-Type: Event`` the event is queued durably and the answer is
202 with ``X-Amzn-RequestId`` at once (docs/async.md).

Invocations run in worker threads of their own (:class:`InvocationSlots`), apart from
the thread pool of the other routes: long calls never hold up listing, logs or
deploys, and a call that finds every slot busy is answered 429 at once, never queued.
"""

from __future__ import annotations

import base64
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from faasbox.errors import InvalidParameterError, PayloadTooLargeError
from faasbox.sdk import Client
from faasbox.server.auth import may_deliver
from faasbox.server.deps import ClientDep
from faasbox.server.slots import Slots

T = TypeVar("T")

router = APIRouter(prefix="/v1/functions", tags=["invoke"])

LOG_TAIL_BYTES = 4096
#: Concurrent invocations one server runs when not told otherwise.
DEFAULT_INVOCATION_SLOTS = 256


class InvocationSlots(Slots):
    """At most ``size`` invocations at a time (Lambda throttles; it does not queue)."""

    def __init__(self, size: int = DEFAULT_INVOCATION_SLOTS) -> None:
        super().__init__(size, "invocations")


def _too_large(size: int | str, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request payload of {size} bytes exceeds the {limit}-byte limit")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(declared, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {limit}", limit)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/{name}/invoke",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "handler result"}},
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {}}}, "required": False}
    },
)
async def invoke(name: str, request: Request, qualifier: str | None = None) -> Response:
    """Run the function and wait for its result (``X-Amz-Invocation-Type``
    ``RequestResponse``, the default), or queue the event and answer 202 at once
    (``Event``). ``name`` may be ``name:qualifier``."""
    client: Client = request.app.state.client
    kind = request.headers.get("x-amz-invocation-type", "RequestResponse")
    if kind == "Event":
        body = await read_body(request, request.app.state.limits.async_payload_bytes)
        request_id = await anyio.to_thread.run_sync(
            partial(client.invoke_async, name, raw=body or b"null", qualifier=qualifier)
        )
        return Response(status_code=202, headers={"X-Amzn-RequestId": request_id})
    if kind != "RequestResponse":
        raise InvalidParameterError(
            f"X-Amz-Invocation-Type {kind!r} must be RequestResponse or Event"
        )
    body = await read_body(request, request.app.state.limits.sync_payload_bytes)
    slots: InvocationSlots = request.app.state.invocation_slots
    result = await slots.run(partial(client.invoke, name, raw=body or b"null", qualifier=qualifier))
    headers = {
        "X-Amz-Executed-Version": result.executed_version,
        "X-Amzn-RequestId": result.request_id,
    }
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if request.headers.get("x-amz-log-type", "").lower() == "tail":
        tail = result.log.encode()[-LOG_TAIL_BYTES:]
        headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
    return Response(result.payload, media_type="application/json", headers=headers)


class AsyncConfigBody(BaseModel):
    """Fields of the async config to change; left out or null keeps the current value,
    "" removes a destination."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int | None = Field(None, description="0-2, default 2")
    max_event_age_s: int | None = Field(None, description="60-21600, default 21600")
    on_success: str | None = Field(None, examples=["queue:done"])
    on_failure: str | None = Field(None, examples=["function:on-error"])


@router.put("/{name}/async-config")
def put_async_config(
    name: str, body: AsyncConfigBody, client: ClientDep, request: Request,
    qualifier: str | None = None,
) -> dict[str, Any]:
    """Set how async events of the function (or of one qualifier) are handled. The
    caller must be allowed to send to or invoke the destinations."""
    may_deliver(request, body.on_success)
    may_deliver(request, body.on_failure)
    return client.put_async_config(
        name, qualifier=qualifier, max_retries=body.max_retries,
        max_event_age_s=body.max_event_age_s, on_success=body.on_success,
        on_failure=body.on_failure,
    )


@router.get("/{name}/async-config")
def get_async_config(name: str, client: ClientDep, qualifier: str | None = None
                     ) -> dict[str, Any]:
    """The async config in force (the defaults when none was set)."""
    return client.get_async_config(name, qualifier=qualifier)


@router.delete("/{name}/async-config", status_code=204)
def delete_async_config(name: str, client: ClientDep, qualifier: str | None = None) -> Response:
    """Go back to the default async config."""
    client.delete_async_config(name, qualifier=qualifier)
    return Response(status_code=204)
