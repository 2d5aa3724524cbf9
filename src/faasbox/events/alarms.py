"""AlarmService: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.alarms import Alarms

if TYPE_CHECKING:
    from faasbox.platform import Platform


class AlarmService(Alarms):
    """The local implementation of :class:`Alarms`."""

    def close(self) -> None:
        """Stop background work. Idempotent."""


def attach(platform: Platform) -> AlarmService:
    """Build the service over ``platform``'s stores and register its drivers."""
    return AlarmService()
