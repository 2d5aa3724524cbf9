"""The supervisor's handle of one live sandbox, and the port that starts sandboxes.

A :class:`Sandbox` serves one invocation at a time on the calling thread: it writes
the request, waits for the reply until the function's deadline, reads what the sandbox
printed, and turns every way a sandbox can fail into an :class:`Outcome`:

==============================  =======  ==============================================
what happened                   status   error type
==============================  =======  ==============================================
handler raised                  ERROR    the exception's class name
init phase failed               ERROR    Runtime.ImportModuleError, .HandlerNotFound...
result not JSON-serializable    ERROR    Runtime.MarshalError
deadline passed                 TIMEOUT  Sandbox.Timedout
init phase over init_timeout_s  TIMEOUT  Runtime.InitTimeout
killed at its memory limit      OOM      Runtime.OutOfMemory
exited or killed otherwise      CRASH    Runtime.ExitError
==============================  =======  ==============================================

The supervisor enforces the limits from outside: at the deadline it kills the whole
process group. A sandbox that failed in any of the last four ways is never reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faasbox.model import Status
from faasbox.runtime import protocol
from faasbox.runtime.memory import SandboxMemory
from faasbox.runtime.spec import CredentialSource, Outcome, SandboxSpec
from faasbox.runtime.zygote_client import ExitStatus

if TYPE_CHECKING:
    from faasbox.runtime.limits import SandboxLimits

#: How long the exit status of a sandbox that closed its socket is awaited before it is
#: killed (a dead one's arrives within a millisecond), then after the kill.
EXIT_GRACE_S = 0.05
EXIT_WAIT_S = 1.0
#: Output kept per invocation; beyond it the rest is dropped (and said so).
OUTPUT_LIMIT = 4 * 1024 * 1024
#: The output file is emptied between calls once it is this large.
OUTPUT_ROTATE = 64 * 1024 * 1024
_CHUNK = 1 << 16

ExitWaiter = Callable[[int, float], "ExitStatus | None"]
#: Runs a clean-up later, on another thread (the factory's janitor).
Deferrer = Callable[[Callable[[], None]], None]


class InitFailed(Exception):
    """Raised by :meth:`SandboxFactory.start` when the init phase failed. ``outcome`` is
    the invocation's result (the sandbox is already destroyed)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error_message)
        self.outcome = outcome


class Sandbox:
    """One live sandbox: a process group, its socket, its output file, its memory limit.

    Not thread-safe: the node hands it to one caller at a time.
    """

    def __init__(self, *, sandbox_id: str, spec: SandboxSpec, pid: int, sock: socket.socket,
                 output_fd: int, directory: Path, memory: SandboxMemory,
                 wait_exit: ExitWaiter, defer: Deferrer | None = None,
                 limits: SandboxLimits | None = None,
                 credentials: CredentialSource | None = None) -> None:
        self.id = sandbox_id
        self.spec = spec
        self.pid = pid
        self.sock = sock
        self.directory = directory
        self.memory = memory
        #: Its pids and CPU cgroups, at the cgroup isolation level.
        self.limits = limits
        self.invocations = 0
        self.state = "starting"
        self.last_used = time.monotonic()
        #: False once the sandbox failed: it must not serve another call.
        self.healthy = True
        self._wait_exit = wait_exit
        self._defer = defer
        self._reader = protocol.FrameReader(sock)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._output_fd = output_fd
        self._offset = 0
        self._maxrss_kb = 0
        self._init_ms: float | None = None
        self._cpu_start: int | None = None
        self._destroyed = False
        self._arn: tuple[str, bytes] = ("", b"")
        self._credentials = credentials
        self._renew_at = float("inf")
        #: Where the sandbox's init spent its time (``FAASBOX_TRACE``): (step, perf_counter).
        self.trace: list[Any] = []

    def __repr__(self) -> str:
        return f"Sandbox({self.id}, pid={self.pid}, {self.spec.function}, {self.state})"

    def credentials_env(self) -> dict[str, str]:
        """Fresh credentials of the function's role, as variables (none without a
        source). The next renewal is due once less than half their life, or less than
        the function's timeout, is left: a call that starts before it can run to its
        deadline with them (credentials shorter-lived than the timeout are renewed at
        every call, and can still run out during a long one)."""
        if self._credentials is None:
            return {}
        now = time.time()
        env, expires_at = self._credentials(self.spec.role, self.id)
        self._renew_at = expires_at - max((expires_at - now) / 2, self.spec.timeout_s + 1)
        return env

    # -- phases -------------------------------------------------------------------------

    def wait_ready(self, init_timeout_s: float, request_id: str) -> Outcome | None:
        """Wait for the end of the init phase: None when ready, else the failed outcome
        (the sandbox is then unhealthy and must be destroyed)."""
        started = time.monotonic()
        try:
            frame = self._reader.read(started + init_timeout_s)
        except TimeoutError:
            self.kill()
            return self._failure(
                Status.TIMEOUT, "Runtime.InitTimeout", request_id, started,
                f"Init phase timed out after {init_timeout_s:.2f} seconds (init_timeout_s)",
                cold=True)
        except (OSError, protocol.ProtocolError):
            frame = None
        if frame is None:
            return self._died(request_id, started, cold=True)
        header, body = frame
        if header.get("type") == "ready" and header.get("v") == protocol.VERSION:
            self._init_ms = float(header["init_ms"])
            self._maxrss_kb = int(header.get("maxrss_kb", 0))
            self.trace = header.get("trace") or []
            self._reader.arm(self.spec.timeout_s)  # once: every call waits that long
            return None
        if header.get("type") == "init_error":
            self.healthy = False
            self.kill()
            error = _loads(body)
            return self._outcome(Status.ERROR, body, started, cold=True,
                                 error_type=error.get("errorType"),
                                 error_message=error.get("errorMessage"))
        self.kill()
        return self._failure(Status.CRASH, "Runtime.ExitError", request_id, started,
                             f"Runtime sent an unexpected {header.get('type')!r} message",
                             cold=True)

    def invoke(self, event: bytes, *, request_id: str, invoked_function_arn: str) -> Outcome:
        """Run one call. Never raises for anything the sandbox does; see the table above."""
        timeout_s = self.spec.timeout_s
        started = time.monotonic()
        self.invocations += 1
        arn = self._arn
        if arn[0] != invoked_function_arn:
            self._arn = arn = (invoked_function_arn, protocol.quote(invoked_function_arn))
        now = time.time()
        env = self.credentials_env() if now >= self._renew_at else None
        frame = protocol.invoke_frame(request_id, arn[1], int((now + timeout_s) * 1000), event,
                                      env)
        self._cpu_start = self.limits.cpu_ns() if self.limits is not None else None
        try:
            self.sock.sendall(frame)
            reply = self._reader.read(started + timeout_s)
        except (TimeoutError, BlockingIOError):  # BlockingIOError: SO_SNDTIMEO ran out
            self.kill()
            return self._failure(Status.TIMEOUT, "Sandbox.Timedout", request_id, started,
                                 f"Task timed out after {timeout_s:.2f} seconds")
        except (OSError, protocol.ProtocolError):
            reply = None
        if reply is None:
            return self._died(request_id, started)
        header, body = reply
        if header.get("type") != "result":
            self.kill()
            return self._failure(Status.CRASH, "Runtime.ExitError", request_id, started,
                                 f"Runtime sent an unexpected {header.get('type')!r} message")
        maxrss = header.get("maxrss_kb")
        if maxrss:
            self._maxrss_kb = int(maxrss)
        ok = header.get("ok") is True
        return Outcome(
            status=Status.SUCCESS if ok else Status.ERROR,
            payload=body,
            output="" if header.get("out") == self._offset else self._take_output(),
            duration_ms=float(header.get("duration_ms", 0.0)),
            max_memory_used_mb=self.memory.max_used_mb(self._maxrss_kb),
            sandbox_id=self.id,
            sandbox_pid=self.pid,
            init_duration_ms=self._take_init(),
            error_type=None if ok else header.get("error_type"),
            error_message=None if ok else header.get("error_message"),
            cpu_time_ms=self._cpu_ms(),
        )

    def idle_alive(self) -> bool:
        """Whether an idle sandbox can take a call: one ``poll`` that must find its socket
        quiet. An idle sandbox sends nothing, so a readable socket is an end of stream (it
        died: killed from outside, by the RSS watch...) or junk; either way it must not
        serve. Such a sandbox is marked unhealthy."""
        if self._poll.poll(0) or self._reader.pending:
            self.healthy = False
        return self.healthy

    # -- failures -----------------------------------------------------------------------

    def _died(self, request_id: str, started: float, cold: bool = False) -> Outcome:
        """The sandbox closed its socket: learn how it ended, then report it."""
        status = self._wait_exit(self.pid, EXIT_GRACE_S)
        self.kill()  # it may still run (it closed the socket itself): it goes now
        if status is None:
            status = self._wait_exit(self.pid, EXIT_WAIT_S)
        if self.memory.limit_fired():
            how = status.describe() if status else "signal: killed"
            return self._failure(
                Status.OOM, "Runtime.OutOfMemory", request_id, started,
                f"Runtime exited with error: {how} (memory limit of "
                f"{self.spec.memory_mb} MB exceeded: memory_mb)", cold=cold)
        if status is None or (status.code == 0 and status.signal is None):
            message = "Runtime exited without providing a reason"
        else:
            message = f"Runtime exited with error: {status.describe()}"
        return self._failure(Status.CRASH, "Runtime.ExitError", request_id, started, message,
                             cold=cold)

    def _failure(self, status: Status, error_type: str, request_id: str, started: float,
                 message: str, cold: bool = False) -> Outcome:
        # As Lambda words them: timeouts plainly, runtime exits after the request id.
        timed_out = status is Status.TIMEOUT
        text = message if timed_out else f"RequestId: {request_id} Error: {message}"
        payload = json.dumps({"errorMessage": text, "errorType": error_type}).encode()
        return self._outcome(status, payload, started, cold=cold, error_type=error_type,
                             error_message=text)

    def _outcome(self, status: Status, payload: bytes, started: float, *, cold: bool,
                 error_type: str | None, error_message: str | None) -> Outcome:
        self.healthy = False
        elapsed_ms = (time.monotonic() - started) * 1000
        used = self.memory.max_used_mb(self._maxrss_kb)
        if status is Status.OOM:
            used = max(used, self.spec.memory_mb)
        init = elapsed_ms if cold else self._take_init()
        return Outcome(status=status, payload=payload, output=self._take_output(),
                       duration_ms=0.0 if cold else elapsed_ms, max_memory_used_mb=used,
                       sandbox_id=self.id, sandbox_pid=self.pid, init_duration_ms=init,
                       error_type=error_type, error_message=error_message,
                       cpu_time_ms=None if cold else self._cpu_ms())

    # -- helpers ------------------------------------------------------------------------

    def _cpu_ms(self) -> float | None:
        """CPU time since this call began, from the sandbox's cgroup (None below the
        cgroup level)."""
        if self.limits is None or self._cpu_start is None:
            return None
        now = self.limits.cpu_ns()
        return None if now is None else max(0, now - self._cpu_start) / 1e6

    def take_init(self) -> float | None:
        """The init duration not reported yet (ms), now taken: a sandbox started ahead
        of need takes it, so that its first call does not report a cold start."""
        return self._take_init()

    def _take_init(self) -> float | None:
        init, self._init_ms = self._init_ms, None
        return init

    def _take_output(self) -> str:
        """What the sandbox printed since the last call (one pread when nothing was)."""
        fd, chunks, size = self._output_fd, [], 0
        while size < OUTPUT_LIMIT:
            chunk = os.pread(fd, _CHUNK, self._offset)
            chunks.append(chunk)
            size += len(chunk)
            self._offset += len(chunk)
            if len(chunk) < _CHUNK:
                break
        text = b"".join(chunks).decode("utf-8", "replace")
        if size >= OUTPUT_LIMIT:
            end = os.fstat(fd).st_size
            if end > self._offset:
                text += f"\n[faasbox: {end - self._offset} more bytes of output dropped]\n"
                self._offset = end
        if self._offset >= OUTPUT_ROTATE and self.healthy:
            os.ftruncate(fd, 0)  # the sandbox appends, so it writes at the new end
            self._offset = 0
        return text

    # -- end of life --------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the sandbox's process group (and whatever else its cgroup holds)."""
        self.healthy = False
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        self.memory.kill_all()

    def destroy(self, reason: str, *, wait: bool = True) -> None:
        """Kill the sandbox and remove its socket, files and cgroup. Idempotent.

        With ``wait=False`` only the process group is killed now; the rest is left to the
        factory's janitor thread (when it has one), off the caller's path.

        Only the thread that holds the sandbox (or nobody, when idle) may call this;
        another thread may only :meth:`kill` it.
        """
        if self._destroyed:
            return
        self._destroyed = True
        self.state = f"destroyed: {reason}"
        self.healthy = False
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        if not wait and self._defer is not None:
            self._defer(self._clean_up)
        else:
            self._clean_up()

    def _clean_up(self) -> None:
        self.memory.kill_all()  # what left the process group (a setsid in user code)
        self.sock.close()
        os.close(self._output_fd)
        self.memory.release()
        if self.limits is not None:
            self.limits.release()
        shutil.rmtree(self.directory, ignore_errors=True)


def _loads(body: bytes) -> dict[str, str]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class SandboxFactory(ABC):
    """Port: starts sandboxes at one isolation level.

    ``isolation`` names the level (``process`` now; ``namespace`` or ``cgroup`` later)
    and ``memory_enforcement`` how memory_mb is enforced. Implementations are
    thread-safe: many callers start sandboxes at once.
    """

    isolation: str
    memory_enforcement: str

    @abstractmethod
    def start(self, spec: SandboxSpec, *, request_id: str) -> Sandbox:
        """Start a sandbox for ``spec`` and run its init phase; the factory names it.

        Returns the ready sandbox (its first :meth:`Sandbox.invoke` reports the Init
        Duration). Raises :class:`InitFailed` with the call's outcome when the init phase
        failed (import error, init timeout, crash; nothing is left behind), and
        :class:`faasbox.errors.FaasboxError` when no sandbox could be started at all.
        """

    @property
    def zygote_pid(self) -> int | None:
        """Pid of the fork server, when there is one running."""
        return None

    def warm_up(self) -> None:  # noqa: B027 - a hook: factories with nothing to warm keep it
        """Prepare, ahead of the first :meth:`start`, what every cold start needs (a
        fork server, say). Optional: starts work without it, only slower."""

    @abstractmethod
    def sweep(self) -> None:
        """Periodic housekeeping (the node's reaper calls it); cheap when idle."""

    @abstractmethod
    def close(self) -> None:
        """Stop starting sandboxes and kill every process the factory started.
        Idempotent."""
