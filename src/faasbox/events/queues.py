"""QueueService: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING



if TYPE_CHECKING:
    from faasbox.platform import Platform


class QueueService:  # placeholder: implements Queues once filled in
    """The local implementation of :class:`Queues`."""

    def close(self) -> None:
        """Stop background work. Idempotent."""


def attach(platform: Platform) -> QueueService:
    """Build the service over ``platform``'s stores and register its drivers."""
    return QueueService()
