"""The cgroup level's attacks, with the standard library alone, for a host the test
suite cannot run on (CI's machines have cgroup v1; this checks a cgroup v2 host):

    python3 tests/security/cgroup_check.py [CGROUP_ROOT | --this-host]

Builds a node at the ``cgroup`` isolation level (memory enforcement ``cgroup-v2``,
below ``CGROUP_ROOT``, default a fresh ``/sys/fs/cgroup/faasbox-check`` with memory, pids
and cpu delegated) and checks what tests/security/test_cgroup.py checks: forks stop at
the pids limit, a fork bomb is killed at its timeout while another function answers,
CPU in proportion to memory, memory past the limit is Runtime.OutOfMemory, each call's
CPU time and peak memory come from the cgroup, the sandbox sees its own pid namespace.
Prints one JSON report; exits 1 when a check fails.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from faasbox.config import Settings
from faasbox.layout import Layout
from faasbox.model import Status
from faasbox.runtime.limits import cpu_quota_us
from faasbox.runtime.node import Node, doctor, unavailable
from faasbox.runtime.spec import SandboxSpec

ATTACKS = """
import os, time

def handler(event, context):
    do = event["do"]
    if do == "forks":
        made, refused = 0, None
        try:
            for _ in range(event["n"]):
                if os.fork() == 0:
                    time.sleep(3)
                    os._exit(0)
                made += 1
        except OSError as exc:
            refused = exc.errno
        return {"made": made, "errno": refused}
    if do == "bomb":
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    if do == "spin":
        started, cpu = time.time(), time.process_time()
        while time.time() - started < event["s"]:
            pass
        return {"wall": time.time() - started, "cpu": time.process_time() - cpu}
    if do == "eat":
        hoard = []
        while True:
            hoard.append(bytearray(16 << 20))
    if do == "look":
        return {"pid": os.getpid(), "procs": len([p for p in os.listdir("/proc")
                                                  if p.isdigit()])}
    return "fine"
"""


def main() -> int:
    here = sys.argv[1:] == ["--this-host"]  # this host's own cgroups, whatever version
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/sys/fs/cgroup/faasbox-check")
    if len(sys.argv) == 1:
        root.mkdir(exist_ok=True)
        (root / "cgroup.subtree_control").write_text("+memory +pids +cpu")
    tmp = Path(tempfile.mkdtemp())
    code = tmp / "code"
    code.mkdir()
    (code / "app.py").write_text(ATTACKS)
    settings = Settings(home=tmp / "home", isolation="cgroup",
                        memory_enforcement="auto" if here else "cgroup-v2",
                        cgroup_root="" if here else str(root), max_processes=50,
                        capacity_mb=8192, keep_alive_s=30)
    report: dict[str, object] = {"why_not_cgroup": unavailable("cgroup", settings)}
    checks: dict[str, bool] = {}
    facts = doctor(settings)
    report["doctor"] = {k: facts[k] for k in ("isolation", "isolation_reason",
                                              "memory_enforcement", "isolation_levels")}
    checks["doctor says cgroup"] = facts["isolation"] == "cgroup"

    def spec(name: str, **changes: object) -> SandboxSpec:
        values: dict[str, object] = {
            "function": name, "version": "$LATEST", "revision": f"{name}-r1",
            "handler": "app.handler", "code_dir": code, "layer_dir": None,
            "memory_mb": 128, "timeout_s": 5.0}
        values.update(changes)
        return SandboxSpec(**values)  # type: ignore[arg-type]

    with Node(settings, Layout(settings.home)) as node:
        def call(target: SandboxSpec, event: dict[str, object]) -> tuple[object, object]:
            outcome = node.invoke(target, json.dumps(event).encode(), request_id="r",
                                  invoked_function_arn="arn:" + target.function)
            return outcome, json.loads(outcome.payload)

        _, forks = call(spec("forker"), {"do": "forks", "n": 500})
        report["forks"] = forks
        checks["forks stop at pids.max"] = (forks["errno"] == 11  # type: ignore[index]
                                            and 40 <= forks["made"] < 50)  # type: ignore[index]
        bystander = spec("bystander")
        result: dict[str, object] = {}
        thread = threading.Thread(target=lambda: result.update(
            bomb=call(spec("bomb", timeout_s=2.0), {"do": "bomb"})))
        thread.start()
        served = [call(bystander, {"do": "x"})[1] for _ in range(5)]
        thread.join(30)
        bomb_outcome, bomb = result["bomb"]  # type: ignore[misc]
        report["bomb"] = bomb
        checks["bomb killed at its timeout"] = (bomb_outcome.status is Status.TIMEOUT)
        checks["bystander served meanwhile"] = served == ["fine"] * 5
        small = spec("small")
        _, spun = call(small, {"do": "spin", "s": 0.6})
        report["spin_128mb"] = spun
        checks["128 MB gets ~7 % of a CPU"] = spun["cpu"] < 0.25 * spun["wall"]  # type: ignore[index]
        [sandbox] = [sb for sb in node._live.values() if sb.spec.function == "small"]
        report["quota_us"] = sandbox.limits.quota_us() if sandbox.limits else None
        checks["cpu.max from memory"] = report["quota_us"] == cpu_quota_us(128) == 7235
        busy_outcome, busy = call(spec("busy", memory_mb=1769), {"do": "spin", "s": 0.3})
        report["busy"] = {"cpu_time_ms": busy_outcome.cpu_time_ms,
                          "max_memory_used_mb": busy_outcome.max_memory_used_mb, **busy}
        checks["cpu time from cpu.stat"] = (busy_outcome.cpu_time_ms is not None
                                            and busy_outcome.cpu_time_ms
                                            >= 0.8 * busy["cpu"] * 1000)
        eat_outcome, eaten = call(spec("glutton", timeout_s=20.0), {"do": "eat"})
        report["eat"] = eaten
        checks["memory past the limit is OutOfMemory"] = (
            eat_outcome.status is Status.OOM and eaten.get("errorType") == "Runtime.OutOfMemory")
        checks["bystander fine after"] = call(bystander, {"do": "x"})[1] == "fine"
        _, look = call(spec("looker"), {"do": "look"})
        report["look"] = look
        checks["own pid namespace"] = look["procs"] <= 5  # type: ignore[index]
    report["checks"] = checks
    print(json.dumps(report, indent=1, default=str))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"took {time.monotonic() - started:.1f} s", file=sys.stderr)
    sys.exit(code)
