"""Objects: buckets, objects (S3 semantics) and bucket notifications.

Object dicts (``put``, ``head``, ``get``, ``copy``) are JSON-ready: ``bucket``, ``key``,
``size``, ``etag`` (hex MD5, unquoted), ``content_type``, ``last_modified`` (epoch s),
``metadata`` (user metadata, names lowercased). Bucket names follow S3's rules (3-63
lowercase letters, digits, dots, hyphens); keys are 1-1024 bytes of UTF-8. A bad name,
key or argument raises InvalidParameterError and changes nothing; a missing bucket
raises BucketNotFoundError.
"""

from __future__ import annotations

import abc
import builtins
from typing import Any, BinaryIO

from faasbox.stores.objects import MAX_KEYS, ObjectReader, PutItem, Range

#: Notification event types a configuration may ask for (``s3:`` prefix optional).
EVENT_TYPES = ("ObjectCreated:*", "ObjectCreated:Put", "ObjectCreated:Copy",
               "ObjectRemoved:*", "ObjectRemoved:Delete")


class Objects(abc.ABC):
    """The buckets and objects of one platform, and their notifications."""

    # -- buckets ----------------------------------------------------------------------

    @abc.abstractmethod
    def create_bucket(self, name: str) -> dict[str, Any]:
        """Create a bucket; creating an existing one returns it (idempotent). Returns
        ``{"name", "created_at", "arn"}``."""

    @abc.abstractmethod
    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket and its notification configurations. Raises
        BucketNotFoundError, BucketNotEmptyError."""

    @abc.abstractmethod
    def list_buckets(self) -> list[dict[str, Any]]:
        """Every bucket (as ``create_bucket`` returns), sorted by name."""

    # -- objects ----------------------------------------------------------------------

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
    ) -> dict[str, Any]:
        """Store ``body`` (bytes or a binary file, streamed) under ``key``, atomically
        replacing what was there; fires ``ObjectCreated:Put``. ``if_match`` (etag) /
        ``if_none_match="*"`` make it conditional: PreconditionFailedError if the
        object is not as expected, and nothing is written."""

    @abc.abstractmethod
    def put_many(self, bucket: str, items: builtins.list[PutItem], *,
                 if_none_match: str | None = None) -> builtins.list[dict[str, Any]]:
        """Store several small-to-medium objects (bytes bodies) at once, each firing
        ``ObjectCreated:Put`` as ``put`` does. With the folder store (in-process SDK)
        they are one transaction -- all or none -- and far cheaper than one ``put``
        each; over HTTP and with S3 they are put one by one, in order."""

    @abc.abstractmethod
    def get(self, bucket: str, key: str, *, byte_range: Range | None = None
            ) -> tuple[dict[str, Any], bytes]:
        """The object dict and its content, or the bytes of ``byte_range`` (HTTP
        semantics, ends included: ``(0, 9)``, ``(10, None)``, ``(None, 5)`` the last 5).
        Raises ObjectNotFoundError, InvalidRangeError."""

    @abc.abstractmethod
    def open(self, bucket: str, key: str, *, byte_range: Range | None = None
             ) -> ObjectReader:
        """Stream the object (or ``byte_range``): a reader with ``info``, ``offset``,
        ``length``, ``read(n)`` and chunk iteration; close it (``with``). Raises as
        ``get``."""

    @abc.abstractmethod
    def head(self, bucket: str, key: str) -> dict[str, Any]:
        """The object dict. Raises ObjectNotFoundError."""

    @abc.abstractmethod
    def delete(self, bucket: str, key: str) -> None:
        """Delete the object (fires ``ObjectRemoved:Delete``). A missing key succeeds
        and fires nothing (S3 semantics)."""

    @abc.abstractmethod
    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
             ) -> dict[str, Any]:
        """Copy an object with its content type and metadata (fires
        ``ObjectCreated:Copy``); returns the new object dict. Raises
        ObjectNotFoundError for a missing source."""

    @abc.abstractmethod
    def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int = MAX_KEYS,
        continuation_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of keys as S3's ListObjectsV2: ``{"contents": [{"key", "size",
        "etag", "last_modified"}], "common_prefixes", "is_truncated",
        "next_continuation_token"}`` in UTF-8 byte order; ``max_keys`` 1-1000."""

    # -- notifications ------------------------------------------------------------------

    @abc.abstractmethod
    def add_notification(
        self,
        bucket: str,
        destination: str,
        events: builtins.list[str] | None = None,
        prefix: str = "",
        suffix: str = "",
    ) -> dict[str, Any]:
        """Send S3-shaped events of ``bucket`` to ``destination``: ``queue:NAME`` (one
        message per event) or ``function:NAME[:QUALIFIER]`` (an async invocation per
        event). ``events`` from :data:`EVENT_TYPES` (default ``["ObjectCreated:*"]``);
        only keys starting with ``prefix`` and ending with ``suffix``. Only writes after
        this call are notified. Returns ``{"id", "bucket", "destination", "events",
        "prefix", "suffix", "created_at"}``. Raises InvalidParameterError (also when it
        overlaps another configuration of the bucket, as S3 does: an event type in
        common and filters one key can match both of; the message names the other's
        id; nothing is stored), BucketNotFoundError, QueueNotFoundError /
        FunctionNotFoundError."""

    @abc.abstractmethod
    def list_notifications(self, bucket: str) -> builtins.list[dict[str, Any]]:
        """The bucket's notification configurations, oldest first."""

    @abc.abstractmethod
    def remove_notification(self, bucket: str, notification_id: str) -> None:
        """Stop a notification. Raises NotificationNotFoundError."""
