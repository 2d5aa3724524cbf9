"""The one wire protocol between the supervisor, the zygote and the sandboxes.

A frame is a 4-byte big-endian length, then that many bytes of a JSON object (the
header). When the header has ``"body": n``, n raw bytes follow the header: events,
results and error objects travel as JSON bytes already, so they are attached as they
are instead of being decoded and encoded again on every hop.

Every peer announces :data:`VERSION` in its first message (``hello``/``ready``); a
peer that speaks another version is refused.

The frames of the warm path (``invoke`` and ``result``) are the same JSON, only written
with a format string instead of :func:`pack` (see :func:`invoke_frame`), and read with
one ``recv`` when the whole frame has arrived.

Stdlib only: this module is imported inside the zygote and the sandboxes, which never
see the faasbox package or anything installed next to it.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

VERSION = 1
LENGTH = struct.Struct(">I")
#: Upper bound of one header; bodies are bounded by :data:`MAX_BODY`.
MAX_HEADER = 1 << 20
MAX_BODY = 1 << 30
_CHUNK = 1 << 16
#: A receive timeout armed on the socket (SO_RCVTIMEO) is reused while it is within this
#: many seconds of the time left, so the warm path makes no setsockopt call.
_SLACK_S = 0.002
_TIMEVAL = struct.Struct("@ll")


class ProtocolError(Exception):
    """Raised when a peer sends bytes that are not a valid frame of this protocol."""


def pack(header: dict[str, Any], body: bytes = b"") -> bytes:
    """Encode one frame. ``header`` is not modified; ``body`` may be empty."""
    if body:
        header = {**header, "body": len(body)}
    raw = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((LENGTH.pack(len(raw)), raw, body))


def invoke_frame(request_id: str, quoted_arn: bytes, deadline_ms: int, event: bytes,
                 env: dict[str, str] | None = None) -> bytes:
    """The ``invoke`` frame, as :func:`pack` would make it (keys in another order).

    ``quoted_arn`` is the ARN as a JSON string (:func:`quote`), so a caller can keep it.
    ``env``: variables to set before this call (renewed credentials).
    """
    raw = b'{"type":"invoke","request_id":%s,"arn":%s,"deadline_ms":%d,"body":%d%s}' % (
        _quote(request_id).encode(), quoted_arn, deadline_ms, len(event),
        b',"env":' + json.dumps(env).encode() if env else b"")
    return b"".join((LENGTH.pack(len(raw)), raw, event))


def quote(text: str) -> bytes:
    """``text`` as a JSON string (ASCII, with its quotes)."""
    return _quote(text).encode()


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
        header = json.loads(raw if isinstance(raw, bytes) else bytes(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    body = header.get("body", 0)
    if not isinstance(body, int) or not 0 <= body <= MAX_BODY:
        raise ProtocolError(f"invalid body length {body!r}")
    return header


def _timeval(seconds: float) -> bytes:
    usec = max(1000, int(seconds * 1_000_000))  # 0 would mean "no timeout"
    return _TIMEVAL.pack(usec // 1_000_000, usec % 1_000_000)


class FrameReader:
    """Reads frames from a blocking stream socket, keeping what arrived beyond the
    current one.

    Usually one ``recv`` holds a whole frame, so a round trip costs one system call on
    each side. With a ``deadline`` (``time.monotonic()`` seconds) every receive waits
    only until then and ``TimeoutError`` is raised; the wait is the socket's own receive
    timeout (SO_RCVTIMEO), armed again only when it is off from the time left by more
    than a couple of milliseconds, so no ``poll`` and, on a warm path with a steady
    timeout, no ``setsockopt`` either. A reader that timed out inside a frame cannot be
    used again (the supervisor kills such a sandbox anyway).
    """

    __slots__ = ("_armed", "_buf", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        #: SO_RCVTIMEO now armed on the socket (seconds); None when never armed here.
        self._armed: float | None = None

    @property
    def pending(self) -> bool:
        """Whether bytes beyond the last frame read are kept (none between calls)."""
        return bool(self._buf)

    def arm(self, seconds: float) -> None:
        """Set the socket's receive and send timeouts (SO_RCVTIMEO, SO_SNDTIMEO): a
        ``sendall`` that waits that long fails with ``BlockingIOError``, and reads with a
        deadline about that far away need no further system call to wait."""
        value = _timeval(seconds)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self._armed = seconds

    def read(self, deadline: float | None = None) -> tuple[dict[str, Any], bytes] | None:
        """The next frame as ``(header, body)``; None at a clean end of stream.

        Raises :class:`ProtocolError` for a malformed frame or a stream that ends in
        the middle of one.
        """
        buf = self._buf
        if not buf:  # the usual case: one recv brings exactly one whole frame
            chunk = self._recv(deadline)
            if not chunk:
                return None
            size = len(chunk)
            if size > LENGTH.size:
                end = LENGTH.size + int.from_bytes(chunk[: LENGTH.size], "big")
                if end <= size and end - LENGTH.size <= MAX_HEADER:
                    header = _header(chunk[LENGTH.size : end])
                    total = end + header.get("body", 0)
                    if total == size:
                        return header, chunk[end:]
            buf += chunk
        return self._read_slow(deadline)

    def _read_slow(self, deadline: float | None) -> tuple[dict[str, Any], bytes] | None:
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
        sock = self._sock
        while have < want:
            got = self._io(sock.recv_into, view[have:], deadline)
            if not got:
                raise ProtocolError("stream ended inside a frame body")
            have += got
        return header, bytes(body_buf)

    def _recv(self, deadline: float | None) -> bytes:
        if deadline is None:
            while True:
                try:
                    return self._sock.recv(_CHUNK)
                except BlockingIOError:  # a timeout armed for another read: wait on
                    continue
        result: bytes = self._io(self._sock.recv, _CHUNK, deadline)
        return result

    def _io(self, call: Any, arg: Any, deadline: float | None) -> Any:
        """``call(arg)`` (a receive) that gives up at ``deadline``."""
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("deadline passed")
                armed = self._armed
                if armed is None or abs(armed - remaining) > _SLACK_S:
                    self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                          _timeval(remaining))
                    self._armed = remaining
            try:
                return call(arg)
            except BlockingIOError:  # SO_RCVTIMEO ran out: maybe early, check the clock
                if deadline is not None:
                    self._armed = None  # arm again with what is left

    def _fill(self, deadline: float | None) -> bool:
        chunk = self._recv(deadline)
        if not chunk:
            return False
        self._buf += chunk
        return True
