"""faasbox isolation benchmark: cold start at each isolation level, beside a bare fork
and bubblewrap in the same run.

    make bench            # runs bench/run.py, bench/triggers.py, then this
    .venv/bin/python bench/isolation.py [--quick]

A cold start here is request to result for a trivial handler through the in-process
SDK, each call to a function that has no sandbox yet (the zygote running, as after a
server's start). Baselines: ``os.fork()`` of a warm parent whose child answers through
a pipe, and ``bwrap --unshare-all ... python -I -S -c pass`` (the exec-based sandbox
other tools use). Goal: ``cgroup``-level p50 <= 0.5x bwrap's. Writes
bench/results/isolation.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report

import faasbox
from faasbox.runtime.node import unavailable

ROOT = Path(__file__).resolve().parent.parent
HANDLER = "def handler(event, context):\n    return {'ok': True}\n"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "samples": len(ordered)}


def cold_starts(level: str, n: int, tmp: Path) -> list[float]:
    """Request-to-result ms of ``n`` cold starts at ``level``."""
    code = tmp / f"code-{level}"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    client = faasbox.local(home=str(tmp / f"home-{level}"), isolation=level,
                           keep_alive_s=600)
    try:
        for i in range(n + 1):
            client.deploy(f"f{i}", code, handler="app.handler")
        client.invoke("f0", {})  # the zygote up and its spares rehearsed
        time.sleep(0.5)
        samples = []
        for i in range(1, n + 1):
            started = time.perf_counter()
            result = client.invoke(f"f{i}", {})
            samples.append((time.perf_counter() - started) * 1000)
            if result.function_error:
                raise AssertionError(f"{level}: {result.payload!r}")
            time.sleep(0.02)  # let the zygote fork the next spare, as between requests
        return samples
    finally:
        client.close()


def forks(n: int) -> list[float]:
    """ms from ``os.fork()`` of this (warm) process until its child's answer."""
    samples = []
    for _ in range(n):
        read, write = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.write(write, b"1")
            os._exit(0)
        os.read(read, 1)
        samples.append((time.perf_counter() - started) * 1000)
        os.close(read)
        os.close(write)
        os.waitpid(pid, 0)
    return samples


def bwrap_command() -> list[str] | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    prefix = os.path.realpath(sys.base_prefix)
    python = os.path.realpath(sys.executable)
    command = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for path in ("/lib", "/lib64", "/bin", "/sbin"):
        if os.path.islink(path):
            command += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            command += ["--ro-bind", path, path]
    command += ["--ro-bind", prefix, prefix, "--proc", "/proc", "--dev", "/dev",
                "--tmpfs", "/tmp", python, "-I", "-S", "-c", "pass"]
    return command


def bwraps(command: list[str], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run(command, check=True)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    n = 20 if args.quick else 60
    results: dict[str, Any] = {"levels": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for level in ("process", "namespace", "cgroup"):
            why = unavailable(level)
            if why is not None:
                results["levels"][level] = {"unavailable": why}
                continue
            results["levels"][level] = percentiles(cold_starts(level, n, Path(tmp)))
    results["fork"] = percentiles(forks(n * 3))
    command = bwrap_command()
    results["bwrap"] = (percentiles(bwraps(command, n)) if command is not None
                        else {"unavailable": "bwrap is not installed"})
    print(f"{'cold start, request to result':36s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, figures in [*results["levels"].items(), ("fork() of a warm parent",
                                                       results["fork"]),
                          ("bwrap + python -I -S -c pass", results["bwrap"])]:
        if "unavailable" in figures:
            print(f"{name:36s} unavailable: {figures['unavailable']}")
        else:
            print(f"{name:36s} {figures['p50_ms']:8.2f} {figures['p99_ms']:8.2f}")
    goals: dict[str, Any] = {}
    cgroup, bwrap = results["levels"].get("cgroup", {}), results["bwrap"]
    if "p50_ms" in cgroup and "p50_ms" in bwrap:
        ratio = cgroup["p50_ms"] / bwrap["p50_ms"]
        goals["cgroup_p50_over_bwrap"] = {"ratio": ratio, "goal": "<= 0.5", "met": ratio <= 0.5}
        print(f"goal cgroup_p50_over_bwrap: {ratio:.2f} (goal <= 0.5) "
              f"{'met' if ratio <= 0.5 else 'NOT MET'}")
    else:
        goals["cgroup_p50_over_bwrap"] = {"met": False, "why": "a figure is unavailable"}
        print("goal cgroup_p50_over_bwrap: not measured (a figure is unavailable)")
    report.write("isolation", results, goals)


if __name__ == "__main__":
    main()
