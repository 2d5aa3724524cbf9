""":class:`Triggers` over HTTP: the routes of :mod:`faasbox.server.triggers`."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from faasbox.api.triggers import BATCH_SIZE, Triggers

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


def _t(id: str) -> str:
    # quoted whole: an id with '/' must reach the route and be answered "not found"
    return "/v1/triggers/" + quote(str(id), safe="")


class RemoteTriggers(Triggers):
    """:class:`Triggers` of the server a :class:`RemoteClient` talks to. Errors raise
    as the server raised them (TriggerNotFoundError, QueueNotFoundError...)."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote

    def create(
        self,
        queue: str,
        function: str,
        *,
        batch_size: int = BATCH_SIZE,
        max_batching_window_s: int = 0,
        max_concurrency: int | None = None,
        enabled: bool = True,
        report_batch_item_failures: bool = False,
    ) -> dict[str, Any]:
        body = {
            "queue": queue,
            "function": function,
            "batch_size": batch_size,
            "max_batching_window_s": max_batching_window_s,
            "max_concurrency": max_concurrency,
            "enabled": enabled,
            "report_batch_item_failures": report_batch_item_failures,
        }
        result: dict[str, Any] = self._remote.call("POST", "/v1/triggers", json=body)
        return result

    def get(self, id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("GET", _t(id))
        return result

    def list(
        self, queue: str | None = None, function: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        params = {key: value for key, value in (("queue", queue), ("function", function))
                  if value is not None}
        triggers: builtins.list[dict[str, Any]] = self._remote.call(
            "GET", "/v1/triggers", params=params
        )["triggers"]
        return triggers

    def update(self, id: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("PATCH", _t(id), json=changes)
        return result

    def enable(self, id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("POST", _t(id) + "/enable")
        return result

    def disable(self, id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("POST", _t(id) + "/disable")
        return result

    def delete(self, id: str) -> None:
        self._remote.request("DELETE", _t(id))
