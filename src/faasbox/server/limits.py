"""Limits on what a request may carry, checked before any route: the size of its
headers, and how deeply the JSON body of an API call nests."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from faasbox.server.bodies import read_all, replay
from faasbox.server.errors import error_response

#: Bodies that are the caller's own data, passed on as they are (a function's event,
#: an object's content): their depth is the function's business, as on Lambda.
_PASSED_ON = ("/invoke", "/objects/")


class HeaderLimit:
    """Answers 431 to a request whose headers (names and values) pass ``limit`` bytes,
    before any route sees it. Plain ASGI: one sum per request."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope["headers"])
            if size > self.limit:
                response = error_response(
                    "RequestHeaderFieldsTooLargeException",
                    f"the request's headers take {size} bytes, over the {self.limit}-byte "
                    "limit", 431)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def depth(value: object) -> int:
    """How deeply ``value`` (parsed JSON) nests: a scalar 0, ``[]`` 1, ``[[1]]`` 2."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in item)
    return deepest


class JsonDepth:
    """Answers 400 to an API call whose JSON body nests deeper than ``limit`` levels
    (function payloads and object contents excepted), before a route parses it."""

    def __init__(self, app: ASGIApp, limit: int, max_bytes: int) -> None:
        self.app = app
        self.limit = limit
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        headers = dict(scope.get("headers", ()))
        size = headers.get(b"content-length", b"")
        if (scope["type"] != "http" or not path.startswith("/v1/")
                or any(part in path for part in _PASSED_ON)
                or not headers.get(b"content-type", b"").startswith(b"application/json")
                or not size.isdigit() or not 0 < int(size) <= self.max_bytes):
            await self.app(scope, receive, send)
            return
        body = await read_all(receive)
        try:
            nested = depth(orjson.loads(body))
        except orjson.JSONDecodeError:
            nested = 0  # not JSON (or past orjson's own 1,024 levels): the route says so
        if nested > self.limit:
            await error_response(
                "InvalidRequestContentException",
                f"the JSON body nests {nested} levels deep, over the {self.limit}-level "
                "limit", 400)(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)
