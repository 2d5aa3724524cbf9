"""RemoteAlarms: :class:`Alarms` over HTTP (``/v1/alarms``)."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from faasbox.api.alarms import Alarms

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


def _path(name: str) -> str:
    return "/v1/alarms/" + quote(name, safe="")


class RemoteAlarms(Alarms):
    """:class:`Alarms` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote

    def put(self, name: str, **definition: Any) -> dict[str, Any]:
        alarm: dict[str, Any] = self._remote.call("PUT", _path(name), json=definition)
        return alarm

    def get(self, name: str) -> dict[str, Any]:
        alarm: dict[str, Any] = self._remote.call("GET", _path(name))
        return alarm

    def list(self, prefix: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"prefix": prefix, "state": state}.items() if v is not None}
        found: list[dict[str, Any]] = self._remote.call(
            "GET", "/v1/alarms", params=params)["alarms"]
        return found

    def delete(self, name: str) -> None:
        self._remote.request("DELETE", _path(name))

    def history(self, name: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        found: builtins.list[dict[str, Any]] = self._remote.call(
            "GET", _path(name) + "/history", params={"limit": limit})["history"]
        return found

    def evaluate_now(self) -> builtins.list[dict[str, Any]]:
        changed: builtins.list[dict[str, Any]] = self._remote.call(
            "POST", "/v1/alarms/evaluate")["changed"]
        return changed
