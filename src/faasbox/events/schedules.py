"""ScheduleService: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.schedules import Schedules

if TYPE_CHECKING:
    from faasbox.platform import Platform


class ScheduleService(Schedules):
    """The local implementation of :class:`Schedules`."""

    def close(self) -> None:
        """Stop background work. Idempotent."""


def attach(platform: Platform) -> ScheduleService:
    """Build the service over ``platform``'s stores and register its drivers."""
    return ScheduleService()
