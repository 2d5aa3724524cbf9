"""Sandboxes isolated as processes: forked by the zygote, own session and process group,
rlimits, private working dir and ``/tmp``, a memory limit (cgroup or RSS watch)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from faasbox.config import Settings
from faasbox.errors import FaasboxError
from faasbox.layout import Layout
from faasbox.runtime.memory import MemoryEnforcer, SandboxMemory
from faasbox.runtime.sandbox import InitFailed, Sandbox, SandboxFactory
from faasbox.runtime.spec import SandboxSpec
from faasbox.runtime.zygote_client import ZygoteClient

RUNTIME_DIR = Path(__file__).resolve().parent
SPAWN_TIMEOUT_S = 10.0


def sandbox_environment(settings: Settings, spec: SandboxSpec, sandbox_id: str,
                        tmp: Path) -> dict[str, str]:
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
    })
    return env


class ProcessSandboxFactory(SandboxFactory):
    """Forks sandboxes from one zygote, restarted on the next use after it died."""

    isolation = "process"

    def __init__(self, settings: Settings, layout: Layout, memory: MemoryEnforcer) -> None:
        self.settings = settings
        self.layout = layout
        self.memory = memory
        self.memory_enforcement = memory.name
        self._zygote: ZygoteClient | None = None
        self._lock = threading.Lock()
        self._closed = False

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
            self._zygote = ZygoteClient().start()
            return self._zygote

    def start(self, spec: SandboxSpec, sandbox_id: str, *, request_id: str) -> Sandbox:
        directory = self.layout.sandbox(sandbox_id)
        tmp, work = directory / "tmp", directory / "work"
        tmp.mkdir(parents=True)
        work.mkdir()
        output = directory / "output"
        output_fd = os.open(output, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        memory: SandboxMemory | None = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            memory = self.memory.prepare(sandbox_id, spec.memory_mb)
            params = self._params(spec, sandbox_id, tmp, work, output, memory)
            pid, zygote = self._spawn(theirs, params)
        except BaseException:
            ours.close()
            os.close(output_fd)
            if memory is not None:
                memory.release()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            theirs.close()
        memory.attach(pid)
        sandbox = Sandbox(sandbox_id=sandbox_id, spec=spec, pid=pid, sock=ours,
                          output_fd=output_fd, directory=directory, memory=memory,
                          wait_exit=zygote.wait_exit)
        try:
            failure = sandbox.wait_ready(self.settings.init_timeout_s, request_id)
        except BaseException:
            sandbox.destroy("init interrupted")
            raise
        if failure is not None:
            sandbox.destroy("init failed")
            raise InitFailed(failure)
        return sandbox

    def _spawn(self, sandbox_end: socket.socket, params: dict[str, Any]
               ) -> tuple[int, ZygoteClient]:
        """Fork through the zygote; a zygote found dead is restarted once."""
        for attempt in (1, 2):
            zygote = self.zygote()
            try:
                return zygote.spawn(sandbox_end, params, SPAWN_TIMEOUT_S), zygote
            except FaasboxError:
                if attempt == 2 or zygote.running:
                    raise
        raise AssertionError("unreachable")

    def _params(self, spec: SandboxSpec, sandbox_id: str, tmp: Path, work: Path,
                output: Path, memory: SandboxMemory) -> dict[str, Any]:
        env = sandbox_environment(self.settings, spec, sandbox_id, tmp)
        return {
            "sandbox_id": sandbox_id,
            "handler": spec.handler,
            "code_dir": str(spec.code_dir),
            "layer_dir": str(spec.layer_dir) if spec.layer_dir else None,
            "work_dir": str(work),
            "output": str(output),
            "cgroup_join": memory.join_path,
            "env": env,
            "max_open_files": self.settings.max_open_files,
            "max_processes": self.settings.max_processes,
            "function_name": spec.function,
            "function_version": spec.version,
            "memory_mb": spec.memory_mb,
            "log_group_name": env["AWS_LAMBDA_LOG_GROUP_NAME"],
            "log_stream_name": env["AWS_LAMBDA_LOG_STREAM_NAME"],
        }

    def sweep(self) -> None:
        self.memory.sweep()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()
        with contextlib.suppress(OSError):
            self.memory.close()
