"""ObjectService: the platform's buckets and objects, and their notifications.

The objects live in an :class:`~faasbox.stores.objects.ObjectStore` chosen by the
settings: the folder store (``objects_dir``, default ``<home>/objects``) or an
S3-compatible service (``object_store="s3"``; its journal in ``<home>/s3-journal``).
Notification configurations live in the state database; the ``notifications``
driver delivers them from the store's change feed (:mod:`faasbox.events.notifications`).
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from faasbox.api.objects import Objects
from faasbox.errors import BucketNotFoundError, InvalidParameterError
from faasbox.events.notifications import (
    DRIVER,
    Destination,
    NotificationConfigs,
    NotificationDriver,
    normalize_events,
)
from faasbox.model import bucket_arn
from faasbox.stores.objects import MAX_KEYS, ObjectReader, ObjectStore, PutItem, Range

if TYPE_CHECKING:
    from faasbox.config import Settings
    from faasbox.layout import Layout
    from faasbox.platform import Platform


def open_store(settings: Settings, layout: Layout) -> ObjectStore:
    """The object store the settings ask for. Raises InvalidParameterError for an
    unknown ``object_store``, ServiceUnavailableError when boto3 is missing for s3."""
    if settings.object_store == "folder":
        from faasbox.stores.folder import FolderStore

        return FolderStore(Path(settings.objects_dir) if settings.objects_dir
                           else layout.objects)
    if settings.object_store == "s3":
        from faasbox.stores.s3 import S3Store

        return S3Store(layout.s3_journal, endpoint_url=settings.s3_endpoint_url or None,
                       region=settings.s3_region, bucket_prefix=settings.s3_bucket_prefix)
    raise InvalidParameterError(
        f"object_store={settings.object_store!r}: use 'folder' or 's3'"
    )


class ObjectService(Objects):
    """The local implementation of :class:`Objects`: the store, plus a wake-up of the
    notification driver after each write."""

    def __init__(self, platform: Platform, store: ObjectStore) -> None:
        self._platform = platform
        self.store = store
        self.configs = NotificationConfigs(platform.database)
        self._closed = False

    def _written(self) -> None:
        self._platform.dispatcher.wake(DRIVER)

    # -- buckets ----------------------------------------------------------------------

    def create_bucket(self, name: str) -> dict[str, Any]:
        self.store.create_bucket(name)
        return self._bucket(name)

    def _bucket(self, name: str) -> dict[str, Any]:
        for bucket in self.store.list_buckets():
            if bucket["name"] == name:
                return {**bucket, "arn": bucket_arn(name)}
        raise BucketNotFoundError(name)

    def delete_bucket(self, name: str) -> None:
        self.store.delete_bucket(name)
        self.configs.remove_bucket(name)

    def list_buckets(self) -> list[dict[str, Any]]:
        return [{**b, "arn": bucket_arn(b["name"])} for b in self.store.list_buckets()]

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
        info = self.store.put(bucket, key, body, content_type=content_type, metadata=metadata,
                              if_match=if_match, if_none_match=if_none_match)
        self._written()
        return info.to_dict()

    def put_many(self, bucket: str, items: builtins.list[PutItem], *,
                 if_none_match: str | None = None) -> builtins.list[dict[str, Any]]:
        infos = self.store.put_many(bucket, items, if_none_match=if_none_match)
        self._written()
        return [info.to_dict() for info in infos]

    def get(self, bucket: str, key: str, *, byte_range: Range | None = None
            ) -> tuple[dict[str, Any], bytes]:
        info, data = self.store.get(bucket, key, byte_range=byte_range)
        return info.to_dict(), data

    def open(self, bucket: str, key: str, *, byte_range: Range | None = None
             ) -> ObjectReader:
        return self.store.open(bucket, key, byte_range=byte_range)

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        return self.store.head(bucket, key).to_dict()

    def delete(self, bucket: str, key: str) -> None:
        if self.store.delete(bucket, key):
            self._written()

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
             ) -> dict[str, Any]:
        info = self.store.copy(src_bucket, src_key, dst_bucket, dst_key)
        self._written()
        return info.to_dict()

    def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int = MAX_KEYS,
        continuation_token: str | None = None,
    ) -> dict[str, Any]:
        return self.store.list(bucket, prefix, delimiter, max_keys,
                               continuation_token).to_dict()

    # -- notifications ------------------------------------------------------------------

    def add_notification(
        self,
        bucket: str,
        destination: str,
        events: builtins.list[str] | None = None,
        prefix: str = "",
        suffix: str = "",
    ) -> dict[str, Any]:
        target = Destination.parse(destination)
        kinds = normalize_events(events)
        if not self.store.bucket_exists(bucket):
            raise BucketNotFoundError(bucket)
        if target.kind == "queue":
            self._platform.queues.get(target.name)  # raises QueueNotFoundError
        else:
            self._platform.registry.resolve(target.name, target.qualifier)
        made = self.configs.add(bucket, target, kinds, prefix, suffix, self.store.last_seq())
        self._written()  # the driver polls the feed from now on
        return made.to_dict()

    def list_notifications(self, bucket: str) -> builtins.list[dict[str, Any]]:
        if not self.store.bucket_exists(bucket):
            raise BucketNotFoundError(bucket)
        return [n.to_dict() for n in self.configs.list(bucket)]

    def remove_notification(self, bucket: str, notification_id: str) -> None:
        self.configs.remove(bucket, notification_id)

    def close(self) -> None:
        """Close the store (the dispatcher, closed first, no longer reads it). Idempotent."""
        if not self._closed:
            self._closed = True
            self.store.close()


def attach(platform: Platform) -> ObjectService:
    """Build the service over ``platform``'s stores and register the notification driver."""
    store = open_store(platform.settings, platform.layout)
    service = ObjectService(platform, store)
    platform.dispatcher.add(NotificationDriver(store, service.configs, platform.queues,
                                               platform.async_invoker))
    return service
