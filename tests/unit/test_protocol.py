"""The framing shared by the supervisor, the zygote and the sandboxes."""

from __future__ import annotations

import ast
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faasbox.runtime import protocol
from faasbox.runtime.protocol import FrameReader, ProtocolError, pack, unpack

RUNTIME = Path(protocol.__file__).parent


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield left, right
    left.close()
    right.close()


def test_frame_is_a_big_endian_length_then_json() -> None:
    frame = pack({"type": "ready", "v": protocol.VERSION})
    assert frame[:4] == len(frame[4:]).to_bytes(4, "big")
    assert frame[4:] == b'{"type":"ready","v":1}'
    assert unpack(frame) == ({"type": "ready", "v": 1}, b"")


def test_body_is_attached_raw_after_the_header() -> None:
    header = {"type": "invoke"}
    frame = pack(header, b'{"raw": true}')
    assert header == {"type": "invoke"}  # not modified
    assert frame.endswith(b'{"raw": true}')
    assert unpack(frame) == ({"type": "invoke", "body": 13}, b'{"raw": true}')


@pytest.mark.parametrize("frame", [
    b"\x00\x00",
    b"\x00\x00\x00\x03abc",
    b"\x00\x00\x00\x02[]",
    b"\x00\x00\x00\x0b{\"body\":-1}",
    pack({"body": 3}),
])
def test_malformed_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        unpack(frame)


def test_reader_splits_frames_that_arrive_together(pair: tuple[socket.socket, socket.socket]
                                                   ) -> None:
    left, right = pair
    left.sendall(pack({"n": 1}) + pack({"n": 2}, b"two") + pack({"n": 3}))
    left.close()
    reader = FrameReader(right)
    assert reader.read() == ({"n": 1}, b"")
    assert reader.read() == ({"n": 2, "body": 3}, b"two")
    assert reader.read() == ({"n": 3}, b"")
    assert reader.read() is None  # clean end of stream


def test_reader_joins_frames_that_arrive_in_pieces(pair: tuple[socket.socket, socket.socket]
                                                   ) -> None:
    left, right = pair
    frame = pack({"type": "result"}, b"x" * 1000)

    def trickle() -> None:
        for i in range(0, len(frame), 7):
            left.sendall(frame[i:i + 7])
            time.sleep(0.0005)

    thread = threading.Thread(target=trickle)
    thread.start()
    assert FrameReader(right).read() == ({"type": "result", "body": 1000}, b"x" * 1000)
    thread.join()


def test_reader_takes_large_bodies(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB
    thread = threading.Thread(target=left.sendall, args=(pack({"big": True}, body),))
    thread.start()
    header, got = FrameReader(right).read() or ({}, b"")
    thread.join()
    assert header["body"] == len(body) and got == body


def test_stream_ending_inside_a_frame_is_an_error(pair: tuple[socket.socket, socket.socket]
                                                  ) -> None:
    left, right = pair
    left.sendall(pack({"n": 1}, b"body")[:-2])
    left.close()
    with pytest.raises(ProtocolError):
        FrameReader(right).read()


def test_oversized_header_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    left.sendall((protocol.MAX_HEADER + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="over the limit"):
        FrameReader(right).read()


def test_reader_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    _left, right = pair
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        FrameReader(right).read(deadline=time.monotonic() + 0.1)
    assert 0.09 <= time.monotonic() - started < 1.0
    with pytest.raises(TimeoutError):
        FrameReader(right).read(deadline=time.monotonic() - 1)


def test_invoke_frame_is_the_frame_pack_makes() -> None:
    frame = protocol.invoke_frame('req-"1"\u00e9', protocol.quote("arn:x"), 1234, b'{"a":1}')
    assert unpack(frame) == ({"type": "invoke", "request_id": 'req-"1"\u00e9', "arn": "arn:x",
                              "deadline_ms": 1234, "body": 7}, b'{"a":1}')
    assert unpack(protocol.invoke_frame("r", protocol.quote("a"), 1, b"")) == (
        {"type": "invoke", "request_id": "r", "arn": "a", "deadline_ms": 1, "body": 0}, b"")


def test_armed_reader_waits_until_the_deadline_then_serves_later_frames(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    reader = FrameReader(right)
    reader.arm(0.05)  # shorter than the deadline: the reader waits on, then gives up
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        reader.read(deadline=started + 0.2)
    assert 0.19 <= time.monotonic() - started < 1.0
    reader.arm(5.0)  # longer than the deadline: the deadline still counts
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        reader.read(deadline=started + 0.1)
    assert 0.09 <= time.monotonic() - started < 1.0
    threading.Timer(0.1, left.sendall, args=(pack({"n": 1}, b"late"),)).start()
    assert reader.read() == ({"n": 1, "body": 4}, b"late")  # no deadline: waits as long


def test_armed_send_gives_up(pair: tuple[socket.socket, socket.socket]) -> None:
    left, _right = pair
    FrameReader(left).arm(0.05)
    with pytest.raises(BlockingIOError):
        left.sendall(b"x" * (16 << 20))  # nobody reads


def test_reader_fast_path_keeps_what_follows(pair: tuple[socket.socket, socket.socket]
                                             ) -> None:
    left, right = pair
    reader = FrameReader(right)
    left.sendall(pack({"n": 1}, b"one"))
    assert reader.read(deadline=time.monotonic() + 5) == ({"n": 1, "body": 3}, b"one")
    left.sendall(pack({"n": 2}, b"two") + pack({"n": 3}))
    assert reader.read(deadline=time.monotonic() + 5) == ({"n": 2, "body": 3}, b"two")
    assert reader.read(deadline=time.monotonic() + 5) == ({"n": 3}, b"")
    left.sendall(pack({"n": 4}, b"four")[:9])
    threading.Timer(0.05, left.sendall, args=(pack({"n": 4}, b"four")[9:],)).start()
    assert reader.read(deadline=time.monotonic() + 5) == ({"n": 4, "body": 4}, b"four")


@pytest.mark.parametrize("module", ["protocol.py", "worker.py", "zygote.py", "rehearsal.py"])
def test_sandbox_side_code_imports_only_the_stdlib(module: str) -> None:
    """What runs in the zygote and the sandboxes never imports faasbox or a package."""
    tree = ast.parse((RUNTIME / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
