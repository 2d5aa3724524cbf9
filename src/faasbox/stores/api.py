"""The object store over the platform's HTTP API: what function code in a namespace or
cgroup sandbox gets from ``faasbox.handlers.objects()``, where the platform's folders are
out of sight. Standard library only (sandboxes have no site-packages).

Every call is a signed request of the function's execution role, so the role's
policies decide what it may read and write; writes are the server's own, so they are
notified like any other. The change feed is the control plane's and is not offered.
"""

from __future__ import annotations

import builtins
import json
import urllib.parse
from typing import Any, BinaryIO, Protocol

from faasbox.errors import (
    BucketNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    ServiceUnavailableError,
)
from faasbox.stores.objects import (
    MAX_KEYS,
    Change,
    Listing,
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    ObjectSummary,
    Range,
)

META_PREFIX = "x-amz-meta-"


class Transport(Protocol):
    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); raises the faasbox error answered."""


def _q(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text, safe=safe)


def _info(bucket: str, key: str, headers: dict[str, str], size: int) -> ObjectInfo:
    return ObjectInfo(
        bucket=bucket, key=key, size=size, etag=headers.get("etag", "").strip('"'),
        content_type=headers.get("content-type", ""),
        last_modified=float(headers.get("x-faasbox-last-modified", "0")),
        metadata={name[len(META_PREFIX):]: value for name, value in headers.items()
                  if name.startswith(META_PREFIX)})


class _Reader(ObjectReader):
    def __init__(self, info: ObjectInfo, offset: int, data: bytes) -> None:
        self.info, self.offset, self.length = info, offset, len(data)
        self._data = data

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = len(self._data)
        data, self._data = self._data[:size], self._data[size:]
        return data

    def close(self) -> None:
        self._data = b""


class ApiObjectStore(ObjectStore):
    """:class:`ObjectStore` over ``/v1/buckets`` (whole bodies: function-sized objects)."""

    def __init__(self, transport: Transport) -> None:
        self._api = transport

    def _json(self, method: str, path: str, body: bytes = b"",
              headers: dict[str, str] | None = None) -> Any:
        payload = self._api.request(method, path, body, headers)[2]
        return json.loads(payload) if payload else None

    @staticmethod
    def _object(bucket: str, key: str) -> str:
        return f"/v1/buckets/{_q(bucket)}/objects/{_q(key, safe='/')}"

    def create_bucket(self, bucket: str) -> bool:
        existed = self.bucket_exists(bucket)
        self._json("PUT", f"/v1/buckets/{_q(bucket)}")
        return not existed

    def delete_bucket(self, bucket: str) -> None:
        self._json("DELETE", f"/v1/buckets/{_q(bucket)}")

    def list_buckets(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json("GET", "/v1/buckets")["buckets"]
        return found

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._json("GET", f"/v1/buckets/{_q(bucket)}/objects?max_keys=1")
        except BucketNotFoundError:
            return False
        return True

    def put(self, bucket: str, key: str, body: bytes | BinaryIO, *,
            content_type: str | None = None, metadata: dict[str, str] | None = None,
            if_match: str | None = None, if_none_match: str | None = None) -> ObjectInfo:
        data = bytes(body) if isinstance(body, bytes | bytearray) else body.read()
        headers = {META_PREFIX + name: value for name, value in (metadata or {}).items()}
        headers["content-type"] = content_type or "binary/octet-stream"
        if if_match is not None:
            headers["if-match"] = if_match
        if if_none_match is not None:
            headers["if-none-match"] = if_none_match
        return ObjectInfo.from_dict(self._json("PUT", self._object(bucket, key), data, headers))

    def open(self, bucket: str, key: str, *, byte_range: Range | None = None) -> ObjectReader:
        headers = {}
        if byte_range is not None:
            start, end = ("" if at is None else str(at) for at in byte_range)
            headers["range"] = f"bytes={start}-{end}"
        status, answer, data = self._api.request("GET", self._object(bucket, key), b"", headers)
        size, offset = len(data), 0
        if status == 206:  # Content-Range: bytes first-last/size
            span, _, total = answer.get("content-range", "").partition("/")
            offset, size = int(span.split()[-1].partition("-")[0]), int(total)
        return _Reader(_info(bucket, key, answer, size), offset, data)

    def head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            _, answer, _ = self._api.request("HEAD", self._object(bucket, key))
        except NotFoundError as exc:  # a HEAD answer has no body to say which
            if type(exc) is NotFoundError:
                raise ObjectNotFoundError(f"{bucket}/{key}") from None
            raise
        return _info(bucket, key, answer, int(answer.get("content-length", "0")))

    def delete(self, bucket: str, key: str) -> bool:
        self._api.request("DELETE", self._object(bucket, key))
        return True

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
             ) -> ObjectInfo:
        body = json.dumps({"source_bucket": src_bucket, "source_key": src_key,
                           "key": dst_key}).encode()
        return ObjectInfo.from_dict(self._json(
            "POST", f"/v1/buckets/{_q(dst_bucket)}/copy", body,
            {"content-type": "application/json"}))

    def list(self, bucket: str, prefix: str = "", delimiter: str | None = None,
             max_keys: int = MAX_KEYS, continuation_token: str | None = None) -> Listing:
        query = {"prefix": prefix, "max_keys": str(max_keys)}
        if delimiter:
            query["delimiter"] = delimiter
        if continuation_token:
            query["continuation_token"] = continuation_token
        page = self._json("GET", f"/v1/buckets/{_q(bucket)}/objects?"
                          + urllib.parse.urlencode(sorted(query.items())))
        return Listing([ObjectSummary(**item) for item in page["contents"]],
                       page["common_prefixes"], page["is_truncated"],
                       page["next_continuation_token"])

    def changes(self, after_seq: int, limit: int = 1000) -> builtins.list[Change]:
        raise ServiceUnavailableError("the change feed is the control plane's: use bucket "
                                      "notifications")

    def last_seq(self) -> int:
        raise ServiceUnavailableError("the change feed is the control plane's")

    def trim_changes(self, upto_seq: int) -> None:
        raise ServiceUnavailableError("the change feed is the control plane's")

    def close(self) -> None:
        """Nothing to release: the transport is shared."""
