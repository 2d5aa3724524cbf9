"""The one wire protocol between the supervisor, the zygote and the sandboxes.

A frame is a 4-byte big-endian length, then that many bytes of a JSON object (the
header). When the header has ``"body": n``, n raw bytes follow the header: events,
results and error objects travel as JSON bytes already, so they are attached as they
are instead of being decoded and encoded again on every hop.

Every peer announces :data:`VERSION` in its first message (``hello``/``ready``); a
peer that speaks another version is refused.

Stdlib only: this module is imported inside the zygote and the sandboxes, which never
see the faasbox package or anything installed next to it.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

VERSION = 1
LENGTH = struct.Struct(">I")
#: Upper bound of one header; bodies are bounded by :data:`MAX_BODY`.
MAX_HEADER = 1 << 20
MAX_BODY = 1 << 30
_CHUNK = 1 << 16


class ProtocolError(Exception):
    """Raised when a peer sends bytes that are not a valid frame of this protocol."""


def pack(header: dict[str, Any], body: bytes = b"") -> bytes:
    """Encode one frame. ``header`` is not modified; ``body`` may be empty."""
    if body:
        header = {**header, "body": len(body)}
    raw = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((LENGTH.pack(len(raw)), raw, body))


def unpack(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """Decode one whole frame (as :func:`pack` made it). Raises :class:`ProtocolError`."""
    if len(frame) < LENGTH.size:
        raise ProtocolError("frame shorter than its length prefix")
    (size,) = LENGTH.unpack_from(frame)
    end = LENGTH.size + size
    header = _header(frame[LENGTH.size : end])
    body = frame[end:]
    if len(body) != header.get("body", 0):
        raise ProtocolError(f"frame body has {len(body)} bytes, header says {header.get('body')}")
    return header, bytes(body)


def _header(raw: bytes | bytearray | memoryview) -> dict[str, Any]:
    try:
        header = json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    body = header.get("body", 0)
    if not isinstance(body, int) or not 0 <= body <= MAX_BODY:
        raise ProtocolError(f"invalid body length {body!r}")
    return header


class FrameReader:
    """Reads frames from a stream socket, keeping what arrived beyond the current one.

    Usually one ``recv`` holds a whole frame, so a round trip costs one system call on
    each side. With a ``deadline`` (``time.monotonic()`` seconds) every receive waits
    only until then and ``TimeoutError`` is raised; a reader that timed out inside a
    frame cannot be used again (the supervisor kills such a sandbox anyway).
    """

    __slots__ = ("_buf", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def read(self, deadline: float | None = None) -> tuple[dict[str, Any], bytes] | None:
        """The next frame as ``(header, body)``; None at a clean end of stream.

        Raises :class:`ProtocolError` for a malformed frame or a stream that ends in
        the middle of one.
        """
        buf = self._buf
        while len(buf) < LENGTH.size:
            if not self._fill(deadline):
                if buf:
                    raise ProtocolError("stream ended inside a frame")
                return None
        (size,) = LENGTH.unpack_from(buf)
        if size > MAX_HEADER:
            raise ProtocolError(f"frame header of {size} bytes is over the limit")
        end = LENGTH.size + size
        while len(buf) < end:
            if not self._fill(deadline):
                raise ProtocolError("stream ended inside a frame")
        header = _header(memoryview(buf)[LENGTH.size : end])
        want = header.get("body", 0)
        if len(buf) - end >= want:
            body = bytes(buf[end : end + want])
            del buf[: end + want]
            return header, body
        body_buf = bytearray(want)
        have = len(buf) - end
        body_buf[:have] = buf[end:]
        del buf[:]
        view = memoryview(body_buf)
        while have < want:
            self._wait(deadline)
            got = self._sock.recv_into(view[have:])
            if not got:
                raise ProtocolError("stream ended inside a frame body")
            have += got
        return header, bytes(body_buf)

    def _wait(self, deadline: float | None) -> None:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            self._sock.settimeout(remaining)

    def _fill(self, deadline: float | None) -> bool:
        self._wait(deadline)
        chunk = self._sock.recv(_CHUNK)
        if not chunk:
            return False
        self._buf += chunk
        return True
