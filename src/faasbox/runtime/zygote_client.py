"""The supervisor's side of the zygote: start it, take the spares it forks ahead of
need, learn how sandboxes end.

One reader thread takes every packet the zygote sends: ``spare`` announcements (with the
spare's socket) are queued for :meth:`ZygoteClient.take_spare`, ``exit`` notifications
are kept (a bounded number) for :meth:`ZygoteClient.wait_exit`. Only cold starts and
failures pass through here; the warm path never touches the zygote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faasbox.errors import FaasboxError
from faasbox.runtime import protocol

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
_KEEP_EXITS = 4096
#: How often a caller waiting for a spare asks the zygote again.
_WANT_EVERY_S = 0.5
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


@dataclass
class Spare:
    """A process forked ahead of need, waiting on ``sock`` for its ``init`` frame."""

    pid: int
    sock: socket.socket


class ZygoteClient:
    """A running zygote process. Use :meth:`start`; :meth:`close` kills it."""

    def __init__(self, *, start_timeout_s: float = 30.0,
                 cgroup_parents: list[str] | None = None,
                 namespace: dict[str, Any] | None = None) -> None:
        self.start_timeout_s = start_timeout_s
        #: The node's cgroups (memory; pids and cpu at the cgroup level): the zygote
        #: removes their ``sandbox-*`` children, then them, should the supervisor vanish.
        self.cgroup_parents = cgroup_parents or []
        #: At the namespace level: what each spare prepares (see isolation.prepare).
        self.namespace = namespace
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._spares: deque[Spare] = deque()
        self._spare_error: str | None = None
        self._exits: OrderedDict[int, ExitStatus] = OrderedDict()
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

    def _arguments(self) -> list[str]:
        cgroups = os.pathsep.join(self.cgroup_parents)
        if self.namespace is not None:
            return [cgroups, json.dumps(self.namespace)]
        return [cgroups] if cgroups else []

    def start(self) -> ZygoteClient:
        """Start the zygote and wait for its ``hello``. Raises :class:`FaasboxError`."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(ZYGOTE_SCRIPT), str(theirs.fileno()),
                 *self._arguments()],
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

    def take_spare(self, timeout_s: float) -> Spare:
        """A spare for a new sandbox (it is the caller's from now on), waiting up to
        ``timeout_s`` for one when none is left. Raises :class:`FaasboxError` when the
        zygote is gone or cannot fork."""
        deadline = time.monotonic() + timeout_s
        asked_at: float | None = None
        with self._cond:
            self._spare_error = None
            while True:
                while self._spares:
                    spare = self._spares.popleft()
                    if _alive(spare.sock):
                        return spare
                    spare.sock.close()  # died unused; its exit is on its way
                if not self._alive:
                    raise FaasboxError("the zygote is not running")
                if self._spare_error is not None:
                    raise FaasboxError(f"the zygote could not fork a sandbox: "
                                       f"{self._spare_error}")
                now = time.monotonic()
                if now >= deadline:
                    raise FaasboxError("the zygote did not fork a sandbox in time")
                if asked_at is None or now - asked_at >= _WANT_EVERY_S:
                    self._send({"type": "want"})  # one more spare, forked now
                    asked_at = now
                self._cond.wait(min(deadline - now, _WANT_EVERY_S))

    def claim(self, spare: Spare, work_dir: str) -> None:
        """Tell the zygote that ``spare`` is now a sandbox (it forks a replacement), and
        what to clean up after it should this process vanish."""
        self._send({"type": "claim", "pid": spare.pid, "work_dir": work_dir})

    def _send(self, header: dict[str, Any]) -> None:
        sock = self._sock
        if sock is None:
            return
        with self._send_lock, contextlib.suppress(OSError):  # a dead zygote: see alive
            sock.send(protocol.pack(header))

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
                data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 1)
                for fd in fds:  # received fds are inheritable: no child of ours gets one
                    os.set_inheritable(fd, False)
                if not data:
                    for fd in fds:
                        os.close(fd)
                    break
                header, _ = protocol.unpack(data)
                kind = header.get("type")
                with self._cond:
                    if kind == "spare" and fds:
                        pid = int(header["pid"])
                        self._exits.pop(pid, None)  # a pid now reused: forget the old one
                        self._spares.append(Spare(pid, socket.socket(fileno=fds[0])))
                        fds = fds[1:]
                        self._cond.notify_all()
                    elif kind == "spare_error":
                        self._spare_error = str(header.get("error"))
                        self._cond.notify_all()
                    elif kind == "exit":
                        pid = int(header["pid"])
                        self._exits[pid] = ExitStatus(header.get("code"), header.get("signal"))
                        while len(self._exits) > _KEEP_EXITS:
                            self._exits.popitem(last=False)
                        for spare in self._spares:
                            if spare.pid == pid:  # died before anyone took it
                                self._spares.remove(spare)
                                spare.sock.close()
                                break
                        self._cond.notify_all()
                for fd in fds:
                    os.close(fd)
        except (OSError, protocol.ProtocolError):
            pass
        finally:
            with self._cond:
                self._alive = False
                self._drop_spares()
                self._cond.notify_all()

    def _drop_spares(self) -> None:
        """Close the sockets of the spares nobody took: they end (lock held)."""
        while self._spares:
            self._spares.popleft().sock.close()

    def close(self, timeout_s: float = 5.0) -> None:
        """End the zygote: it kills the sandboxes it forked and exits. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            if self._reader is not None and self._reader is not threading.current_thread():
                self._reader.join(timeout_s)
            sock.close()
        with self._cond:
            self._alive = False
            self._drop_spares()
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _alive(sock: socket.socket) -> bool:
    """True unless the spare at the other end is gone (end of stream: a spare says
    nothing before its ``init``)."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
