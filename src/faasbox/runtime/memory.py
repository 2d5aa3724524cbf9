"""Memory limits of sandboxes: a cgroup per sandbox where cgroups are writable, else an
RSS watch. The supervisor enforces them from outside the sandbox; RLIMIT_AS is not used
(it breaks allocators that reserve address space and is not what Lambda measures).

- ``cgroup-v1``: a ``faasbox-<node>`` cgroup under the memory cgroup of this process (or
  under ``settings.cgroup_root``) and one child per sandbox with
  ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``, so swap is no escape).
  The kernel kills the sandbox with SIGKILL at the limit; ``memory.oom_control``
  (``oom_kill``) or ``memory.failcnt`` tell afterwards that the limit fired. Max Memory
  Used is ``memory.max_usage_in_bytes``.
- ``cgroup-v2``: the same with ``memory.max``, ``memory.swap.max``, ``memory.events``
  and ``memory.peak``, where the memory controller is delegated to this process.
- ``rss-watch``: one thread measures every live sandbox every 50 ms and kills one over
  its limit (its process group and every process counted). A sandbox's memory is the
  resident set of its main process (``/proc/<pid>/statm``) plus the private memory
  (``smaps_rollup``: pages not shared, so pages a forked child still shares with its
  parent count once) of every process below it: its descendants, read from
  ``/proc/<pid>/task/*/children`` where the kernel has it, else every process of its
  session (one scan of ``/proc`` per pass for all sandboxes). A process that both
  leaves the session (``setsid``) and is reparented (double fork) escapes the watch;
  the cgroup modes have no such gap. Max Memory Used is the sandbox's own
  ``ru_maxrss``, or the largest sum measured when that is larger.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from faasbox.config import MB, Settings
from faasbox.errors import FaasboxError

MODES = ("auto", "cgroup", "cgroup-v1", "cgroup-v2", "rss-watch")
RSS_WATCH_INTERVAL_S = 0.05


class CgroupUnavailable(Exception):
    """Raised when no writable cgroup memory controller can be used; says why."""


class SandboxMemory(ABC):
    """The memory limit of one sandbox."""

    #: File the sandbox writes "0" (itself) to, first thing after the fork; None if none.
    join_path: str | None = None
    #: True when Max Memory Used is measured here, so the sandbox's ``ru_maxrss`` is not
    #: needed (the sandbox then skips a getrusage call per invocation).
    measures_peak = False

    @abstractmethod
    def resize(self, memory_mb: int) -> None:
        """Change the limit (before the sandbox joins: limits are made ahead of need)."""

    @abstractmethod
    def attach(self, pid: int) -> None:
        """Start enforcing on the sandbox process ``pid`` (just forked)."""

    @abstractmethod
    def max_used_mb(self, maxrss_kb: int) -> int:
        """Max Memory Used so far in MB (at least 1); ``maxrss_kb`` is the sandbox's own
        ``ru_maxrss``, used where the enforcer measures nothing better."""

    @abstractmethod
    def limit_fired(self) -> bool:
        """True when the memory limit killed (or is killing) the sandbox."""

    @abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process charged to this limit (also ones that left the group)."""

    @abstractmethod
    def release(self) -> None:
        """Stop enforcing and free what was created; idempotent."""


class MemoryEnforcer(ABC):
    """Creates the memory limit of each sandbox of one node."""

    name: str
    reason: str
    #: The folder of this node's cgroup, whose ``sandbox-*`` children the zygote removes
    #: should the supervisor vanish (None without cgroups).
    parent_dir: str | None = None

    @abstractmethod
    def prepare(self, sandbox_id: str, memory_mb: int) -> SandboxMemory:
        """The limit for a sandbox about to start. Raises :class:`FaasboxError`."""

    @abstractmethod
    def sweep(self) -> None:
        """Retry removing what could not be removed yet (cgroups still emptying)."""

    @abstractmethod
    def close(self) -> None:
        """Release everything; idempotent."""


def _mb(nbytes: int) -> int:
    return max(1, -(-nbytes // MB))


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _read_key(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed cgroup file (``oom_kill 1``)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class _Cgroups:
    """The cgroup files of one version (v1 or v2)."""

    def __init__(self, version: int) -> None:
        self.version = version
        v1 = version == 1
        self.limit = "memory.limit_in_bytes" if v1 else "memory.max"
        self.swap = "memory.memsw.limit_in_bytes" if v1 else "memory.swap.max"
        self.peak = "memory.max_usage_in_bytes" if v1 else "memory.peak"
        self.events = "memory.oom_control" if v1 else "memory.events"
        # v1: writing "0" to ``tasks`` moves the calling thread without taking the
        # global threadgroup lock, whose first use after a pause waits for an RCU grace
        # period (8-30 ms measured); the sandbox is single-threaded when it joins.
        self.join = "tasks" if v1 else "cgroup.procs"


class CgroupMemory(SandboxMemory):
    """One sandbox's memory cgroup."""

    def __init__(self, enforcer: CgroupEnforcer, path: Path, memory_mb: int) -> None:
        files = enforcer.files
        self.enforcer = enforcer
        self.path = path
        self.memory_mb = memory_mb
        path.mkdir()
        try:
            limit = str(memory_mb * MB)
            (path / files.limit).write_text(limit)
            swap: Path | None = path / files.swap
            if swap is not None and swap.exists():
                swap.write_text(limit if files.version == 1 else "0")
            else:
                swap = None
            #: v1's memory+swap limit, kept equal to the memory limit (no swap escape).
            self._swap = swap if files.version == 1 else None
            self.join_path = str(path / files.join)
            try:
                self._peak_fd: int | None = os.open(path / files.peak, os.O_RDONLY)
            except OSError:
                self._peak_fd = None  # cgroup v2 before Linux 5.19 has no memory.peak
            self.measures_peak = self._peak_fd is not None
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise

    def resize(self, memory_mb: int) -> None:
        if memory_mb == self.memory_mb:
            return
        limit = str(memory_mb * MB)
        files = [self.path / self.enforcer.files.limit]
        if self._swap is not None:  # v1 wants memory.limit <= memsw.limit at every step
            files.insert(0 if memory_mb > self.memory_mb else 1, self._swap)
        try:
            for path in files:
                path.write_text(limit)
        except OSError as exc:
            raise FaasboxError(f"cannot set the memory limit of {self.path}: {exc}") from exc
        self.memory_mb = memory_mb

    def attach(self, pid: int) -> None:
        """Nothing to do: the sandbox joins its cgroup itself, before it allocates."""

    def max_used_mb(self, maxrss_kb: int) -> int:
        if self._peak_fd is None:
            return _mb(maxrss_kb * 1024)
        try:
            return _mb(int(os.pread(self._peak_fd, 32, 0)))
        except (OSError, ValueError):
            return _mb(maxrss_kb * 1024)

    def limit_fired(self) -> bool:
        files = self.enforcer.files
        kills = _read_key(self.path / files.events, "oom_kill")
        if kills is not None:
            return kills > 0
        return _read_int(self.path / "memory.failcnt") > 0  # kernels before 4.13

    def kill_all(self) -> None:
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)

    def release(self) -> None:
        if self._peak_fd is not None:
            os.close(self._peak_fd)
            self._peak_fd = None
        self.enforcer.remove(self.path)


class CgroupRemover:
    """Removes sandbox cgroups: now, or on a later :meth:`sweep` when one still holds a
    process that is on its way out (rmdir answers EBUSY until the kernel let it go)."""

    def __init__(self) -> None:
        self._pending: list[Path] = []
        self._lock = threading.Lock()

    def remove(self, path: Path) -> None:
        """rmdir a sandbox cgroup now, or later once its last process has gone."""
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno == errno.EBUSY:  # other errors cannot get better by waiting
                with self._lock:
                    self._pending.append(path)

    def sweep(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for path in pending:
            self.remove(path)

    def pending(self) -> list[Path]:
        with self._lock:
            return list(self._pending)


class CgroupEnforcer(MemoryEnforcer):
    """A parent cgroup per node and a child per sandbox."""

    def __init__(self, parent: Path, files: _Cgroups, reason: str) -> None:
        self.parent = parent
        self.parent_dir = str(parent)
        self.files = files
        self.name = f"cgroup-v{files.version}"
        self.reason = reason
        self._remover = CgroupRemover()

    @classmethod
    def create(cls, settings: Settings, node_id: str, version: int | None = None
               ) -> CgroupEnforcer:
        """Make ``faasbox-<node_id>`` and check a sandbox cgroup can be made in it.

        Raises :class:`CgroupUnavailable` with the reason when it cannot.
        """
        reasons = []
        for v in (1, 2) if version is None else (version,):
            try:
                base = Path(settings.cgroup_root) if settings.cgroup_root else _own_cgroup(v)
                files = _Cgroups(v)
                if not (base / files.limit).exists() and not (base / "cgroup.procs").exists():
                    raise CgroupUnavailable(f"{base} is not a cgroup")
                if v == 2:
                    _delegate_memory(base)
                parent = base / f"faasbox-{node_id}"
                parent.mkdir(exist_ok=True)
                enforcer = cls(parent, files, f"writable memory cgroup (v{v}) at {base}")
                try:
                    if v == 2:
                        _delegate_memory(parent)
                    enforcer.prepare("probe", 128).release()
                except (OSError, FaasboxError, CgroupUnavailable) as exc:
                    enforcer.close()
                    raise CgroupUnavailable(f"cannot create a limited cgroup in {parent}: "
                                            f"{exc}") from exc
                return enforcer
            except (OSError, CgroupUnavailable) as exc:
                reasons.append(f"cgroup v{v}: {exc}")
        raise CgroupUnavailable("; ".join(reasons))

    def prepare(self, sandbox_id: str, memory_mb: int) -> SandboxMemory:
        try:
            return CgroupMemory(self, self.parent / f"sandbox-{sandbox_id}", memory_mb)
        except OSError as exc:
            raise FaasboxError(f"cannot create the memory cgroup of sandbox {sandbox_id}: "
                               f"{exc}") from exc

    def remove(self, path: Path) -> None:
        """rmdir a sandbox cgroup now, or later once its last process has gone."""
        self._remover.remove(path)

    def sweep(self) -> None:
        self._remover.sweep()

    def close(self) -> None:
        self.sweep()
        for child in self.parent.glob("sandbox-*"):
            self.remove(child)
        for path in self._remover.pending():
            for pid in _read_text(path / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.parent.rmdir()  # fails while a child remains; sweep() is retried


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _own_cgroup(version: int, controller: str = "memory") -> Path:
    """Folder of this process's cgroup of ``controller`` (v1) or unified cgroup (v2)."""
    mount = root = None
    for line in _read_text(Path("/proc/self/mountinfo")).splitlines():
        left, _, right = line.partition(" - ")
        fields, rights = left.split(), right.split()
        if len(fields) < 5 or len(rights) < 3:
            continue
        v1 = rights[0] == "cgroup" and controller in rights[2].split(",")
        v2 = rights[0] == "cgroup2" and mount is None
        if (version == 1 and v1) or (version == 2 and v2):
            root, mount = fields[3], fields[4]
    if mount is None or root is None:
        raise CgroupUnavailable(f"no {controller} controller mounted" if version == 1 else
                                "no cgroup2 hierarchy mounted")
    for line in _read_text(Path("/proc/self/cgroup")).splitlines():
        _hid, controllers, path = line.split(":", 2)
        if (version == 1 and controller in controllers.split(",")) or (
                version == 2 and controllers == ""):
            rel = os.path.relpath(path, root) if path.startswith(root) else path
            return Path(os.path.normpath(os.path.join(mount, rel.lstrip("/"))))
    raise CgroupUnavailable(f"this process is in no {controller} cgroup")


def _delegate_memory(path: Path) -> None:
    """Enable the v2 memory controller for the children of ``path``."""
    delegate(path, ("memory",))


def delegate(path: Path, controllers: tuple[str, ...]) -> None:
    """Enable v2 ``controllers`` for the children of ``path``; CgroupUnavailable saying
    which one cannot be."""
    available = _read_text(path / "cgroup.controllers").split()
    enabled = _read_text(path / "cgroup.subtree_control").split()
    for controller in controllers:
        if controller not in available:
            raise CgroupUnavailable(f"the {controller} controller is not enabled in {path}")
        if controller in enabled:
            continue
        try:
            (path / "cgroup.subtree_control").write_text(f"+{controller}")
        except OSError as exc:
            raise CgroupUnavailable(f"cannot enable the {controller} controller below {path} "
                                    f"({exc}); set cgroup_root to a delegated cgroup") from exc


class RssMemory(SandboxMemory):
    """One sandbox watched by :class:`RssWatch`."""

    def __init__(self, watch: RssWatch, memory_mb: int) -> None:
        self.watch = watch
        self.limit_bytes = memory_mb * MB
        self.pid = 0
        self.fired = False
        #: The largest memory measured by the watch (child processes included).
        self.peak_bytes = 0

    def resize(self, memory_mb: int) -> None:
        self.limit_bytes = memory_mb * MB

    def attach(self, pid: int) -> None:
        self.pid = pid
        self.watch.add(self)

    def max_used_mb(self, maxrss_kb: int) -> int:
        return _mb(max(maxrss_kb * 1024, self.peak_bytes))

    def limit_fired(self) -> bool:
        return self.fired

    def kill_all(self) -> None:
        """Nothing beyond the process group, which the sandbox's owner kills."""

    def release(self) -> None:
        self.watch.discard(self)


class RssWatch(MemoryEnforcer):
    """A thread that kills sandboxes whose resident memory passes their limit."""

    name = "rss-watch"

    def __init__(self, reason: str, interval_s: float = RSS_WATCH_INTERVAL_S) -> None:
        self.reason = reason
        self.interval_s = interval_s
        self._watched: set[RssMemory] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._page = os.sysconf("SC_PAGE_SIZE")

    def prepare(self, sandbox_id: str, memory_mb: int) -> SandboxMemory:
        return RssMemory(self, memory_mb)

    def add(self, memory: RssMemory) -> None:
        with self._lock:
            self._watched.add(memory)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="faasbox-rss-watch",
                                                daemon=True)
                self._thread.start()

    def discard(self, memory: RssMemory) -> None:
        with self._lock:
            self._watched.discard(memory)

    def check(self) -> None:
        """One pass over the watched sandboxes."""
        with self._lock:
            watched = list(self._watched)
        if not watched:
            return
        sessions = None if _HAS_CHILDREN else _sessions({m.pid for m in watched})
        for memory in watched:
            pid = memory.pid
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    used = int(f.read().split()[1]) * self._page
            except (OSError, ValueError, IndexError):
                continue
            others = _descendants(pid) if sessions is None else sessions.get(pid, [])
            for other in others:
                used += self._private(other)
            if used > memory.peak_bytes:
                memory.peak_bytes = used
            if used > memory.limit_bytes and not memory.fired:
                memory.fired = True
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                for other in others:  # also those that left the process group
                    with contextlib.suppress(OSError):
                        os.kill(other, signal.SIGKILL)

    def _private(self, pid: int) -> int:
        """Bytes of memory only ``pid`` maps (0 once it is gone)."""
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return 0
        except OSError:
            text = b""
        total, found = 0, False
        for line in text.splitlines():
            if line.startswith(b"Private_"):
                found = True
                total += int(line.split()[1]) * 1024
        if found:
            return total
        try:  # no smaps_rollup (before Linux 4.14): resident minus file-backed
            with open(f"/proc/{pid}/statm", "rb") as f:
                fields = f.read().split()
            return max(0, int(fields[1]) - int(fields[2])) * self._page
        except (OSError, ValueError, IndexError):
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def sweep(self) -> None:
        """Nothing is left behind by an RSS watch."""

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _has_children_files() -> bool:
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


#: Whether the kernel lists each task's children (CONFIG_PROC_CHILDREN).
_HAS_CHILDREN = _has_children_files()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc/<pid>/task/*/children``."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as f:
                    children = [int(child) for child in f.read().split()]
            except (OSError, ValueError):
                continue
            found += children
            todo += children
    return found


def _sessions(leaders: set[int]) -> dict[int, list[int]]:
    """The other processes of each session led by one of ``leaders`` (one scan of
    ``/proc``; zombies left out)."""
    members: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            session = int(fields[3])
        except (OSError, ValueError, IndexError):
            continue
        pid = int(name)
        if session in leaders and pid != session and fields[0] != b"Z":
            members.setdefault(session, []).append(pid)
    return members


def choose(settings: Settings, node_id: str) -> MemoryEnforcer:
    """The enforcer ``settings.memory_enforcement`` asks for, or the best available
    one for "auto". Raises :class:`FaasboxError` when an explicit mode is unavailable."""
    mode = settings.memory_enforcement
    if mode not in MODES:
        raise FaasboxError(f"memory_enforcement={mode!r} is not one of {', '.join(MODES)}")
    if mode == "rss-watch":
        return RssWatch("memory_enforcement is set to rss-watch")
    version = {"cgroup-v1": 1, "cgroup-v2": 2}.get(mode)
    try:
        return CgroupEnforcer.create(settings, node_id, version)
    except CgroupUnavailable as exc:
        if mode != "auto":
            raise FaasboxError(f"memory_enforcement={mode} is unavailable: {exc}") from exc
        return RssWatch(f"no writable cgroup memory controller ({exc})")
