"""MetricService: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.metrics import Metrics

if TYPE_CHECKING:
    from faasbox.platform import Platform


class MetricService(Metrics):
    """The local implementation of :class:`Metrics`."""

    def close(self) -> None:
        """Stop background work. Idempotent."""


def attach(platform: Platform) -> MetricService:
    """Build the service over ``platform``'s stores and register its drivers."""
    return MetricService()
