"""RemoteObjects: :class:`~faasbox.api.objects.Objects` over HTTP (``/v1/buckets``).

Uploads and downloads are streamed; an object's attributes come back as the headers
of :mod:`faasbox.server.objects`.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import httpx

from faasbox.api.objects import Objects
from faasbox.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from faasbox.remote.signing import PAYLOAD_HEADER
from faasbox.stores.objects import (
    CHUNK_BYTES,
    MAX_KEYS,
    ObjectInfo,
    ObjectReader,
    PutItem,
    Range,
    check_range,
    clean_etag,
    validate_key,
    validate_metadata,
)

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient

META_PREFIX = "x-amz-meta-"


def _segment(text: str) -> str:
    """One path segment; '.' is encoded too, so '.' and '..' are not collapsed."""
    return quote(text, safe="").replace(".", "%2E")


def _bucket(bucket: str) -> str:
    return "/v1/buckets/" + _segment(bucket)


def _object(bucket: str, key: str) -> str:
    validate_key(key)
    return f"{_bucket(bucket)}/objects/" + _segment(key)


def _info(bucket: str, key: str, headers: httpx.Headers, size: int) -> ObjectInfo:
    metadata = {name[len(META_PREFIX):]: value for name, value in headers.items()
                if name.lower().startswith(META_PREFIX)}
    return ObjectInfo(bucket, key, size, clean_etag(headers.get("etag", "")),
                      headers.get("content-type", ""),
                      float(headers.get("x-faasbox-last-modified", "0")), metadata)


def _sha256(body: BinaryIO) -> str:
    start = body.tell()
    digest = hashlib.sha256()
    while chunk := body.read(CHUNK_BYTES):
        digest.update(chunk)
    body.seek(start)
    return digest.hexdigest()


def _upload(body: BinaryIO) -> Iterator[bytes]:
    while chunk := body.read(CHUNK_BYTES):
        yield chunk


class _ResponseReader(ObjectReader):
    def __init__(self, info: ObjectInfo, offset: int, length: int,
                 response: httpx.Response, stack: contextlib.ExitStack) -> None:
        self.info = info
        self.offset = offset
        self.length = length
        self._chunks = response.iter_bytes(CHUNK_BYTES)
        self._buffer = b""
        self._stack = stack

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        self._stack.close()


class RemoteObjects(Objects):
    """:class:`Objects` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote

    # -- buckets ----------------------------------------------------------------------

    def create_bucket(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("PUT", _bucket(name))
        return result

    def delete_bucket(self, name: str) -> None:
        self._remote.request("DELETE", _bucket(name))

    def list_buckets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._remote.call("GET", "/v1/buckets")["buckets"]
        return result

    # -- objects ----------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> dict[str, Any]:
        headers = {META_PREFIX + name: value
                   for name, value in validate_metadata(metadata).items()}
        if content_type:
            headers["content-type"] = content_type
        if if_match is not None:
            headers["if-match"] = if_match
        if if_none_match is not None:
            headers["if-none-match"] = if_none_match
        if isinstance(body, bytes | bytearray):
            content: bytes | bytearray | Iterator[bytes] = body
        else:
            if body.seekable():  # hash it first: signing then streams it, never holds it
                headers[PAYLOAD_HEADER] = _sha256(body)
            content = _upload(body)
        result: dict[str, Any] = self._remote.call("PUT", _object(bucket, key),
                                                   content=content, headers=headers)
        return result

    def put_many(self, bucket: str, items: builtins.list[PutItem], *,
                 if_none_match: str | None = None) -> builtins.list[dict[str, Any]]:
        return [self.put(bucket, item.key, item.body, content_type=item.content_type,
                         metadata=item.metadata, if_none_match=if_none_match)
                for item in items]

    def open(self, bucket: str, key: str, *, byte_range: Range | None = None
             ) -> ObjectReader:
        headers = {}
        if byte_range is not None:
            start, end = check_range(byte_range)
            headers["range"] = f"bytes={'' if start is None else start}-" + (
                "" if end is None else str(end))
        stack = contextlib.ExitStack()
        try:
            response = stack.enter_context(
                self._remote.stream("GET", _object(bucket, key), headers=headers))
            length = int(response.headers.get("content-length", "0"))
            offset, size = 0, length
            content_range = response.headers.get("content-range")
            if content_range:  # "bytes a-b/size"
                span, _, total = content_range.partition(" ")[2].partition("/")
                offset, size = int(span.partition("-")[0]), int(total)
            info = _info(bucket, key, response.headers, size)
        except BaseException:
            stack.close()
            raise
        return _ResponseReader(info, offset, length, response, stack)

    def get(self, bucket: str, key: str, *, byte_range: Range | None = None
            ) -> tuple[dict[str, Any], bytes]:
        with self.open(bucket, key, byte_range=byte_range) as reader:
            return reader.info.to_dict(), reader.read()

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            response = self._remote.request("HEAD", _object(bucket, key))
        except NotFoundError:  # a HEAD answer has no body to say what was missing
            if any(b["name"] == bucket for b in self.list_buckets()):
                raise ObjectNotFoundError(f"{bucket}/{key}") from None
            raise BucketNotFoundError(bucket) from None
        size = int(response.headers.get("content-length", "0"))
        return _info(bucket, key, response.headers, size).to_dict()

    def delete(self, bucket: str, key: str) -> None:
        self._remote.request("DELETE", _object(bucket, key))

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
             ) -> dict[str, Any]:
        body = {"key": dst_key, "source_bucket": src_bucket, "source_key": src_key}
        result: dict[str, Any] = self._remote.call("POST", _bucket(dst_bucket) + "/copy",
                                                   json=body)
        return result

    def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int = MAX_KEYS,
        continuation_token: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"prefix": prefix, "max_keys": max_keys}
        if delimiter is not None:
            params["delimiter"] = delimiter
        if continuation_token is not None:
            params["continuation_token"] = continuation_token
        result: dict[str, Any] = self._remote.call("GET", _bucket(bucket) + "/objects",
                                                   params=params)
        return result

    # -- notifications ------------------------------------------------------------------

    def add_notification(
        self,
        bucket: str,
        destination: str,
        events: builtins.list[str] | None = None,
        prefix: str = "",
        suffix: str = "",
    ) -> dict[str, Any]:
        body = {"destination": destination, "events": events, "prefix": prefix,
                "suffix": suffix}
        result: dict[str, Any] = self._remote.call("POST", _bucket(bucket) + "/notifications",
                                                   json=body)
        return result

    def list_notifications(self, bucket: str) -> builtins.list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._remote.call(
            "GET", _bucket(bucket) + "/notifications")["notifications"]
        return result

    def remove_notification(self, bucket: str, notification_id: str) -> None:
        self._remote.request(
            "DELETE", f"{_bucket(bucket)}/notifications/{quote(notification_id, safe='')}")
