""":class:`Queues` over HTTP: the routes of :mod:`faasbox.server.queues`."""

from __future__ import annotations

import builtins
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from faasbox.api.queues import (
    MAX_MESSAGE_BYTES,
    RETENTION_S,
    VISIBILITY_TIMEOUT_S,
    Message,
    Queues,
)
from faasbox.errors import InvalidParameterError

if TYPE_CHECKING:
    from faasbox.remote import RemoteClient


_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@lru_cache(maxsize=1024)
def _q(name: str) -> str:
    # checked here too: a name with '/' would miss the route and read as "no such path"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidParameterError(
            f"invalid queue name {name!r}: use 1-80 letters, digits, '-' or '_'"
        )
    return "/v1/queues/" + quote(name, safe="")


class RemoteQueues(Queues):
    """:class:`Queues` of the server a :class:`RemoteClient` talks to. Errors raise as
    the server raised them (QueueNotFoundError, InvalidReceiptHandleError...)."""

    def __init__(self, remote: RemoteClient) -> None:
        self._remote = remote

    def create(
        self,
        name: str,
        *,
        visibility_timeout_s: int = VISIBILITY_TIMEOUT_S,
        retention_s: int = RETENTION_S,
        delay_s: int = 0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        receive_wait_s: int = 0,
        dead_letter_queue: str | None = None,
        max_receive_count: int | None = None,
    ) -> dict[str, Any]:
        body = {
            "visibility_timeout_s": visibility_timeout_s, "retention_s": retention_s,
            "delay_s": delay_s, "max_message_bytes": max_message_bytes,
            "receive_wait_s": receive_wait_s, "dead_letter_queue": dead_letter_queue,
            "max_receive_count": max_receive_count,
        }
        result: dict[str, Any] = self._remote.call("PUT", _q(name), json=body)
        return result

    def set_attributes(self, name: str, **attributes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("PATCH", _q(name), json=attributes)
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call("GET", _q(name))
        return result

    def list(self, prefix: str | None = None) -> builtins.list[dict[str, Any]]:
        params = {"prefix": prefix} if prefix else None
        found: builtins.list[dict[str, Any]] = self._remote.call(
            "GET", "/v1/queues", params=params
        )["queues"]
        return found

    def delete(self, name: str) -> None:
        self._remote.request("DELETE", _q(name))

    def purge(self, name: str) -> int:
        return int(self._remote.call("POST", _q(name) + "/purge")["purged"])

    def send(
        self,
        name: str,
        body: str,
        *,
        delay_s: int | None = None,
        message_attributes: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        payload: dict[str, Any] = {"body": body}
        if delay_s is not None:
            payload["delay_s"] = delay_s
        if message_attributes is not None:
            payload["message_attributes"] = message_attributes
        result: dict[str, str] = self._remote.call("POST", _q(name) + "/messages", json=payload)
        return result

    def send_batch(self, name: str, entries: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call(
            "POST", _q(name) + "/messages/batch", json={"entries": entries}
        )
        return result

    def receive(
        self,
        name: str,
        *,
        max_messages: int = 1,
        wait_s: int | None = None,
        visibility_timeout_s: int | None = None,
    ) -> builtins.list[Message]:
        body = {"max_messages": max_messages, "wait_s": wait_s,
                "visibility_timeout_s": visibility_timeout_s}
        found = self._remote.call("POST", _q(name) + "/receive", json=body)["messages"]
        return [Message.from_dict(item) for item in found]

    def delete_message(self, name: str, receipt_handle: str) -> None:
        self._remote.request("DELETE", f"{_q(name)}/messages/{quote(receipt_handle, safe='')}")

    def delete_batch(self, name: str, entries: builtins.list[dict[str, str]]) -> dict[str, Any]:
        result: dict[str, Any] = self._remote.call(
            "POST", _q(name) + "/messages/delete-batch", json={"entries": entries}
        )
        return result

    def change_visibility(
        self, name: str, receipt_handle: str, visibility_timeout_s: int
    ) -> None:
        self._remote.request(
            "PUT", f"{_q(name)}/messages/{quote(receipt_handle, safe='')}/visibility",
            json={"visibility_timeout_s": visibility_timeout_s},
        )

    def redrive(self, dead_letter_queue: str, *, destination: str | None = None) -> int:
        moved = self._remote.call(
            "POST", _q(dead_letter_queue) + "/redrive", json={"destination": destination}
        )["moved"]
        return int(moved)
