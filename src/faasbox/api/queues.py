"""Durable queues with Amazon SQS (standard queue) semantics.

At-least-once delivery: a received message is invisible to every other consumer
until its visibility timeout ends, then visible again unless deleted with its current
receipt handle. Each receive counts; past the redrive policy's ``max_receive_count`` a
message moves to the dead-letter queue instead of being delivered. Message bodies are
text (up to the queue's ``max_message_bytes``, 256 KB by default).
"""

from __future__ import annotations

import abc
import builtins
from dataclasses import dataclass, field
from typing import Any

#: SQS defaults and bounds.
VISIBILITY_TIMEOUT_S = 30
VISIBILITY_TIMEOUT_MAX_S = 12 * 3600
RETENTION_S = 4 * 24 * 3600
RETENTION_MIN_S = 60
RETENTION_MAX_S = 14 * 24 * 3600
DELAY_MAX_S = 900
MAX_MESSAGE_BYTES = 256 * 1024
RECEIVE_WAIT_MAX_S = 20
BATCH_MAX = 10


@dataclass(frozen=True)
class Message:
    """A received message. ``receipt_handle`` names this receive of it: deleting or
    changing visibility needs the handle of the latest receive."""

    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str
    #: SentTimestamp and ApproximateFirstReceiveTimestamp (epoch ms, as strings, as SQS
    #: gives them), ApproximateReceiveCount, SenderId.
    attributes: dict[str, str] = field(default_factory=dict)
    #: User message attributes as sent: {name: {"DataType": ..., "StringValue": ...}}.
    message_attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "receipt_handle": self.receipt_handle,
            "body": self.body,
            "md5_of_body": self.md5_of_body,
            "attributes": dict(self.attributes),
            "message_attributes": dict(self.message_attributes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            message_id=data["message_id"],
            receipt_handle=data["receipt_handle"],
            body=data["body"],
            md5_of_body=data["md5_of_body"],
            attributes=dict(data.get("attributes") or {}),
            message_attributes=dict(data.get("message_attributes") or {}),
        )


class Queues(abc.ABC):
    """Queues of one platform. Names: ``^[A-Za-z0-9_-]{1,80}$``.

    Queue dicts (``get``/``create``/``list``) are JSON-ready: ``name``, ``created_at``,
    ``visibility_timeout_s``, ``retention_s``, ``delay_s``, ``max_message_bytes``,
    ``receive_wait_s``, ``dead_letter_queue`` (or None), ``max_receive_count`` (or None),
    and the approximate counts ``visible``, ``in_flight``, ``delayed`` plus
    ``oldest_age_s`` (age of the oldest message, 0 when empty).
    """

    @abc.abstractmethod
    def create(
        self,
        name: str,
        *,
        visibility_timeout_s: int = VISIBILITY_TIMEOUT_S,
        retention_s: int = RETENTION_S,
        delay_s: int = 0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        receive_wait_s: int = 0,
        dead_letter_queue: str | None = None,
        max_receive_count: int | None = None,
    ) -> dict[str, Any]:
        """Create a queue; creating it again with the same attributes returns it.
        Raises ConflictError if it exists with other attributes, InvalidParameterError
        for a bad name or attribute, QueueNotFoundError for a missing dead-letter queue
        (the redrive policy needs both ``dead_letter_queue`` and ``max_receive_count``,
        1-1000)."""

    @abc.abstractmethod
    def set_attributes(self, name: str, **attributes: Any) -> dict[str, Any]:
        """Change attributes (same names as ``create``; ``dead_letter_queue=None``
        removes the redrive policy). Returns the queue."""

    @abc.abstractmethod
    def get(self, name: str) -> dict[str, Any]:
        """The queue with its attributes and approximate counts. Raises
        QueueNotFoundError."""

    @abc.abstractmethod
    def list(self, prefix: str | None = None) -> builtins.list[dict[str, Any]]:
        """Queues (as ``get``), sorted by name, optionally those starting with ``prefix``."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete the queue and its messages. Raises QueueNotFoundError."""

    @abc.abstractmethod
    def purge(self, name: str) -> int:
        """Delete every message of the queue; returns how many were deleted."""

    @abc.abstractmethod
    def send(
        self,
        name: str,
        body: str,
        *,
        delay_s: int | None = None,
        message_attributes: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """Enqueue one message (durable when this returns). ``delay_s`` (0-900)
        overrides the queue's delay. Returns ``{"message_id", "md5_of_body"}``. Raises
        InvalidParameterError for an empty or oversized body."""

    @abc.abstractmethod
    def send_batch(self, name: str, entries: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        """Enqueue 1-10 messages in one transaction. Each entry: ``id`` (unique in the
        batch), ``body``, optional ``delay_s`` and ``message_attributes``. Returns
        ``{"successful": [{"id", "message_id", "md5_of_body"}], "failed": [{"id",
        "code", "message"}]}``: a bad entry fails alone. Raises InvalidParameterError
        for an empty batch, more than 10 entries or duplicate ids, and when the bodies
        and message attributes together exceed 256 KB (or the operator's larger
        message limit); then nothing is sent."""

    @abc.abstractmethod
    def receive(
        self,
        name: str,
        *,
        max_messages: int = 1,
        wait_s: int | None = None,
        visibility_timeout_s: int | None = None,
    ) -> builtins.list[Message]:
        """Up to ``max_messages`` (1-10) visible messages, made invisible for
        ``visibility_timeout_s`` (default: the queue's). With ``wait_s`` (0-20, default
        the queue's ``receive_wait_s``) wait until one is available or the time is up,
        without busy looping. Messages past ``max_receive_count`` move to the
        dead-letter queue instead. Messages older than the retention are dropped."""

    @abc.abstractmethod
    def delete_message(self, name: str, receipt_handle: str) -> None:
        """Delete a received message. Raises InvalidReceiptHandleError for a forged
        handle or one that is no longer current (the message was received again since,
        or is gone)."""

    @abc.abstractmethod
    def delete_batch(self, name: str, entries: builtins.list[dict[str, str]]) -> dict[str, Any]:
        """Delete 1-10 messages: entries ``{"id", "receipt_handle"}``. Returns
        ``{"successful": [{"id"}], "failed": [{"id", "code", "message"}]}``."""

    @abc.abstractmethod
    def change_visibility(
        self, name: str, receipt_handle: str, visibility_timeout_s: int
    ) -> None:
        """Make a received message visible again after ``visibility_timeout_s`` from now
        (0: at once). Raises InvalidReceiptHandleError as ``delete_message``."""

    @abc.abstractmethod
    def redrive(self, dead_letter_queue: str, *, destination: str | None = None) -> int:
        """Move every message of a dead-letter queue back to the queue it came from
        (or to ``destination``), visible at once with a fresh receive count. Returns
        how many moved."""
