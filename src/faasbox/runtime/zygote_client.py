"""The supervisor's side of the zygote: start it, ask it to fork, learn how sandboxes end.

One reader thread takes every packet the zygote sends: ``spawned`` answers go to the
thread that asked, ``exit`` notifications are kept (a bounded number) for
:meth:`ZygoteClient.wait_exit`. Only cold starts and failures pass through here; the
warm path never touches the zygote.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faasbox.errors import FaasboxError
from faasbox.runtime import protocol

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
_KEEP_EXITS = 4096
#: The zygote's whole environment: none of the control plane's variables (secrets
#: included) reaches it; each sandbox gets its own from its spawn parameters.
ZYGOTE_ENV = {"LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin"}


@dataclass(frozen=True)
class ExitStatus:
    """How a sandbox process ended: an exit ``code`` or the ``signal`` that killed it."""

    code: int | None
    signal: int | None

    def describe(self) -> str:
        """In the words of Lambda's runtime errors: "exit status 3", "signal: killed"."""
        if self.signal is not None:
            try:
                name = (signal.strsignal(self.signal) or "").lower()
            except ValueError:
                name = ""
            return f"signal: {name or self.signal}"
        return f"exit status {self.code}"


class ZygoteClient:
    """A running zygote process. Use :meth:`start`; :meth:`close` kills it."""

    def __init__(self, *, start_timeout_s: float = 30.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiters: dict[int, Future[dict[str, Any]]] = {}
        self._exits: OrderedDict[int, ExitStatus] = OrderedDict()
        self._seq = itertools.count(1)
        self._alive = False
        self._reader: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """False once the zygote's socket closed (it died or was closed)."""
        return self._alive

    @property
    def running(self) -> bool:
        """:attr:`alive`, and its process has not exited (checked now)."""
        return self._alive and self._proc is not None and self._proc.poll() is None

    def start(self) -> ZygoteClient:
        """Start the zygote and wait for its ``hello``. Raises :class:`FaasboxError`."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(ZYGOTE_SCRIPT), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True, env=ZYGOTE_ENV,
            )
        except OSError as exc:
            ours.close()
            raise FaasboxError(f"cannot start the zygote: {exc}") from exc
        finally:
            theirs.close()
        self._sock = ours
        try:
            ours.settimeout(self.start_timeout_s)
            hello, _ = protocol.unpack(ours.recv(1 << 16))
            ours.settimeout(None)
            if hello.get("type") != "hello" or hello.get("v") != protocol.VERSION:
                raise protocol.ProtocolError(f"unexpected greeting {hello!r}")
        except (OSError, protocol.ProtocolError) as exc:
            self.close()
            raise FaasboxError(f"the zygote did not start: {exc}") from exc
        self.pid = int(hello["pid"])
        self._alive = True
        self._reader = threading.Thread(target=self._read_loop, name="faasbox-zygote-reader",
                                        daemon=True)
        self._reader.start()
        return self

    def spawn(self, sandbox_end: socket.socket, params: dict[str, Any], timeout_s: float) -> int:
        """Fork a sandbox that gets ``sandbox_end`` and ``params``; return its pid.

        Raises :class:`FaasboxError` when the zygote is gone or cannot fork.
        """
        sock = self._sock
        if sock is None or not self._alive:
            raise FaasboxError("the zygote is not running")
        seq = next(self._seq)
        future: Future[dict[str, Any]] = Future()
        with self._cond:
            self._waiters[seq] = future
        frame = protocol.pack({"type": "spawn", "seq": seq, "params": params})
        try:
            with self._send_lock:
                socket.send_fds(sock, [frame], [sandbox_end.fileno()])
            answer = future.result(timeout=timeout_s)
        except (OSError, FutureTimeout) as exc:
            raise FaasboxError(f"the zygote did not fork a sandbox: {exc!r}") from exc
        finally:
            with self._cond:
                self._waiters.pop(seq, None)
        if "error" in answer:
            raise FaasboxError(f"the zygote could not fork a sandbox: {answer['error']}")
        return int(answer["pid"])

    def wait_exit(self, pid: int, timeout_s: float) -> ExitStatus | None:
        """How sandbox ``pid`` ended, waiting up to ``timeout_s``; None if unknown."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or not self._alive, timeout_s)
            return self._exits.pop(pid, None)

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                header, _ = protocol.unpack(data)
                kind = header.get("type")
                with self._cond:
                    if kind == "spawned":
                        if "pid" in header:  # a pid now reused: forget how the old one ended
                            self._exits.pop(int(header["pid"]), None)
                        future = self._waiters.pop(int(header["seq"]), None)
                        if future is not None:
                            future.set_result(header)
                    elif kind == "exit":
                        self._exits[int(header["pid"])] = ExitStatus(header.get("code"),
                                                                     header.get("signal"))
                        while len(self._exits) > _KEEP_EXITS:
                            self._exits.popitem(last=False)
                        self._cond.notify_all()
        except (OSError, protocol.ProtocolError):
            pass
        finally:
            with self._cond:
                self._alive = False
                for future in self._waiters.values():
                    if not future.done():
                        future.set_exception(OSError("the zygote exited"))
                self._waiters.clear()
                self._cond.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """End the zygote: it kills the sandboxes it forked and exits. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            if self._reader is not None and self._reader is not threading.current_thread():
                self._reader.join(timeout_s)
            sock.close()
        self._alive = False
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
