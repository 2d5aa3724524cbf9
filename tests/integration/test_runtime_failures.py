"""Sandboxes that time out, run out of memory or crash: killed whole, reported as such,
never reused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_runtime import gone

from faasbox.config import Settings
from faasbox.layout import Layout
from faasbox.model import Status
from faasbox.runtime.node import Node
from faasbox.runtime.spec import Outcome, SandboxSpec

APP = """
import os, signal, subprocess, sys, time

def handler(event, context):
    do = (event or {}).get("do")
    print("doing", do, flush=True)
    if do == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("child", child.pid)
        time.sleep(60)
    if do == "allocate":
        hog = b"x" * (400 << 20)
        time.sleep(event.get("hold", 5))
        return len(hog)
    if do == "child-allocate":
        subprocess.run([sys.executable, "-c", "import time; hog = b'x' * (400 << 20); "
                        "print('child allocated', flush=True); time.sleep(60)"])
        return "the child survived"
    if do == "fork-share":
        shared = b"x" * (80 << 20)  # in the parent and, copy-on-write, the child
        pid = os.fork()
        if pid == 0:
            time.sleep(0.5)
            os._exit(0)
        os.waitpid(pid, 0)
        return len(shared)
    if do == "exit":
        os._exit(3)
    if do == "exit0":
        sys.exit(0)
    if do == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if do == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if do == "close":
        os.closerange(3, 100)
        time.sleep(5)
    return {"pid": os.getpid()}
"""


def call(node: Node, spec: SandboxSpec, event: Any, request_id: str = "req-1") -> Outcome:
    return node.invoke(spec, json.dumps(event).encode(), request_id=request_id,
                       invoked_function_arn="arn:faasbox:lambda:local:000000000000:function:fn")


@pytest.fixture
def spec(tmp_path: Path) -> SandboxSpec:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(APP))
    return SandboxSpec(function="fn", version="$LATEST", revision="r1", handler="app.handler",
                       code_dir=code, layer_dir=None, memory_mb=128, timeout_s=1.0)


def make_node(tmp_path: Path, **settings: Any) -> Node:
    config = Settings(home=tmp_path / "home", isolation="process",
                        capacity_mb=2048, **settings)
    return Node(config, Layout(config.home))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with make_node(tmp_path) as node:
        yield node


def assert_fresh_sandbox_next(node: Node, spec: SandboxSpec, failed: Outcome) -> None:
    """The failed sandbox is dead and gone; the next call starts a new one and works."""
    assert gone(failed.sandbox_pid)
    assert not Layout(node.settings.home).sandbox(failed.sandbox_id).exists()
    assert failed.sandbox_id not in [sb["id"] for sb in node.stats()["sandboxes"]]
    after = call(node, spec, {}, "req-after")
    assert after.status is Status.SUCCESS, after
    assert after.sandbox_pid != failed.sandbox_pid and after.cold


def test_timeout_kills_the_process_group_and_keeps_output(node: Node, spec: SandboxSpec
                                                          ) -> None:
    call(node, spec, {})  # warm: the timeout hits a sandbox that served before
    started = time.monotonic()
    outcome = call(node, spec, {"do": "hang"}, "req-hang")
    assert 1.0 <= time.monotonic() - started < 3.0  # killed at the deadline, not later
    assert outcome.status is Status.TIMEOUT
    assert outcome.error_type == "Sandbox.Timedout"
    assert outcome.error_message == "Task timed out after 1.00 seconds"
    assert json.loads(outcome.payload) == {"errorType": "Sandbox.Timedout",
                                           "errorMessage": outcome.error_message}
    assert "doing hang" in outcome.output
    match = re.search(r"child (\d+)", outcome.output)
    assert match, outcome.output
    assert gone(int(match.group(1)))  # the handler's own child died with it
    assert_fresh_sandbox_next(node, spec, outcome)


def test_out_of_memory_with_the_default_enforcement(node: Node, spec: SandboxSpec) -> None:
    outcome = call(node, spec, {"do": "allocate"})
    assert node.stats()["memory_enforcement"] in ("cgroup-v1", "cgroup-v2", "rss-watch")
    assert outcome.status is Status.OOM
    assert outcome.error_type == "Runtime.OutOfMemory"
    assert "memory limit of 128 MB exceeded" in (outcome.error_message or "")
    assert json.loads(outcome.payload)["errorType"] == "Runtime.OutOfMemory"
    assert outcome.max_memory_used_mb >= 128
    assert "doing allocate" in outcome.output
    assert_fresh_sandbox_next(node, spec, outcome)


def test_out_of_memory_with_the_rss_watch(tmp_path: Path, spec: SandboxSpec) -> None:
    with make_node(tmp_path, memory_enforcement="rss-watch") as node:
        outcome = call(node, spec, {"do": "allocate"})
        assert node.stats()["memory_enforcement"] == "rss-watch"
        assert outcome.status is Status.OOM
        assert outcome.error_type == "Runtime.OutOfMemory"
        assert "signal: killed (memory limit of 128 MB exceeded" in (outcome.error_message or "")
        assert_fresh_sandbox_next(node, spec, outcome)


def test_the_rss_watch_counts_the_handlers_child_processes(tmp_path: Path,
                                                           spec: SandboxSpec) -> None:
    spec = replace(spec, timeout_s=5.0)
    with make_node(tmp_path, memory_enforcement="rss-watch") as node:
        outcome = call(node, spec, {"do": "child-allocate"})
        assert outcome.status is Status.OOM, outcome
        assert outcome.error_type == "Runtime.OutOfMemory"
        assert outcome.max_memory_used_mb >= 128
        assert_fresh_sandbox_next(node, spec, outcome)
        # Pages a forked child still shares with its parent count once, not twice.
        shared = call(node, spec, {"do": "fork-share"})
        assert shared.status is Status.SUCCESS, shared
        assert 80 <= shared.max_memory_used_mb < 128


def test_memory_within_the_limit_is_fine(node: Node, spec: SandboxSpec) -> None:
    roomy = SandboxSpec(**{**spec.__dict__, "memory_mb": 1024, "revision": "roomy",
                           "timeout_s": 10.0})
    outcome = call(node, roomy, {"do": "allocate", "hold": 0.2})
    assert outcome.status is Status.SUCCESS and json.loads(outcome.payload) == 400 << 20
    assert outcome.max_memory_used_mb >= 400


@pytest.mark.parametrize(("do", "how"), [
    ("exit", "Runtime exited with error: exit status 3"),
    ("exit0", "Runtime exited without providing a reason"),
    ("segv", "Runtime exited with error: signal: segmentation fault"),
    ("kill", "Runtime exited with error: signal: killed"),
])
def test_crash_is_reported_with_its_exit_status(node: Node, spec: SandboxSpec, do: str,
                                                how: str) -> None:
    outcome = call(node, spec, {"do": do}, "req-crash")
    assert outcome.status is Status.CRASH
    assert outcome.error_type == "Runtime.ExitError"
    assert outcome.error_message == f"RequestId: req-crash Error: {how}"
    assert json.loads(outcome.payload)["errorMessage"] == outcome.error_message
    assert f"doing {do}" in outcome.output
    assert_fresh_sandbox_next(node, spec, outcome)


def test_sandbox_that_closes_its_socket_is_killed(node: Node, spec: SandboxSpec) -> None:
    started = time.monotonic()
    outcome = call(node, spec, {"do": "close"})
    assert time.monotonic() - started < 3
    assert outcome.status is Status.CRASH and outcome.error_type == "Runtime.ExitError"
    assert_fresh_sandbox_next(node, spec, outcome)


def test_crash_during_init(node: Node, tmp_path: Path) -> None:
    code = tmp_path / "dying"
    code.mkdir()
    (code / "app.py").write_text("import os\nprint('bye')\nos._exit(7)\n")
    spec = SandboxSpec(function="dying", version="1", revision="d1", handler="app.handler",
                       code_dir=code, layer_dir=None, memory_mb=128, timeout_s=1.0)
    outcome = call(node, spec, {})
    assert outcome.status is Status.CRASH
    assert outcome.error_message == (
        "RequestId: req-1 Error: Runtime exited with error: exit status 7")
    assert outcome.output == "bye\n" and outcome.init_duration_ms is not None
    assert gone(outcome.sandbox_pid) and node.stats()["used_mb"] == 0


@pytest.mark.parametrize("memory_mb", [128, 320, 128])  # cgroups are made ahead, resized
def test_sandbox_runs_inside_its_own_memory_cgroup(node: Node, spec: SandboxSpec,
                                                   memory_mb: int) -> None:
    spec = SandboxSpec(**{**spec.__dict__, "memory_mb": memory_mb})
    outcome = call(node, spec, {})
    enforcement = node.stats()["memory_enforcement"]
    with open(f"/proc/{outcome.sandbox_pid}/cgroup") as f:
        lines = f.read().splitlines()
    if enforcement == "cgroup-v1":
        [memory] = [line for line in lines if "memory" in line.split(":")[1].split(",")]
        assert memory.endswith(f"/faasbox-{node.id}/sandbox-{outcome.sandbox_id}")
        folder = Path("/sys/fs/cgroup/memory") / memory.split(":", 2)[2].lstrip("/")
        if folder.exists():
            limit = int((folder / "memory.limit_in_bytes").read_text())
            assert limit == memory_mb << 20
    elif enforcement == "cgroup-v2":
        [unified] = [line for line in lines if line.startswith("0::")]
        assert unified.endswith(f"/faasbox-{node.id}/sandbox-{outcome.sandbox_id}")
    else:  # no writable cgroup here: the watch is the enforcement
        assert enforcement == "rss-watch"
        assert not any(f"sandbox-{outcome.sandbox_id}" in line for line in lines)


def test_a_vanished_control_plane_leaves_no_process_and_no_cgroup(tmp_path: Path) -> None:
    """The zygote cleans up after a SIGKILLed supervisor, cgroups made ahead included."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(e, c):\n    return 1\n")
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from faasbox.config import Settings
        from faasbox.layout import Layout
        from faasbox.runtime.node import Node
        from faasbox.runtime.spec import SandboxSpec
        settings = Settings(home=Path({str(tmp_path / "home")!r}), isolation="process",
                        capacity_mb=1024)
        node = Node(settings, Layout(settings.home))
        spec = SandboxSpec(function="fn", version="$LATEST", revision="r1",
                           handler="app.handler", code_dir=Path({str(code)!r}),
                           layer_dir=None, memory_mb=128, timeout_s=3.0)
        outcome = node.invoke(spec, b"{{}}", request_id="r", invoked_function_arn="arn")
        time.sleep(0.3)  # the slots and spares made ahead are there too
        stats = node.stats()
        print(json.dumps([node.id, stats["memory_enforcement"], stats["zygote_pid"],
                          outcome.sandbox_pid]), flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        node_id, enforcement, zygote, sandbox = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert gone(zygote, 5) and gone(sandbox, 5)
    if enforcement == "cgroup-v1":
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        [memory] = [line for line in lines if "memory" in line.split(":")[1].split(",")]
        folder = Path("/sys/fs/cgroup/memory") / memory.split(":", 2)[2].lstrip("/")
        if folder.exists():
            assert not (folder / f"faasbox-{node_id}").exists()
