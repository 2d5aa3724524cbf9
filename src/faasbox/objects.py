"""ObjectService: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.objects import Objects

if TYPE_CHECKING:
    from faasbox.platform import Platform


class ObjectService(Objects):
    """The local implementation of :class:`Objects`."""

    def close(self) -> None:
        """Stop background work. Idempotent."""


def attach(platform: Platform) -> ObjectService:
    """Build the service over ``platform``'s stores and register its drivers."""
    return ObjectService()
