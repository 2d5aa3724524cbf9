"""RemoteSchedules: :class:`~faasbox.api.schedules.Schedules` over ``/v1/schedules``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from faasbox.api.schedules import Schedules

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


def _path(name: str) -> str:
    return "/v1/schedules/" + quote(name, safe="")


class RemoteSchedules(Schedules):
    """:class:`Schedules` over HTTP."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote

    def create(
        self,
        name: str,
        expression: str,
        target: str,
        *,
        timezone: str = "UTC",
        input: Any = None,
        overlap: str = "skip",
        enabled: bool = True,
        start_at: float | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name, "expression": expression, "target": target, "timezone": timezone,
            "input": input, "overlap": overlap, "enabled": enabled, "start_at": start_at,
        }
        result: dict[str, Any] = self._remote.call("POST", "/v1/schedules", json=body)
        return result

    def update(self, name: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("PATCH", _path(name), json=changes)
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("GET", _path(name))
        return result

    def list(self, prefix: str | None = None) -> list[dict[str, Any]]:
        params = {"prefix": prefix} if prefix else None
        result: list[dict[str, Any]] = self._remote.call(
            "GET", "/v1/schedules", params=params
        )["schedules"]
        return result

    def delete(self, name: str) -> None:
        self._remote.request("DELETE", _path(name))

    def enable(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("POST", _path(name) + "/enable")
        return result

    def disable(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("POST", _path(name) + "/disable")
        return result
