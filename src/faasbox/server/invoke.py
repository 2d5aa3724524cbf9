"""Synchronous invoke: ``POST /v1/functions/{name}/invoke``, as Lambda's Invoke API.

The body is the event as raw JSON (empty means ``null``); the answer is the handler's
JSON with ``X-Amz-Function-Error``, ``X-Amz-Executed-Version``, ``X-Amzn-RequestId`` and,
for ``X-Amz-Log-Type: Tail``, ``X-Amz-Log-Result`` (base64 of the log's last 4 KB).
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from faasbox.errors import PayloadTooLargeError
from faasbox.sdk import Client

router = APIRouter(prefix="/v1/functions", tags=["invoke"])

LOG_TAIL_BYTES = 4096


def _too_large(size: int | str, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request payload of {size} bytes exceeds the {limit}-byte limit for sync invoke"
    )


async def _read_body(request: Request, limit: int) -> bytes:
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
    """Run the function and wait for its result. ``name`` may be ``name:qualifier``."""
    client: Client = request.app.state.client
    body = await _read_body(request, request.app.state.limits.sync_payload_bytes)
    result = await run_in_threadpool(
        client.invoke, name, raw=body or b"null", qualifier=qualifier
    )
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
