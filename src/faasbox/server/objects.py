"""Buckets, objects and notifications: ``/v1/buckets``.

Object content travels as the raw request / response body, streamed both ways. An
object's attributes travel as headers, as S3 sends them: ``Content-Type``, ``ETag``
(quoted), ``Last-Modified``, ``x-amz-meta-<name>`` for user metadata, plus
``x-faasbox-last-modified`` (epoch seconds, exact). ``Range: bytes=a-b`` answers 206
with ``Content-Range``. Keys are the rest of the path, percent-encoded (``/`` may be).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from typing import Annotated, Any, BinaryIO, cast

import anyio
import anyio.from_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from faasbox.server.auth import may, may_deliver
from faasbox.server.deps import ClientDep
from faasbox.stores.objects import CHUNK_BYTES, MAX_KEYS, ObjectInfo, ObjectReader, parse_range

router = APIRouter(prefix="/v1", tags=["objects"])

META_PREFIX = "x-amz-meta-"
_OBJECT = "/buckets/{bucket}/objects/{key:path}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CopyBody(_Body):
    """Copy ``source_bucket/source_key`` to ``key`` of the bucket in the path."""

    key: str
    source_bucket: str
    source_key: str


class NotificationBody(_Body):
    destination: str = Field(..., examples=["queue:uploads", "function:thumbnail:live"])
    events: list[str] | None = Field(None, examples=[["ObjectCreated:*"]])
    prefix: str = ""
    suffix: str = ""


def object_headers(info: ObjectInfo) -> dict[str, str]:
    """The headers that describe an object (GET and HEAD answers)."""
    headers = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": formatdate(info.last_modified, usegmt=True),
        "x-faasbox-last-modified": repr(info.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Type": info.content_type,
    }
    for name, value in info.metadata.items():
        headers[META_PREFIX + name] = value
    return headers


# -- buckets ----------------------------------------------------------------------------


@router.get("/buckets")
def list_buckets(client: ClientDep) -> dict[str, list[dict[str, Any]]]:
    """Every bucket, sorted by name."""
    return {"buckets": client.objects.list_buckets()}


@router.put("/buckets/{bucket}")
def create_bucket(bucket: str, client: ClientDep) -> dict[str, Any]:
    """Create a bucket (idempotent)."""
    return client.objects.create_bucket(bucket)


@router.delete("/buckets/{bucket}", status_code=204)
def delete_bucket(bucket: str, client: ClientDep) -> Response:
    """Delete an empty bucket (409 BucketNotEmpty otherwise)."""
    client.objects.delete_bucket(bucket)
    return Response(status_code=204)


@router.get("/buckets/{bucket}/objects")
def list_objects(
    bucket: str,
    client: ClientDep,
    prefix: str = "",
    delimiter: str | None = None,
    max_keys: Annotated[int, Query()] = MAX_KEYS,
    continuation_token: str | None = None,
) -> dict[str, Any]:
    """One page of keys, as S3's ListObjectsV2."""
    return client.objects.list(bucket, prefix, delimiter or None, max_keys,
                               continuation_token or None)


@router.post("/buckets/{bucket}/copy")
def copy_object(bucket: str, body: CopyBody, client: ClientDep, request: Request
                ) -> dict[str, Any]:
    """Copy an object into this bucket; fires ``ObjectCreated:Copy``. Needs
    objects:GetObject on the source and objects:PutObject on the copy too."""
    may(request, "objects:GetObject", f"object:{body.source_bucket}/{body.source_key}")
    may(request, "objects:PutObject", f"object:{bucket}/{body.key}")
    return client.objects.copy(body.source_bucket, body.source_key, bucket, body.key)


# -- objects ----------------------------------------------------------------------------


class _RequestBody:
    """The request body as a blocking binary file, for a worker thread: each ``read``
    pulls chunks from the event loop as they arrive (nothing is buffered whole)."""

    def __init__(self, request: Request) -> None:
        self._chunks: AsyncIterator[bytes] = request.stream().__aiter__()
        self._buffer = b""
        self._done = False

    async def _next(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self._done = True
            else:
                self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


@router.put(_OBJECT)
async def put_object(
    bucket: str,
    key: str,
    request: Request,
    client: ClientDep,
    content_type: Annotated[str | None, Header()] = None,
    if_match: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Store the request body under ``key`` (streamed); ``If-Match`` / ``If-None-Match:
    *`` make it conditional (412). Answers the object's attributes as JSON."""
    metadata = {name[len(META_PREFIX):]: value for name, value in request.headers.items()
                if name.lower().startswith(META_PREFIX)}
    size = request.headers.get("content-length", "")
    body: bytes | BinaryIO = cast(BinaryIO, _RequestBody(request))
    if size.isdigit() and int(size) <= CHUNK_BYTES:
        body = await request.body()  # small: at once, not a thread hop per chunk
    put = functools.partial(
        client.objects.put, bucket, key, body,
        content_type=content_type, metadata=metadata, if_match=if_match,
        if_none_match=if_none_match)
    info: dict[str, Any] = await anyio.to_thread.run_sync(put)
    return JSONResponse(info, headers={"ETag": f'"{info["etag"]}"'})


def _chunks(reader: ObjectReader) -> Iterator[bytes]:
    with reader:  # closed at the end, or when an abandoned download is collected
        yield from reader


@router.get(_OBJECT)
def get_object(
    bucket: str, key: str, client: ClientDep,
    byte_range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """The object's content, streamed; with ``Range`` the part asked for (206)."""
    byte_range = parse_range(byte_range_header) if byte_range_header else None
    reader = client.objects.open(bucket, key, byte_range=byte_range)
    headers = object_headers(reader.info)
    headers["Content-Length"] = str(reader.length)
    status = 200
    if byte_range is not None:
        status = 206
        last = reader.offset + reader.length - 1
        headers["Content-Range"] = f"bytes {reader.offset}-{last}/{reader.info.size}"
    if reader.length <= CHUNK_BYTES:  # one read: no streaming (a thread hop per chunk)
        with reader:
            return Response(reader.read(), status_code=status, headers=headers,
                            media_type=reader.info.content_type)
    return StreamingResponse(_chunks(reader), status_code=status, headers=headers,
                             media_type=reader.info.content_type)


@router.head(_OBJECT)
def head_object(bucket: str, key: str, client: ClientDep) -> Response:
    """The object's attributes as headers, no body."""
    info = ObjectInfo.from_dict(client.objects.head(bucket, key))
    headers = object_headers(info)
    headers["Content-Length"] = str(info.size)
    return Response(status_code=200, headers=headers)


@router.delete(_OBJECT, status_code=204)
def delete_object(bucket: str, key: str, client: ClientDep) -> Response:
    """Delete the object; a missing key is fine (204 either way)."""
    client.objects.delete(bucket, key)
    return Response(status_code=204)


# -- notifications -----------------------------------------------------------------------


@router.get("/buckets/{bucket}/notifications")
def list_notifications(bucket: str, client: ClientDep) -> dict[str, list[dict[str, Any]]]:
    """The bucket's notification configurations."""
    return {"notifications": client.objects.list_notifications(bucket)}


@router.post("/buckets/{bucket}/notifications")
def add_notification(bucket: str, body: NotificationBody, client: ClientDep,
                     request: Request) -> dict[str, Any]:
    """Send the bucket's events to a queue or a function (which the caller must be
    allowed to send to or invoke)."""
    may_deliver(request, body.destination)
    return client.objects.add_notification(bucket, body.destination, body.events, body.prefix,
                                           body.suffix)


@router.delete("/buckets/{bucket}/notifications/{notification_id}", status_code=204)
def remove_notification(bucket: str, notification_id: str, client: ClientDep) -> Response:
    """Stop a notification."""
    client.objects.remove_notification(bucket, notification_id)
    return Response(status_code=204)
