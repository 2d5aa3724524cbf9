"""MappingService: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.triggers import Triggers

if TYPE_CHECKING:
    from faasbox.platform import Platform


class MappingService(Triggers):
    """The local implementation of :class:`Triggers`."""

    def close(self) -> None:
        """Stop background work. Idempotent."""


def attach(platform: Platform) -> MappingService:
    """Build the service over ``platform``'s stores and register its drivers."""
    return MappingService()
