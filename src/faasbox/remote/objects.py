"""RemoteObjects: placeholder, filled in by its owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasbox.api.objects import Objects

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


class RemoteObjects(Objects):
    """:class:`Objects` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote
