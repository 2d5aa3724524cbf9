"""Signing every request of the HTTP client: an ``httpx.Auth`` over SigV4."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from faasbox import stdlib_sigv4
from faasbox.auth.credentials import Credentials

#: A request that set this header itself (the SHA-256 of a file it streams) is signed
#: without reading its body into memory.
PAYLOAD_HEADER = "x-amz-content-sha256"


class SigV4(httpx.Auth):
    """Signs with ``credentials`` (service ``faasbox``, region ``local``)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        declared = request.headers.get(PAYLOAD_HEADER)
        body = request.read() if declared is None else b""
        headers: dict[str, str] = {}
        for name, value in request.headers.multi_items():  # repeats joined as the server does
            name = name.lower()
            if name != "host":
                headers[name] = f"{headers[name]},{value}" if name in headers else value
        signed = stdlib_sigv4.sign(
            request.method, str(request.url), headers, body, self.credentials.key_id,
            self.credentials.secret, session_token=self.credentials.session_token,
            payload_hash=declared)
        for name in _ADDED:
            if name in signed:
                request.headers[name] = signed[name]
        yield request


#: What signing adds to a request (the rest of its headers stay as they were).
_ADDED = ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256", "X-Amz-Security-Token")
