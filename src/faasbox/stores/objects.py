"""The object store port: buckets of objects with S3 semantics, and their change feed.

Adapters: :mod:`faasbox.stores.folder` (a local folder, the default) and
:mod:`faasbox.stores.s3` (any S3-compatible service). Both pass the one contract suite
(``tests/unit/test_object_store_contract.py``).

This module is standard-library only (so is the folder adapter): function code inside
sandboxes, started with ``python -I -S``, imports them to read and write objects
directly.

Values: keys are any UTF-8 text of 1-1024 bytes (no NUL); ``etag`` is the hex MD5 of
the content, without quotes; times are epoch seconds; ``metadata`` is user metadata
(``x-amz-meta-*``), names lowercased.
"""

from __future__ import annotations

import abc
import base64
import builtins
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple

from faasbox.errors import InvalidParameterError, InvalidRangeError

#: The event names of the change feed (S3's, without the ``s3:`` prefix).
PUT = "ObjectCreated:Put"
COPY = "ObjectCreated:Copy"
DELETE = "ObjectRemoved:Delete"

MAX_KEY_BYTES = 1024
MAX_KEYS = 1000
MAX_METADATA_BYTES = 2048
CHUNK_BYTES = 1024 * 1024
DEFAULT_CONTENT_TYPE = "binary/octet-stream"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_META_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_RESERVED_BUCKET_AFFIXES = (("xn--", "sthree-", "amzn-s3-demo-"), ("-s3alias", "--ol-s3",
                                                                   "--x-s3"))

Range = tuple[int | None, int | None]
"""A byte range as HTTP says it, ends included: ``(start, end)``, ``(start, None)`` from
``start`` to the end, ``(None, n)`` the last ``n`` bytes."""


def validate_bucket_name(name: str) -> str:
    """Return ``name`` or raise InvalidParameterError saying which S3 naming rule it breaks
    (3-63 characters: lowercase letters, digits, dots and hyphens; starts and ends with a
    letter or digit; no ``..``; not an IP address; no reserved prefix or suffix)."""
    if not isinstance(name, str) or not 3 <= len(name) <= 63:
        raise InvalidParameterError(
            f"invalid bucket name {name!r}: use 3-63 characters"
        )
    if not _BUCKET_RE.match(name):
        raise InvalidParameterError(
            f"invalid bucket name {name!r}: use lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        raise InvalidParameterError(
            f"invalid bucket name {name!r}: no '..', '.-' or '-.'"
        )
    if _IP_RE.match(name):
        raise InvalidParameterError(f"invalid bucket name {name!r}: looks like an IP address")
    starts, ends = _RESERVED_BUCKET_AFFIXES
    if name.startswith(starts) or name.endswith(ends):
        raise InvalidParameterError(f"invalid bucket name {name!r}: reserved prefix or suffix")
    return name


def validate_key(key: str) -> str:
    """Return ``key`` or raise InvalidParameterError: 1-1024 bytes of UTF-8, no NUL."""
    if not isinstance(key, str) or not key:
        raise InvalidParameterError(f"invalid object key {key!r}: it must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidParameterError(f"invalid object key {key!r}: not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidParameterError(
            f"invalid object key {key[:40]!r}...: {size} bytes, over the {MAX_KEY_BYTES}-byte "
            "limit"
        )
    if "\x00" in key:
        raise InvalidParameterError(f"invalid object key {key!r}: it contains NUL")
    return key


def validate_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """User metadata with names lowercased, or InvalidParameterError: names of letters,
    digits, ``-``, ``_``, ``.``; values printable ASCII (they travel as HTTP headers);
    at most 2 KB in all."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidParameterError(f"metadata must be an object of names to strings, "
                                    f"not {metadata!r}")
    clean: dict[str, str] = {}
    size = 0
    for name, value in metadata.items():
        low = name.lower() if isinstance(name, str) else name
        if not isinstance(low, str) or not _META_NAME_RE.match(low) or low.startswith("faasbox-"):
            raise InvalidParameterError(
                f"invalid metadata name {name!r}: use letters, digits, '-', '_' or '.' "
                "(names starting with 'faasbox-' are reserved)"
            )
        if not isinstance(value, str) or not _printable_ascii(value):
            raise InvalidParameterError(
                f"invalid metadata value for {name!r}: use printable ASCII text"
            )
        size += len(low) + len(value)
        clean[low] = value
    if size > MAX_METADATA_BYTES:
        raise InvalidParameterError(
            f"metadata takes {size} bytes, over the {MAX_METADATA_BYTES}-byte limit"
        )
    return clean


def _printable_ascii(text: str) -> bool:
    """Only characters ' ' to '~' (both tests run in C: this is on every put's path)."""
    return text.isascii() and text.isprintable()


def validate_content_type(content_type: str | None) -> str:
    """The content type to store (S3's default when None or empty), or
    InvalidParameterError unless it is printable ASCII of at most 255 characters."""
    if content_type is None or content_type == "":
        return DEFAULT_CONTENT_TYPE
    if not isinstance(content_type, str) or len(content_type) > 255 or not _printable_ascii(
            content_type):
        raise InvalidParameterError(f"invalid content type {content_type!r}")
    return content_type


def validate_listing(prefix: str, delimiter: str | None, max_keys: int) -> None:
    """Raise InvalidParameterError for a bad ``list`` argument."""
    if not isinstance(prefix, str) or len(prefix.encode("utf-8", "replace")) > MAX_KEY_BYTES:
        raise InvalidParameterError(f"invalid prefix {prefix!r}")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
        raise InvalidParameterError(f"invalid delimiter {delimiter!r}: use a non-empty string")
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or not (
        1 <= max_keys <= MAX_KEYS
    ):
        raise InvalidParameterError(f"max_keys={max_keys!r} must be between 1 and {MAX_KEYS}")


def clean_etag(etag: str) -> str:
    """An ETag as given in ``If-Match`` (quoted or not, maybe weak) as plain hex."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def parse_range(header: str) -> Range:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` as a :data:`Range`; one range only.
    Raises InvalidParameterError for anything else."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header or "")
    if match is None or match.group(1) == match.group(2) == "":
        raise InvalidParameterError(
            f"invalid Range {header!r}: expected bytes=START-END, bytes=START- or bytes=-N"
        )
    start = int(match.group(1)) if match.group(1) else None
    end = int(match.group(2)) if match.group(2) else None
    check_range((start, end))
    return start, end


def check_range(byte_range: Range) -> Range:
    """Return ``byte_range`` or raise InvalidParameterError if it is malformed."""
    if not isinstance(byte_range, tuple) or len(byte_range) != 2:
        raise InvalidParameterError(f"invalid byte range {byte_range!r}: use (start, end)")
    start, end = byte_range
    for part in byte_range:
        if part is not None and (isinstance(part, bool) or not isinstance(part, int)
                                 or part < 0):
            raise InvalidParameterError(f"invalid byte range {byte_range!r}")
    if start is None and end is None:
        raise InvalidParameterError(f"invalid byte range {byte_range!r}")
    if start is not None and end is not None and end < start:
        raise InvalidParameterError(f"invalid byte range {byte_range!r}: end before start")
    return byte_range


def resolve_range(byte_range: Range, size: int) -> tuple[int, int]:
    """``(offset, length)`` of ``byte_range`` over an object of ``size`` bytes, as HTTP
    and S3 resolve it (an end past the object is cut). Raises InvalidRangeError when it
    does not overlap the object."""
    start, end = check_range(byte_range)
    if start is None:
        assert end is not None
        if end == 0 or size == 0:
            raise InvalidRangeError(f"range bytes=-{end} is not satisfiable ({size} bytes)")
        return max(size - end, 0), min(end, size)
    if start >= size:
        raise InvalidRangeError(
            f"range starts at byte {start}, past the object's {size} bytes"
        )
    last = size - 1 if end is None else min(end, size - 1)
    return start, last - start + 1


def encode_token(kind: str, value: str) -> str:
    """An opaque continuation token: resume after key ``value`` (kind ``k``) or after
    every key of common prefix ``value`` (kind ``p``)."""
    return base64.urlsafe_b64encode((kind + value).encode()).decode()


def decode_token(token: str) -> tuple[str, str]:
    """``(kind, value)`` of :func:`encode_token`; InvalidParameterError if forged."""
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeError):
        text = ""
    if len(text) < 2 or text[0] not in "kp":
        raise InvalidParameterError(f"invalid continuation token {token!r}")
    return text[0], text[1:]


@dataclass(frozen=True)
class ObjectInfo:
    """What ``head`` says about an object."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    last_modified: float
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "content_type": self.content_type,
            "last_modified": self.last_modified,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectInfo:
        return cls(
            bucket=data["bucket"], key=data["key"], size=int(data["size"]), etag=data["etag"],
            content_type=data["content_type"], last_modified=float(data["last_modified"]),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True)
class ObjectSummary:
    """One entry of a listing (S3 lists no content type or metadata)."""

    key: str
    size: int
    etag: str
    last_modified: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag,
                "last_modified": self.last_modified}


@dataclass(frozen=True)
class Listing:
    """One page of ``list``: objects and common prefixes in UTF-8 byte order."""

    contents: list[ObjectSummary]
    common_prefixes: list[str]
    is_truncated: bool
    next_continuation_token: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "contents": [item.to_dict() for item in self.contents],
            "common_prefixes": list(self.common_prefixes),
            "is_truncated": self.is_truncated,
            "next_continuation_token": self.next_continuation_token,
        }


class Change(NamedTuple):
    """One entry of the change feed: an object was created or removed. ``seq`` grows
    with each committed change; ``size`` and ``etag`` are 0 and "" for removals. (A
    named tuple: the feed is read thousands of rows at a time, and it is built from a
    row for free.)"""

    seq: int
    bucket: str
    key: str
    event: str
    size: int
    etag: str
    time: float


def check_distinct_keys(items: list[PutItem]) -> None:
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise InvalidParameterError("put_many: each key may appear once")


@dataclass(frozen=True)
class PutItem:
    """One object of a ``put_many``."""

    key: str
    body: bytes
    content_type: str | None = None
    metadata: dict[str, str] | None = None


class ObjectReader(abc.ABC):
    """An open object being read: ``info`` (the whole object's), and ``length`` bytes
    from ``offset`` (the resolved range, or all of it). Read with ``read`` or by
    iterating chunks; close it (or use ``with``)."""

    info: ObjectInfo
    offset: int
    length: int

    @abc.abstractmethod
    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left with -1); b"" at the end."""

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_BYTES):
            yield chunk

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file or connection. Idempotent."""

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class HashingReader:
    """Reads a body (bytes or a binary file) in chunks, counting bytes and MD5."""

    def __init__(self, body: bytes | bytearray | memoryview | BinaryIO) -> None:
        if isinstance(body, bytes | bytearray | memoryview):
            self._data: memoryview | None = memoryview(bytes(body))
            self._file: BinaryIO | None = None
        elif hasattr(body, "read"):
            self._data, self._file = None, body
        else:
            raise InvalidParameterError(
                f"object body must be bytes or a binary file, not {type(body).__name__}"
            )
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def chunks(self) -> Iterator[bytes]:
        if self._data is not None:
            for start in range(0, len(self._data), CHUNK_BYTES):
                chunk = bytes(self._data[start:start + CHUNK_BYTES])
                self.md5.update(chunk)
                self.size += len(chunk)
                yield chunk
            return
        assert self._file is not None
        while True:
            chunk = self._file.read(CHUNK_BYTES)
            if not chunk:
                return
            if not isinstance(chunk, bytes | bytearray):
                raise InvalidParameterError("object body file must be opened in binary mode")
            self.md5.update(chunk)
            self.size += len(chunk)
            yield bytes(chunk)


class ObjectStore(abc.ABC):
    """Buckets of objects, with S3 semantics, and a durable change feed.

    Every method raises InvalidParameterError for a bad bucket name, key, metadata or
    argument (nothing changed), BucketNotFoundError for a missing bucket. Writes are
    atomic: a reader sees the whole old object or the whole new one. Each write that
    changes an object appends to the change feed in the same commit, so a consumer of
    :meth:`changes` never misses a committed write even if the process dies right after.
    Safe to use from several threads and processes at once.
    """

    @abc.abstractmethod
    def create_bucket(self, bucket: str) -> bool:
        """Create ``bucket``; True if created, False if it already existed (idempotent)."""

    @abc.abstractmethod
    def delete_bucket(self, bucket: str) -> None:
        """Delete an empty bucket. Raises BucketNotFoundError, BucketNotEmptyError."""

    @abc.abstractmethod
    def list_buckets(self) -> list[dict[str, Any]]:
        """``[{"name", "created_at"}]`` sorted by name."""

    @abc.abstractmethod
    def bucket_exists(self, bucket: str) -> bool:
        """True if ``bucket`` exists."""

    @abc.abstractmethod
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
    ) -> ObjectInfo:
        """Store ``body`` (bytes, or a binary file read in chunks to its end) under
        ``key``, replacing any object there, and append ``ObjectCreated:Put`` to the
        feed. ``if_match`` (an etag) writes only over that exact object;
        ``if_none_match="*"`` only if no object is there: otherwise raises
        PreconditionFailedError and writes nothing."""

    #: Whether ``put_many`` writes all of its objects or none (one commit).
    atomic_batches = False

    def put_many(self, bucket: str, items: builtins.list[PutItem], *,
                 if_none_match: str | None = None) -> builtins.list[ObjectInfo]:
        """Store several objects, each as ``put`` would (``if_none_match`` applies to
        each). Adapters with ``atomic_batches`` commit them all in one transaction, and
        a failure (PreconditionFailedError naming the key) writes none; this default
        puts them one by one, so a failure leaves the ones before it written. A key
        given twice raises InvalidParameterError before anything is written."""
        check_distinct_keys(items)
        return [self.put(bucket, item.key, item.body, content_type=item.content_type,
                         metadata=item.metadata, if_none_match=if_none_match)
                for item in items]

    @abc.abstractmethod
    def open(self, bucket: str, key: str, *, byte_range: Range | None = None) -> ObjectReader:
        """Open the object for reading, all of it or ``byte_range``. Raises
        ObjectNotFoundError, InvalidRangeError (range outside the object). The reader
        keeps reading the object it opened even if it is overwritten meanwhile."""

    def get(self, bucket: str, key: str, *, byte_range: Range | None = None
            ) -> tuple[ObjectInfo, bytes]:
        """The object's info and content (or ``byte_range`` of it), as ``open``."""
        with self.open(bucket, key, byte_range=byte_range) as reader:
            return reader.info, reader.read()

    @abc.abstractmethod
    def head(self, bucket: str, key: str) -> ObjectInfo:
        """The object's info. Raises ObjectNotFoundError."""

    @abc.abstractmethod
    def delete(self, bucket: str, key: str) -> bool:
        """Delete the object and append ``ObjectRemoved:Delete`` to the feed; True if it
        existed. Deleting a missing key succeeds and records nothing (S3 semantics)."""

    @abc.abstractmethod
    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
             ) -> ObjectInfo:
        """Copy an object with its content type and metadata; append
        ``ObjectCreated:Copy``. Raises ObjectNotFoundError for a missing source."""

    @abc.abstractmethod
    def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int = MAX_KEYS,
        continuation_token: str | None = None,
    ) -> Listing:
        """Keys starting with ``prefix`` in UTF-8 byte order, as S3's ListObjectsV2:
        with ``delimiter``, keys with the delimiter after the prefix are rolled up into
        ``common_prefixes`` (each counts as one of ``max_keys``, 1-1000). Pass
        ``next_continuation_token`` back to get the next page."""

    @abc.abstractmethod
    def changes(self, after_seq: int, limit: int = 1000) -> builtins.list[Change]:
        """Up to ``limit`` changes with ``seq > after_seq``, oldest first."""

    @abc.abstractmethod
    def last_seq(self) -> int:
        """The ``seq`` of the newest change (0 if none yet); never goes back, even after
        :meth:`trim_changes`."""

    @abc.abstractmethod
    def trim_changes(self, upto_seq: int) -> None:
        """Forget changes with ``seq <= upto_seq`` (they were consumed). Idempotent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""
