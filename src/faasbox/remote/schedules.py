"""RemoteSchedules: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.schedules import Schedules

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


class RemoteSchedules(Schedules):
    """:class:`Schedules` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote
