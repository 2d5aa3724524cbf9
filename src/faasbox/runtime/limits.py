"""Process and CPU limits of sandboxes at the ``cgroup`` isolation level (the memory
limit is :mod:`memory`'s): a cgroup per sandbox in the ``pids`` and ``cpu`` hierarchies,
made ahead of need with the sandbox's slot, joined by the sandbox itself at init.

- ``pids.max``: at most ``max_processes`` tasks (processes and threads) in the sandbox:
  a fork bomb gets ``EAGAIN`` and stays inside;
- ``cpu.cfs_quota_us`` over a 100 ms period: CPU in proportion to memory, as on Lambda
  (1,769 MB is one vCPU; 128 MB gets ~7 ms of CPU per 100 ms, at least 1 ms);
- ``cpuacct.usage``: the CPU time the sandbox used, read before and after each call
  (its ``CPU Time`` in the REPORT line, the record and the ``CpuTime`` metric).

cgroup v1 (each controller its own hierarchy). On cgroup v2 this level is not built
yet: :meth:`LimitsEnforcer.create` says so, and ``faasbox doctor`` shows it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from faasbox.config import Settings
from faasbox.errors import FaasboxError
from faasbox.runtime.memory import CgroupRemover, CgroupUnavailable, _own_cgroup

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
    """The pids and CPU cgroups of one sandbox."""

    def __init__(self, enforcer: LimitsEnforcer, sandbox_id: str, memory_mb: int,
                 max_processes: int) -> None:
        self.enforcer = enforcer
        self.dirs: dict[str, Path] = {}
        self.memory_mb = 0
        made: dict[Path, Path] = {}  # cpu and cpuacct may share one hierarchy
        try:
            for controller, parent in enforcer.parents.items():
                path = made.get(parent)
                if path is None:
                    path = made[parent] = parent / f"sandbox-{sandbox_id}"
                    path.mkdir()
                self.dirs[controller] = path
            (self.dirs["pids"] / "pids.max").write_text(str(max_processes))
            (self.dirs["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            self.resize(memory_mb)
        except OSError:
            self.release()
            raise
        #: Files the sandbox writes "0" (itself) to at init, one per hierarchy.
        self.join_paths = sorted({str(path / "tasks") for path in self.dirs.values()})
        self._cpu_fd: int | None = os.open(self.dirs["cpuacct"] / "cpuacct.usage",
                                           os.O_RDONLY | os.O_CLOEXEC)

    def resize(self, memory_mb: int) -> None:
        """The CPU quota for ``memory_mb`` (before the sandbox joins)."""
        if memory_mb != self.memory_mb:
            (self.dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(cpu_quota_us(memory_mb)))
            self.memory_mb = memory_mb

    def cpu_ns(self) -> int | None:
        """CPU time the sandbox's processes used so far, in ns (one pread); None when
        it cannot be read."""
        if self._cpu_fd is None:
            return None
        try:
            return int(os.pread(self._cpu_fd, 32, 0))
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if getattr(self, "_cpu_fd", None) is not None:
            os.close(self._cpu_fd)  # type: ignore[arg-type]
            self._cpu_fd = None
        for path in set(self.dirs.values()):
            self.enforcer.remove(path)
        self.dirs = {}


class LimitsEnforcer:
    """A ``faasbox-<node>`` cgroup in each hierarchy, a child per sandbox."""

    def __init__(self, parents: dict[str, Path], max_processes: int) -> None:
        self.parents = parents
        self.max_processes = max_processes
        self._remover = CgroupRemover()

    @classmethod
    def create(cls, settings: Settings, node_id: str) -> LimitsEnforcer:
        """Make the node's cgroups and check a limited sandbox cgroup can be made.
        Raises :class:`CgroupUnavailable` saying why not."""
        parents: dict[str, Path] = {}
        try:
            for controller in CONTROLLERS:
                base = _own_cgroup(1, controller)
                parent = base / f"faasbox-{node_id}"
                parent.mkdir(exist_ok=True)
                parents[controller] = parent
        except CgroupUnavailable as exc:
            raise CgroupUnavailable(f"{exc} (the cgroup level needs cgroup v1's pids, cpu "
                                    "and cpuacct controllers; on cgroup v2 it is not "
                                    "built yet)") from exc
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create the node's cgroups: {exc}") from exc
        enforcer = cls(parents, settings.max_processes)
        try:
            enforcer.prepare("probe", 128).release()
        except (OSError, FaasboxError) as exc:
            enforcer.close()
            raise CgroupUnavailable(f"cannot create a limited sandbox cgroup: {exc}") from exc
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
