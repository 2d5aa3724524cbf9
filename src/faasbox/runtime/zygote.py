"""The zygote: a fork server that has already imported the worker and common modules.

Started by the supervisor as ``python -I -S zygote.py <fd>`` (no site-packages, no
environment), where ``<fd>`` is its end of a ``SOCK_SEQPACKET`` unix socket pair. Each
packet is one :mod:`protocol` frame:

- supervisor -> zygote: ``spawn`` {seq, params}, with the sandbox's end of its own
  socket pair attached (SCM_RIGHTS). The zygote forks; the child becomes the sandbox
  (:func:`worker.main`); the zygote answers ``spawned`` {seq, pid} or {seq, error}.
- zygote -> supervisor: ``hello`` {v, pid} once ready, and ``exit`` {pid, code, signal}
  whenever a sandbox ends (always after its ``spawned``).

When the supervisor goes (end of stream on the socket) the zygote kills every sandbox
it forked and exits. It is a child subreaper, so processes left by a sandbox are reaped
here too. Stdlib only; the worker and protocol modules are loaded from this folder as
the private package ``_faasbox_runtime``, so no sys.path entry leaks into sandboxes and a
user module named ``worker`` or ``protocol`` cannot collide with them.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
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

    def __init__(self, control: socket.socket, worker: Any, protocol: Any) -> None:
        self.control = control
        self.worker = worker
        self.protocol = protocol
        self.stdlib_path = list(sys.path)
        self.children: dict[int, dict[str, Any]] = {}  # pid -> its spawn parameters
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.supervisor_gone = False

    def send(self, header: dict[str, Any]) -> None:
        try:
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
        while not self.supervisor_gone:
            for fd, _event in poller.poll():
                if fd == self.wake_r:
                    self._drain()
                    self.reap()
                elif not self.handle():
                    self.supervisor_gone = True
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
            data, fds, _flags, _addr = socket.recv_fds(self.control, 1 << 20, 4)
        except ConnectionError:
            return False
        if not data:
            return False
        header, _ = self.protocol.unpack(data)
        if header.get("type") != "spawn" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise self.protocol.ProtocolError(f"unexpected request {header.get('type')!r}")
        fd = fds[0]
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fd)
            self.send({"type": "spawned", "seq": header["seq"], "error": str(exc)})
            return True
        if pid == 0:
            self._child(fd, header["params"])
        os.close(fd)
        self.children[pid] = header["params"]
        self.send({"type": "spawned", "seq": header["seq"], "pid": pid})
        return True

    def _child(self, fd: int, params: dict[str, Any]) -> None:
        """Become a sandbox; never returns."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.control.close()
            self.worker.main(fd, params, self.stdlib_path)
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
            if self.children.pop(pid, None) is not None:
                code = os.waitstatus_to_exitcode(status)
                self.send({"type": "exit", "pid": pid,
                           "code": code if code >= 0 else None,
                           "signal": -code if code < 0 else None})

    def shutdown(self) -> None:
        """Kill every sandbox (its whole process group), reap what is left, and remove
        the folders and cgroups of sandboxes the supervisor could not clean up itself
        (it is gone, or it is closing and they are gone already)."""
        for pid in self.children:
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
            shutil.rmtree(os.path.dirname(params["work_dir"]), ignore_errors=True)
            if params.get("cgroup_join"):
                cgroup = os.path.dirname(params["cgroup_join"])
                for path in (cgroup, os.path.dirname(cgroup)):  # the node's, once empty
                    with contextlib.suppress(OSError):
                        os.rmdir(path)


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[1]))
    worker, protocol = load_runtime()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _become_subreaper()
    Zygote(control, worker, protocol).serve()


if __name__ == "__main__":
    main(sys.argv)
