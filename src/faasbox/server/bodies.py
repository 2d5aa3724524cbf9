"""Request bodies read ahead of the app (to check them) and handed on to it unchanged."""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_all(receive: Receive) -> bytes:
    """The whole body of a request, from its ``http.request`` messages."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` in one message, then what ``receive`` gives (a
    disconnect, as the server says)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
