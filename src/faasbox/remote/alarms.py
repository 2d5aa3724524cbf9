"""RemoteAlarms: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.alarms import Alarms

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


class RemoteAlarms(Alarms):
    """:class:`Alarms` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote
