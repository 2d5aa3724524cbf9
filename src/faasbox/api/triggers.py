"""Triggers: queue -> function mappings (AWS Lambda event source mappings for SQS).

A trigger polls one queue and invokes one function (``name`` or ``name:qualifier``)
with batches of its messages, in the SQS event shape (``{"Records": [...]}``). A batch
whose invocation succeeds is deleted from the queue; one whose invocation fails
(handler error, timeout, crash) is left alone and comes back once the queue's
visibility timeout ends, so the queue's receive count and redrive policy decide when a
message goes to the dead-letter queue. With ``report_batch_item_failures`` switched on
(it is off by default, as on Lambda) the function may answer
``{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}``: only the messages not
named are deleted.

Trigger dicts are JSON-ready: ``id``, ``queue``, ``function``, ``batch_size``,
``max_batching_window_s``, ``max_concurrency`` (None: up to the platform's cap),
``enabled``, ``state`` (``"Enabled"``/``"Disabled"``), ``report_batch_item_failures``,
``event_source_arn``, ``function_arn``, ``created_at``, ``updated_at``, and the live
status of this platform: ``pollers`` (poller threads running now) and
``last_processing_result`` (``"No records processed"``, ``"OK"``, or
``"PROBLEM: ..."``).
"""

from __future__ import annotations

import abc
from typing import Any

#: Lambda's bounds for SQS event source mappings.
BATCH_SIZE = 10
BATCH_SIZE_MAX = 10_000
#: Above this batch size Lambda requires a batching window of at least 1 s.
BATCH_SIZE_WITHOUT_WINDOW_MAX = 10
BATCHING_WINDOW_MAX_S = 300
MAX_CONCURRENCY_MIN = 2
MAX_CONCURRENCY_MAX = 1000

#: Fields ``Triggers.update`` may change.
UPDATABLE = (
    "batch_size",
    "max_batching_window_s",
    "max_concurrency",
    "enabled",
    "report_batch_item_failures",
)


class Triggers(abc.ABC):
    """The queue -> function mappings of one platform. Ids are UUIDs given at creation."""

    @abc.abstractmethod
    def create(
        self,
        queue: str,
        function: str,
        *,
        batch_size: int = BATCH_SIZE,
        max_batching_window_s: int = 0,
        max_concurrency: int | None = None,
        enabled: bool = True,
        report_batch_item_failures: bool = False,
    ) -> dict[str, Any]:
        """Create a mapping from ``queue`` to ``function`` (``name[:qualifier]``) and, if
        ``enabled``, start polling at once. Returns the trigger.

        ``batch_size`` 1-10000 (above 10 needs ``max_batching_window_s`` >= 1);
        ``max_batching_window_s`` 0-300: how long to gather a batch that is not full yet;
        ``max_concurrency`` None or 2-1000: most invocations of this mapping at once.
        ``report_batch_item_failures`` (off by default, as Lambda's
        ``FunctionResponseTypes=["ReportBatchItemFailures"]``): a ``batchItemFailures``
        answer deletes only the messages it does not name; while off the answer is
        ignored and a successful invocation deletes the whole batch.

        Raises QueueNotFoundError, FunctionNotFoundError (or the version/alias
        lookup errors), InvalidParameterError for a value out of range or a queue whose
        visibility timeout is shorter than the function's timeout, ConflictError when
        the same queue already triggers the same function (and qualifier). Nothing is
        created when it raises."""

    @abc.abstractmethod
    def get(self, id: str) -> dict[str, Any]:
        """The trigger. Raises TriggerNotFoundError."""

    @abc.abstractmethod
    def list(
        self, queue: str | None = None, function: str | None = None
    ) -> list[dict[str, Any]]:
        """Triggers sorted by creation time, optionally only those of ``queue`` and/or
        of ``function`` (a bare name matches every qualifier of it; ``name:qualifier``
        only that one)."""

    @abc.abstractmethod
    def update(self, id: str, **changes: Any) -> dict[str, Any]:
        """Change fields of ``UPDATABLE``; None leaves a field as it is, except
        ``max_concurrency=None``, which removes the limit. Running pollers take the new
        values from their next batch. Returns the trigger. Raises TriggerNotFoundError,
        InvalidParameterError (unknown field or bad value; nothing changes)."""

    @abc.abstractmethod
    def enable(self, id: str) -> dict[str, Any]:
        """Start polling (idempotent). Returns the trigger. Raises TriggerNotFoundError."""

    @abc.abstractmethod
    def disable(self, id: str) -> dict[str, Any]:
        """Stop polling (idempotent): no batch is received after this returns; batches
        being processed finish and are still deleted. Returns the trigger. Raises
        TriggerNotFoundError."""

    @abc.abstractmethod
    def delete(self, id: str) -> None:
        """Stop polling as ``disable`` and remove the trigger. The queue and its
        messages stay. Raises TriggerNotFoundError."""
