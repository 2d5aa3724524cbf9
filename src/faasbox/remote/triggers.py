"""RemoteTriggers: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.triggers import Triggers

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


class RemoteTriggers(Triggers):
    """:class:`Triggers` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote
