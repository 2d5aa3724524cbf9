"""Sandboxes isolated as processes: forked by the zygote, own session and process group,
rlimits, private working dir and ``TMPDIR`` (not ``/tmp``), a memory limit (cgroup or RSS watch).

A cold start is kept short by doing ahead of need whatever does not depend on the
function: the zygote keeps a forked *spare* waiting (see :mod:`zygote`), and a janitor
thread here keeps :data:`SLOTS` *slots* ready (a sandbox's folder, output file and memory
cgroup, made with the last memory size asked for) and removes what destroyed sandboxes
leave behind, shortly after, so that neither competes with the cold start that usually
follows a retirement. What remains on the path is the function's own work: its
environment, joining its cgroup, importing the handler.

``FAASBOX_TRACE=1`` prints where each cold start spent its time to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faasbox.config import Settings
from faasbox.errors import FaasboxError
from faasbox.layout import Layout
from faasbox.runtime import isolation, protocol
from faasbox.runtime.limits import LimitsEnforcer, SandboxLimits
from faasbox.runtime.memory import MemoryEnforcer, SandboxMemory
from faasbox.runtime.sandbox import InitFailed, Sandbox, SandboxFactory
from faasbox.runtime.spec import CredentialSource, SandboxSpec
from faasbox.runtime.zygote_client import Spare, ZygoteClient

RUNTIME_DIR = Path(__file__).resolve().parent
SPAWN_TIMEOUT_S = 10.0
#: Slots kept ready.
SLOTS = 2
#: Slots are made again this long after one was taken, and destroyed sandboxes cleaned
#: up this long after they were killed: by then the cold start that took the slot, or
#: that followed the retirement, is over. Neither happens while a sandbox starts.
SLOT_DELAY_S = 0.005
CLEAN_UP_DELAY_S = 0.05
#: ... unless sandboxes keep starting for longer than this.
MAX_HOLD_S = 0.5
#: Memory size of the first slots, before any sandbox asked for one.
DEFAULT_SLOT_MB = 128
TRACE = os.environ.get("FAASBOX_TRACE", "") not in ("", "0")


#: What every namespace sandbox sees of the host, read-only, at the same paths: the
#: system's programs and libraries, and the few files of /etc that name lookups,
#: TLS and time zones read (not /etc as a whole: it holds the host's secrets).
SYSTEM_BINDS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
ETC_BINDS = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/passwd",
             "/etc/group", "/etc/localtime", "/etc/ssl", "/etc/ca-certificates",
             "/etc/pki")


def namespace_stage(settings: Settings, layout: Layout) -> dict[str, Any]:
    """What every spare prepares ahead of need at the namespace level (see
    :func:`isolation.prepare`): its root is built on ``<home>/sandboxes/.stage``, an
    empty folder (each spare mounts over it in its own mount namespace), with the
    system, the interpreter (its prefix holds the standard library), the runtime and
    the faasbox package that handlers import, all read-only."""
    binds = [(path, path, False) for path in (*SYSTEM_BINDS, *ETC_BINDS)]
    prefix = os.path.realpath(sys.base_prefix)
    binds.append((prefix, prefix, False))
    binds.append((str(RUNTIME_DIR), str(RUNTIME_DIR), False))
    package = layout.runtime_lib / "faasbox"
    binds.append((os.path.realpath(package), str(package), False))
    stage = layout.sandboxes / ".stage"
    stage.mkdir(parents=True, exist_ok=True)
    return {"root": str(stage.resolve()), "binds": binds, "tmp_mb": settings.sandbox_tmp_mb}


def namespace_binds(spec: SandboxSpec, work_dir: Path) -> list[tuple[str, str, bool]]:
    """``(host path, path inside, writable)`` a namespace sandbox of ``spec`` adds at
    init: the function's code and layer (read-only) and its own working folder
    (read-write). Nothing else of the home."""
    binds = [(str(spec.code_dir), str(spec.code_dir), False)]
    if spec.layer_dir:
        binds.append((str(spec.layer_dir), str(spec.layer_dir), False))
    binds.append((str(work_dir), str(work_dir), True))
    return binds


def sandbox_environment(settings: Settings, spec: SandboxSpec, sandbox_id: str,
                        tmp: Path, isolation: str = "process") -> dict[str, str]:
    """The whole environment of a sandbox: defaults the user may override, the user's
    variables, then the variables Lambda reserves."""
    now = time.gmtime()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "TMP": str(tmp),
        "TEMP": str(tmp),
    }
    env.update(spec.environment)
    env.update({
        "_HANDLER": spec.handler,
        "AWS_EXECUTION_ENV": f"faasbox_python{sys.version_info[0]}.{sys.version_info[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": spec.function,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": (f"{now.tm_year:04d}/{now.tm_mon:02d}/{now.tm_mday:02d}"
                                       f"/[{spec.version}]{sandbox_id}"),
        "AWS_REGION": "local",
        "AWS_DEFAULT_REGION": "local",
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "LAMBDA_RUNTIME_DIR": str(RUNTIME_DIR),
        "FAASBOX_ENDPOINT": settings.endpoint,
        # Where faasbox.handlers.objects() finds this platform's object store.
        "FAASBOX_OBJECT_STORE": settings.object_store,
        "FAASBOX_ISOLATION": isolation,
    })
    if settings.object_store == "folder":
        if isolation == "process":  # a namespace sandbox cannot see the home's folders
            env["FAASBOX_OBJECTS_DIR"] = str(settings.objects_path.resolve())
    else:
        env["FAASBOX_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
        env["FAASBOX_S3_REGION"] = settings.s3_region
        env["FAASBOX_S3_BUCKET_PREFIX"] = settings.s3_bucket_prefix
    return env


@dataclass
class Slot:
    """What a sandbox needs on this side, made ahead of need."""

    sandbox_id: str
    directory: Path
    output_fd: int
    memory: SandboxMemory
    limits: SandboxLimits | None = None  # the cgroup level's pids and CPU cgroups

    def release(self) -> None:
        os.close(self.output_fd)
        self.memory.release()
        if self.limits is not None:
            self.limits.release()
        shutil.rmtree(self.directory, ignore_errors=True)


class Janitor:
    """One thread that keeps ``target`` slots ready and runs deferred clean-ups, each a
    little after it was asked for, and only while no sandbox is starting
    (:meth:`starting`)."""

    def __init__(self, make_slot: Callable[[], Slot], target: int = SLOTS,
                 slot_delay_s: float = SLOT_DELAY_S,
                 clean_up_delay_s: float = CLEAN_UP_DELAY_S) -> None:
        self._make_slot = make_slot
        self._target = target
        self._slot_delay_s = slot_delay_s
        self._clean_up_delay_s = clean_up_delay_s
        self._starting = 0
        self._cond = threading.Condition()
        self._ready: deque[Slot] = deque()
        self._tasks: deque[tuple[float, Callable[[], None]]] = deque()  # in time order
        self._refill_at: float | None = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False

    def take(self) -> Slot | None:
        """A ready slot (the caller's from now on), or None when there is none."""
        with self._cond:
            self._ensure_thread()
            slot = self._ready.popleft() if self._ready else None
            if self._refill_at is None:
                self._refill_at = time.monotonic() + self._slot_delay_s
                self._cond.notify()
            return slot

    def prepare(self) -> None:
        """Make the ready slots now (from the janitor's thread), before any is taken."""
        with self._cond:
            self._ensure_thread()
            self._cond.notify()

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Hold the janitor's work while the block runs (a cold start)."""
        with self._cond:
            self._starting += 1
        try:
            yield
        finally:
            with self._cond:
                self._starting -= 1
                if not self._starting:
                    self._cond.notify()

    def defer(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the janitor thread, a little later; at once when closed."""
        with self._cond:
            if not self._closed:
                self._ensure_thread()
                self._tasks.append((time.monotonic() + self._clean_up_delay_s, task))
                self._cond.notify()
                return
        _run(task)

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._loop, name="faasbox-janitor",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        held_since: float | None = None
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    if not self._starting:
                        held_since = None
                    elif held_since is None or now - held_since < MAX_HOLD_S:
                        held_since = now if held_since is None else held_since
                        self._cond.wait(MAX_HOLD_S - (now - held_since))
                        continue
                    due = []
                    while self._tasks and self._tasks[0][0] <= now:
                        due.append(self._tasks.popleft()[1])
                    refill = self._refill_at is not None and self._refill_at <= now
                    if due or refill:
                        break
                    wake = [t for t in (self._refill_at,
                                        self._tasks[0][0] if self._tasks else None)
                            if t is not None]
                    self._cond.wait(min(wake) - now if wake else None)
            for task in due:
                _run(task)
            if refill:
                self._refill()
            held_since = None

    def _refill(self) -> None:
        while True:
            with self._cond:
                if self._closed or len(self._ready) >= self._target:
                    self._refill_at = None
                    return
            try:
                slot = self._make_slot()
            except (OSError, FaasboxError):
                with self._cond:  # try again later; a caller makes its own meanwhile
                    self._refill_at = time.monotonic() + 1.0
                return
            with self._cond:
                if not self._closed:
                    self._ready.append(slot)
                    continue
            slot.release()
            return

    def close(self) -> None:
        """Stop the thread, run every clean-up still waiting and release the slots."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            tasks = [task for _when, task in self._tasks]
            slots = list(self._ready)
            self._tasks.clear()
            self._ready.clear()
        for task in tasks:
            _run(task)
        for slot in slots:
            slot.release()


def _run(task: Callable[[], None]) -> None:
    try:
        task()
    except Exception as exc:  # a clean-up must not kill the janitor
        sys.stderr.write(f"faasbox: clean-up failed: {exc!r}\n")


class ProcessSandboxFactory(SandboxFactory):
    """Forks sandboxes from one zygote, restarted on the next use after it died.
    ``isolation`` is ``process``, ``namespace`` (each sandbox then builds its own
    namespaces and root: :mod:`isolation`) or ``cgroup`` (``namespace`` plus the pids and
    CPU cgroups ``limits`` makes: :mod:`limits`)."""

    def __init__(self, settings: Settings, layout: Layout, memory: MemoryEnforcer,
                 isolation: str = "process", limits: LimitsEnforcer | None = None,
                 credentials: CredentialSource | None = None) -> None:
        if isolation not in ("process", "namespace", "cgroup"):
            raise FaasboxError(f"unknown isolation level {isolation!r}")
        if (isolation == "cgroup") != (limits is not None):
            raise FaasboxError("the cgroup level needs its limits, and only it has them")
        self.isolation = isolation
        #: Whether sandboxes build namespaces and a root of their own.
        self.namespaced = isolation in ("namespace", "cgroup")
        self.limits = limits
        self.credentials = credentials
        self.settings = settings
        self.layout = layout
        self.memory = memory
        self.memory_enforcement = memory.name
        self._zygote: ZygoteClient | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._slot_mb = DEFAULT_SLOT_MB
        self.janitor = Janitor(self._make_slot)

    @property
    def zygote_pid(self) -> int | None:
        zygote = self._zygote
        return zygote.pid if zygote is not None and zygote.alive else None

    def zygote(self) -> ZygoteClient:
        """The running zygote, started (again) when there is none."""
        with self._lock:
            if self._closed:
                raise FaasboxError("the node is closed")
            zygote = self._zygote
            if zygote is not None and zygote.running:
                return zygote
            if zygote is not None:
                zygote.close()
            stage = namespace_stage(self.settings, self.layout) if self.namespaced else None
            parents = [self.memory.parent_dir] if self.memory.parent_dir else []
            if self.limits is not None:
                parents += sorted({str(p) for p in self.limits.parents.values()} - {*parents})
            self._zygote = ZygoteClient(cgroup_parents=parents, namespace=stage).start()
            return self._zygote

    def warm_up(self) -> None:
        """Start the zygote (it forks its spares) and have the slots made: the first
        cold start then finds both ready instead of starting an interpreter."""
        self.janitor.prepare()
        self.zygote()

    def start(self, spec: SandboxSpec, *, request_id: str) -> Sandbox:
        with self.janitor.starting():
            return self._start(spec, request_id)

    def _start(self, spec: SandboxSpec, request_id: str) -> Sandbox:
        if spec.network != "host" and not self.namespaced:
            raise FaasboxError(
                f"function {spec.function} asks for network {spec.network}, which needs "
                f"the namespace or cgroup isolation level (FAASBOX_ISOLATION); this node "
                f"runs at {self.isolation}")
        marks = [("start", time.perf_counter())] if TRACE else None
        self._slot_mb = spec.memory_mb
        slot = self.janitor.take() or self._make_slot()
        try:
            slot.memory.resize(spec.memory_mb)
            if slot.limits is not None:
                slot.limits.resize(spec.memory_mb)
            spare, zygote = self._spare()
        except BaseException:
            slot.release()
            raise
        if marks is not None:
            marks.append(("slot and spare taken", time.perf_counter()))
        sandbox_id, directory, memory = slot.sandbox_id, slot.directory, slot.memory
        work = directory / "work"
        memory.attach(spare.pid)
        sandbox = Sandbox(sandbox_id=sandbox_id, spec=spec, pid=spare.pid, sock=spare.sock,
                          output_fd=slot.output_fd, directory=directory, memory=memory,
                          wait_exit=zygote.wait_exit, defer=self.janitor.defer,
                          limits=slot.limits, credentials=self.credentials)
        try:
            params = self._params(spec, sandbox_id, directory, memory, trace=marks is not None)
            params["env"].update(sandbox.credentials_env())
            if slot.limits is not None:
                params["cgroup_join_more"] = slot.limits.join_paths
            with contextlib.suppress(OSError):  # a spare that died: wait_ready tells
                spare.sock.sendall(protocol.pack({"type": "init"}, json.dumps(params).encode()))
            if marks is not None:
                marks.append(("init frame sent", time.perf_counter()))
            # Only now: the zygote, woken by this, would otherwise hold up the lines above.
            zygote.claim(spare, str(work))
            failure = sandbox.wait_ready(self.settings.init_timeout_s, request_id)
        except BaseException:
            sandbox.destroy("init interrupted")
            raise
        if marks is not None:
            _trace(spec, marks + [tuple(m) for m in sandbox.trace])
        if failure is not None:
            sandbox.destroy("init failed")
            raise InitFailed(failure)
        return sandbox

    def _make_slot(self) -> Slot:
        sandbox_id = secrets.token_hex(6)
        directory = self.layout.sandbox(sandbox_id)
        (directory / "tmp").mkdir(parents=True)
        (directory / "work").mkdir()
        if self.namespaced:
            # the sandbox's root is an unprivileged host user: its working folder is its own
            os.chown(directory / "work", *isolation.host_ids())
        output_fd = -1
        memory: SandboxMemory | None = None
        try:
            output_fd = os.open(directory / "output", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                0o600)
            memory = self.memory.prepare(sandbox_id, self._slot_mb)
            limits = (self.limits.prepare(sandbox_id, self._slot_mb)
                      if self.limits is not None else None)
        except BaseException:
            if output_fd >= 0:
                os.close(output_fd)
            if memory is not None:
                memory.release()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return Slot(sandbox_id, directory, output_fd, memory, limits)

    def _spare(self) -> tuple[Spare, ZygoteClient]:
        """A spare from the zygote; a zygote found dead is restarted once."""
        for attempt in (1, 2):
            zygote = self.zygote()
            try:
                return zygote.take_spare(SPAWN_TIMEOUT_S), zygote
            except FaasboxError:
                if attempt == 2 or zygote.running:
                    raise
        raise AssertionError("unreachable")

    def _params(self, spec: SandboxSpec, sandbox_id: str, directory: Path,
                memory: SandboxMemory, *, trace: bool = False) -> dict[str, Any]:
        namespace = self.namespaced
        env = sandbox_environment(self.settings, spec, sandbox_id,
                                  Path("/tmp") if namespace else directory / "tmp",
                                  self.isolation)
        params: dict[str, Any] = {
            "sandbox_id": sandbox_id,
            "handler": spec.handler,
            "code_dir": str(spec.code_dir),
            "layer_dir": str(spec.layer_dir) if spec.layer_dir else None,
            "lib_dir": str(self.layout.runtime_lib),
            "work_dir": str(directory / "work"),
            "output": str(directory / "output"),
            "cgroup_join": memory.join_path,
            "report_rss": not memory.measures_peak,
            "env": env,
            "max_open_files": self.settings.max_open_files,
            "max_processes": self.settings.max_processes,
            "function_name": spec.function,
            "function_version": spec.version,
            "memory_mb": spec.memory_mb,
            "log_group_name": env["AWS_LAMBDA_LOG_GROUP_NAME"],
            "log_stream_name": env["AWS_LAMBDA_LOG_STREAM_NAME"],
            "trace": trace,
        }
        if namespace:
            params["namespace"] = {
                "binds": namespace_binds(spec, directory / "work"),
                "network": spec.network,
                "hostname": "faasbox",
            }
        return params

    def sweep(self) -> None:
        self.memory.sweep()
        if self.limits is not None:
            self.limits.sweep()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            zygote, self._zygote = self._zygote, None
        self.janitor.close()
        if zygote is not None:
            zygote.close()
        with contextlib.suppress(OSError):
            self.memory.close()
        if self.limits is not None:
            with contextlib.suppress(OSError):
                self.limits.close()


def _trace(spec: SandboxSpec, marks: list[Any]) -> None:
    """One line per cold start: milliseconds since the start of each step."""
    marks.sort(key=lambda mark: mark[1])
    start = marks[0][1]
    steps = ", ".join(f"{name} +{(at - start) * 1000:.2f}" for name, at in marks[1:])
    sys.stderr.write(f"faasbox trace: cold start of {spec.function}: {steps} ms\n")
