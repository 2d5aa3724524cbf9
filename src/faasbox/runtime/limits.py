"""Process and CPU limits of sandboxes at the ``cgroup`` isolation level (the memory
limit is :mod:`memory`'s): a cgroup per sandbox in the ``pids`` and ``cpu`` hierarchies,
made ahead of need with the sandbox's slot, joined by the sandbox itself at init.

- ``pids.max``: at most ``max_processes`` tasks (processes and threads) in the sandbox:
  a fork bomb gets ``EAGAIN`` and stays inside;
- ``cpu.cfs_quota_us`` over a 100 ms period: CPU in proportion to memory, as on Lambda
  (1,769 MB is one vCPU; 128 MB gets ~7 ms of CPU per 100 ms, at least 1 ms);
- ``cpuacct.usage``: the CPU time the sandbox used, read before and after each call
  (its ``CPU Time`` in the REPORT line, the record and the ``CpuTime`` metric).

cgroup v1: a cgroup in each controller's own hierarchy. cgroup v2 (one unified
hierarchy): the same limits are written into the sandbox's one cgroup, the memory
enforcer's (``pids.max``, ``cpu.max``; CPU time from ``cpu.stat``'s ``usage_usec``),
with the ``pids`` and ``cpu`` controllers delegated to the node's cgroup.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from faasbox.config import Settings
from faasbox.errors import FaasboxError
from faasbox.runtime.memory import (
    CgroupEnforcer,
    CgroupRemover,
    CgroupUnavailable,
    MemoryEnforcer,
    _own_cgroup,
    delegate,
)

#: Lambda's ratio: this much memory gets one whole vCPU.
MB_PER_VCPU = 1769
CPU_PERIOD_US = 100_000
CPU_QUOTA_MIN_US = 1_000
#: The hierarchies a sandbox joins, and the controller each is found by.
CONTROLLERS = ("pids", "cpu", "cpuacct")


def cpu_quota_us(memory_mb: int) -> int:
    """CPU time per :data:`CPU_PERIOD_US` for a sandbox of ``memory_mb``."""
    return max(CPU_QUOTA_MIN_US, CPU_PERIOD_US * memory_mb // MB_PER_VCPU)


class SandboxLimits:
    """The pids and CPU cgroups of one sandbox (v1), or the limits in its one cgroup
    (v2: the memory enforcer's, made first and removed by it)."""

    def __init__(self, enforcer: LimitsEnforcer, sandbox_id: str, memory_mb: int,
                 max_processes: int) -> None:
        self.enforcer = enforcer
        self.unified = enforcer.unified
        self.dirs: dict[str, Path] = {}
        self.memory_mb = 0
        self._cpu_fd: int | None = None
        made: dict[Path, Path] = {}  # cpu and cpuacct may share one hierarchy
        try:
            for controller, parent in enforcer.parents.items():
                path = made.get(parent)
                if path is None:
                    path = made[parent] = parent / f"sandbox-{sandbox_id}"
                    if not self.unified:
                        path.mkdir()
                self.dirs[controller] = path
            if self.unified:
                self.dirs = {name: self.dirs["unified"] for name in ("pids", "cpu", "cpuacct")}
            (self.dirs["pids"] / "pids.max").write_text(str(max_processes))
            if not self.unified:
                (self.dirs["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            self.resize(memory_mb)
            usage = "cpu.stat" if self.unified else "cpuacct.usage"
            self._cpu_fd = os.open(self.dirs["cpuacct"] / usage, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.release()
            raise
        #: Files the sandbox writes "0" (itself) to at init, one per v1 hierarchy (on v2
        #: it joins its one cgroup as its memory's).
        self.join_paths = ([] if self.unified else
                           sorted({str(path / "tasks") for path in self.dirs.values()}))

    def resize(self, memory_mb: int) -> None:
        """The CPU quota for ``memory_mb`` (before the sandbox joins)."""
        if memory_mb != self.memory_mb:
            quota = cpu_quota_us(memory_mb)
            if self.unified:
                (self.dirs["cpu"] / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            else:
                (self.dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
            self.memory_mb = memory_mb

    def quota_us(self) -> int:
        """The CPU quota set, in µs per :data:`CPU_PERIOD_US` (read back from the
        cgroup)."""
        if self.unified:
            return int((self.dirs["cpu"] / "cpu.max").read_text().split()[0])
        return int((self.dirs["cpu"] / "cpu.cfs_quota_us").read_text())

    def cpu_ns(self) -> int | None:
        """CPU time the sandbox's processes used so far, in ns (one pread); None when
        it cannot be read."""
        if self._cpu_fd is None:
            return None
        try:
            if not self.unified:
                return int(os.pread(self._cpu_fd, 32, 0))
            first = os.pread(self._cpu_fd, 64, 0).split(b"\n", 1)[0]  # usage_usec N
            name, _, value = first.partition(b" ")
            return int(value) * 1000 if name == b"usage_usec" else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._cpu_fd is not None:
            os.close(self._cpu_fd)
            self._cpu_fd = None
        if not self.unified:  # v2: the one cgroup is the memory enforcer's to remove
            for path in set(self.dirs.values()):
                self.enforcer.remove(path)
        self.dirs = {}


class LimitsEnforcer:
    """A ``faasbox-<node>`` cgroup in each hierarchy, a child per sandbox."""

    def __init__(self, parents: dict[str, Path], max_processes: int,
                 unified: bool = False) -> None:
        self.parents = parents
        self.max_processes = max_processes
        #: cgroup v2: ``parents`` is the memory enforcer's node cgroup, under "unified".
        self.unified = unified
        self._remover = CgroupRemover()

    @classmethod
    def create(cls, settings: Settings, node_id: str,
               memory: MemoryEnforcer | None = None) -> LimitsEnforcer:
        """Make the node's cgroups and check a limited sandbox cgroup can be made
        (with ``memory`` a v2 cgroup enforcer: in its cgroups). Raises
        :class:`CgroupUnavailable` saying why not."""
        if isinstance(memory, CgroupEnforcer) and memory.files.version == 2:
            return cls._create_v2(settings, memory)
        parents: dict[str, Path] = {}
        try:
            for controller in CONTROLLERS:
                base = _own_cgroup(1, controller)
                parent = base / f"faasbox-{node_id}"
                parent.mkdir(exist_ok=True)
                parents[controller] = parent
        except CgroupUnavailable as exc:
            raise CgroupUnavailable(f"{exc} (the cgroup level needs cgroup v1's pids, cpu "
                                    "and cpuacct controllers, or a cgroup v2 memory "
                                    "enforcer with pids and cpu delegated)") from exc
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create the node's cgroups: {exc}") from exc
        enforcer = cls(parents, settings.max_processes)
        try:
            enforcer.prepare("probe", 128).release()
        except (OSError, FaasboxError) as exc:
            enforcer.close()
            raise CgroupUnavailable(f"cannot create a limited sandbox cgroup: {exc}") from exc
        return enforcer

    @classmethod
    def _create_v2(cls, settings: Settings, memory: CgroupEnforcer) -> LimitsEnforcer:
        node = memory.parent
        try:
            delegate(node.parent, ("pids", "cpu"))  # so that the node's cgroup has them
            delegate(node, ("pids", "cpu"))  # and its sandboxes'
        except CgroupUnavailable as exc:
            raise CgroupUnavailable(f"cgroup v2: {exc}") from exc
        enforcer = cls({"unified": node}, settings.max_processes, unified=True)
        probe = memory.prepare("probe-limits", 128)
        try:
            enforcer.prepare("probe-limits", 128).release()
        except (OSError, FaasboxError) as exc:
            raise CgroupUnavailable(f"cannot limit a sandbox cgroup in {node}: {exc}") from exc
        finally:
            probe.release()
        return enforcer

    def prepare(self, sandbox_id: str, memory_mb: int) -> SandboxLimits:
        try:
            return SandboxLimits(self, sandbox_id, memory_mb, self.max_processes)
        except OSError as exc:
            raise FaasboxError(f"cannot create the pids and cpu cgroups of sandbox "
                               f"{sandbox_id}: {exc}") from exc

    def remove(self, path: Path) -> None:
        """rmdir a sandbox cgroup now, or later once its last process has gone."""
        self._remover.remove(path)

    def sweep(self) -> None:
        self._remover.sweep()

    def close(self) -> None:
        self.sweep()
        if self.unified:
            return  # the cgroups are the memory enforcer's, which closes them
        for parent in set(self.parents.values()):
            for child in parent.glob("sandbox-*"):
                for pid in _pids(child):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                self.remove(child)
        for parent in set(self.parents.values()):
            with contextlib.suppress(OSError):
                parent.rmdir()  # fails while a child remains; sweep() is retried


def _pids(path: Path) -> list[int]:
    try:
        return [int(pid) for pid in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
