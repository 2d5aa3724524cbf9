"""The zygote: a fork server that has already imported the worker and common modules.

Started by the supervisor as ``python -I -S zygote.py <fd> [<cgroups> [<namespace>]]``
(no site-packages, no environment), where ``<fd>`` is its end of a ``SOCK_SEQPACKET``
unix socket pair, ``<cgroups>`` the node's cgroups (memory; pids and cpu at the cgroup
level), joined by ``os.pathsep`` (empty when there are none),
and ``<namespace>``, at the ``namespace`` isolation level, the JSON of what each spare
prepares ahead of need (:func:`isolation.prepare`). Each packet is one
:mod:`protocol` frame.

The zygote forks sandboxes *ahead of need*: it keeps :data:`SPARES` spares, each a
forked child that has done the part of a sandbox's set-up that is the same for every
function (:func:`worker.spare`) and waits on its own stream socket for an ``init``
frame. A cold start then costs no fork, and no round trip through the zygote:

- zygote -> supervisor: ``hello`` {v, pid} once ready; ``spare`` {pid} with the
  supervisor's end of the spare's socket attached (SCM_RIGHTS); ``spare_error`` {error}
  when a fork failed; ``exit`` {pid, code, signal} whenever a spare or sandbox ends
  (always after its ``spare``).
- supervisor -> zygote: ``claim`` {pid, work_dir} when it made a spare a sandbox (the
  zygote forks a replacement a little later, off the critical path, and knows what to
  clean up should the supervisor vanish); ``want`` {} from a caller that found no
  spare left to take (the zygote forks one more at once).
- supervisor -> spare: ``init`` with the sandbox's parameters as the body; the spare
  answers ``ready`` (or ``init_error``) on the same socket, which then serves calls.

When the supervisor goes (end of stream on the socket) the zygote kills every sandbox
and spare it forked, removes what it can of their folders and of the node's cgroups
(the supervisor makes some ahead of need), and exits. It is a child subreaper, so
processes left by a sandbox are reaped here too. Stdlib only; the worker and protocol
modules are loaded from this folder as the private package ``_faasbox_runtime``, so no
sys.path entry leaks into sandboxes and a user module named ``worker`` or ``protocol``
cannot collide with them.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import shutil
import signal
import socket
import sys
import time
import types
from typing import Any

#: Imported before forking so that sandboxes start warm (a handler that imports them
#: pays nothing); kept to modules that cost little memory in every sandbox.
PRELOAD = (
    "base64", "collections", "contextlib", "copy", "dataclasses", "datetime", "decimal",
    "enum", "functools", "hashlib", "itertools", "json", "logging", "math", "random", "re",
    "string", "struct", "tempfile", "threading", "traceback", "typing", "uuid",
    "urllib.parse", "urllib.request", "pathlib", "subprocess",
)
PACKAGE = "_faasbox_runtime"
#: Spares kept forked ahead of need.
SPARES = 2
#: A claimed spare is replaced this long after the claim, when the cold start that took
#: it is most likely over: forking sooner would compete with it for the CPUs.
REFILL_DELAY_S = 0.005
_PR_SET_CHILD_SUBREAPER = 36


def load_runtime() -> tuple[Any, Any]:
    """Import worker.py and protocol.py of this folder as ``_faasbox_runtime.*``."""
    package = types.ModuleType(PACKAGE)
    package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules[PACKAGE] = package
    worker = importlib.import_module(f"{PACKAGE}.worker")
    protocol = importlib.import_module(f"{PACKAGE}.protocol")
    return worker, protocol


def _become_subreaper() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Zygote:
    """The fork loop."""

    def __init__(self, control: socket.socket, worker: Any, protocol: Any,
                 cgroup_parents: list[str] | None = None,
                 namespace: dict[str, Any] | None = None) -> None:
        self.control = control
        self.cgroup_parents = cgroup_parents or []
        self.namespace = namespace
        self.worker = worker
        self.protocol = protocol
        self.stdlib_path = list(sys.path)
        self.children: dict[int, dict[str, Any]] = {}  # pid -> what to clean up after it
        self.spares: set[int] = set()  # forked, not claimed yet
        self.refill_at: float | None = None  # when to fork the spares claimed since
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.supervisor_gone = False

    def send(self, header: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        try:
            if fds:
                socket.send_fds(self.control, [self.protocol.pack(header)], list(fds))
            else:
                self.control.send(self.protocol.pack(header))
        except OSError:
            self.supervisor_gone = True  # the loop shuts down

    def serve(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        signal.set_wakeup_fd(self.wake_w)
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        gc.freeze()  # keep preloaded objects out of the collector: fewer copied pages
        self.send({"type": "hello", "v": self.protocol.VERSION, "pid": os.getpid()})
        self.refill()
        while not self.supervisor_gone:
            timeout = None
            if self.refill_at is not None:
                timeout = max(0, int((self.refill_at - time.monotonic()) * 1000) + 1)
            events = poller.poll(timeout)
            for fd, _event in events:
                if fd == self.wake_r:
                    self._drain()
                    self.reap()
                elif not self.handle():
                    self.supervisor_gone = True
            if self.refill_at is not None and time.monotonic() >= self.refill_at:
                self.refill()
        self.shutdown()

    def _drain(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def handle(self) -> bool:
        """Serve one request; False at the end of the stream."""
        try:
            data = self.control.recv(1 << 20)
        except ConnectionError:
            return False
        if not data:
            return False
        header, _ = self.protocol.unpack(data)
        kind = header.get("type")
        if kind == "claim":
            pid = int(header["pid"])
            if pid in self.spares:  # else it died already (its exit was sent)
                self.spares.discard(pid)
                self.children[pid] = header
            if self.refill_at is None:
                self.refill_at = time.monotonic() + REFILL_DELAY_S
        elif kind == "want":  # a caller found no spare: one more, now
            self.fork_spare()
        else:
            raise self.protocol.ProtocolError(f"unexpected request {kind!r}")
        return True

    def refill(self) -> None:
        self.refill_at = None
        while len(self.spares) < SPARES and not self.supervisor_gone:
            if not self.fork_spare():
                return

    def fork_spare(self) -> bool:
        """Fork a spare and hand the supervisor its socket; False when the fork failed."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            self.send({"type": "spare_error", "error": str(exc)})
            return False
        if pid == 0:
            ours.close()
            self._child(theirs.detach())
        theirs.close()
        self.spares.add(pid)
        self.send({"type": "spare", "pid": pid}, (ours.fileno(),))
        ours.close()
        return True

    def _child(self, fd: int) -> None:
        """Become a spare, then a sandbox; never returns."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.control.close()
            self.worker.spare(fd, self.stdlib_path, self.namespace)
            code = 0
        except SystemExit as exc:
            if isinstance(exc.code, int):
                code = exc.code
            elif exc.code is None:
                code = 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.children.pop(pid, None) is not None or pid in self.spares:
                self.spares.discard(pid)
                code = os.waitstatus_to_exitcode(status)
                self.send({"type": "exit", "pid": pid,
                           "code": code if code >= 0 else None,
                           "signal": -code if code < 0 else None})

    def shutdown(self) -> None:
        """Kill every sandbox and spare (its whole process group), reap what is left, and
        remove the folders and cgroups of sandboxes the supervisor could not clean up
        itself (it is gone, or it is closing and they are gone already)."""
        for pid in [*self.children, *self.spares]:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                    break
                except OSError:
                    continue
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)
        for params in self.children.values():
            if params.get("work_dir"):
                shutil.rmtree(os.path.dirname(params["work_dir"]), ignore_errors=True)
        for parent in self.cgroup_parents:  # the sandboxes' cgroups, those made ahead,
            with contextlib.suppress(OSError), os.scandir(parent) as entries:  # then the node's
                for entry in entries:
                    if entry.name.startswith("sandbox-"):
                        with contextlib.suppress(OSError):
                            os.rmdir(entry.path)
            with contextlib.suppress(OSError):
                os.rmdir(parent)


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[1]))
    worker, protocol = load_runtime()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _become_subreaper()
    sys.modules[f"{PACKAGE}.isolation"]._c()  # libc loaded once, for every sandbox
    cgroups = [p for p in argv[2].split(os.pathsep) if p] if len(argv) > 2 else []
    namespace = json.loads(argv[3]) if len(argv) > 3 else None
    Zygote(control, worker, protocol, cgroups, namespace).serve()


if __name__ == "__main__":
    main(sys.argv)
