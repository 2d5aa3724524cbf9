"""faasbox core benchmark: each figure beside a baseline measured in the same run.

    make bench            # or: .venv/bin/python bench/run.py [--quick]

Prints a table and writes bench/results/core.json. Machines are noisy: every figure
is a median (and p99) over many calls, and goals are ratios to the same-run baseline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import faasbox
from faasbox.platform import LocalClient

ROOT = Path(__file__).resolve().parent.parent
NOOP = "def handler(event, context):\n    return event\n"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {"p50_ms": statistics.median(ms), "p99_ms": pct(ms, 0.99), "n": len(ms)}


# -- baselines -----------------------------------------------------------------------


def _echo(conn) -> None:  # type: ignore[no-untyped-def]
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


class PipeEcho:
    """A raw multiprocessing.Pipe round trip between two processes (the baseline)."""

    def __init__(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_echo, args=(child,))
        self.proc.start()
        for _ in range(200):
            self.call()

    def call(self) -> None:
        self.conn.send({"x": 1})
        self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join()


def noop(event: object) -> object:
    return event


def pool_throughput(duration_s: float) -> float:
    """multiprocessing.Pool(2).apply_async of the same no-op, 2 callers in flight."""
    with mp.Pool(2) as pool:
        pool.apply(noop, (0,))
        done = 0
        end = time.perf_counter() + duration_s
        start = time.perf_counter()
        pending = [pool.apply_async(noop, ({"i": 0},)) for _ in range(2)]
        while time.perf_counter() < end:
            pending.pop(0).get()
            done += 1
            pending.append(pool.apply_async(noop, ({"i": done},)))
        for p in pending:
            p.get()
            done += 1
        return done / (time.perf_counter() - start)


# -- faasbox ---------------------------------------------------------------------------


def samples_of(invoke: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        invoke()
        samples.append(time.perf_counter() - t)
    return samples


def warm_latency(invoke: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(200):
        invoke()
    return summary(samples_of(invoke, n))


def interleaved(calls: dict[str, Callable[[], object]], n: int, rounds: int = 5) -> dict:
    """Measure several callables in alternating rounds, so that a drift of the machine
    (CPU placement, frequency, noise) hits each of them alike."""
    for call in calls.values():
        for _ in range(200):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name] += samples_of(call, n // rounds)
    return {name: summary(values) for name, values in samples.items()}


def throughput(invoke: Callable[[], object], callers: int, duration_s: float) -> float:
    counts = [0] * callers
    end = time.perf_counter() + duration_s

    def loop(i: int) -> None:
        while time.perf_counter() < end:
            invoke()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def cold_starts(client: LocalClient, n: int) -> dict[str, dict[str, float]]:
    """Request to result on a fresh sandbox, alternating with `python -c pass`.

    Each round changes the configuration, which retires the warm sandbox, so the next
    call forks and initialises a new one; only that call is timed.
    """
    cold, python = [], []
    for i in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        python.append(time.perf_counter() - t)
        client.update_config("noop", environment={"ROUND": str(i)})
        t = time.perf_counter()
        result = client.invoke("noop", {"i": i})
        cold.append(time.perf_counter() - t)
        assert result.function_error is None
    records = client.records("noop", limit=n)
    assert sum(r.init_duration_ms is not None for r in records) >= n - 1
    return {"cold_start": summary(cold), "python_c_pass": summary(python)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_latency(code: Path, home: Path, n: int, duration_s: float) -> tuple[dict, float]:
    port = free_port()
    env = {**os.environ, "FAASBOX_HOME": str(home), "FAASBOX_PORT": str(port)}
    exe = Path(sys.executable).parent / "faasbox"
    server = subprocess.Popen(
        [str(exe), "up", "--port", str(port), "--home", str(home)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = faasbox.connect(f"http://127.0.0.1:{port}")
        deadline = time.time() + 30
        while True:
            try:
                client.list_functions()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        client.deploy("noop", code, handler="app.handler")
        lat = warm_latency(lambda: client.invoke("noop", {"x": 1}), n)
        clients = [faasbox.connect(f"http://127.0.0.1:{port}") for _ in range(2)]
        idx = iter(range(2))
        local = threading.local()

        def call() -> object:
            if not hasattr(local, "c"):
                local.c = clients[next(idx)]
            return local.c.invoke("noop", {"x": 1})

        tput = throughput(call, 2, duration_s)
        for c in (client, *clients):
            c.close()
        return lat, tput
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    n, cold_n, dur = (1000, 15, 1.5) if args.quick else (5000, 60, 4.0)

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "noop"
        code.mkdir()
        (code / "app.py").write_text(NOOP)

        pipe = PipeEcho()
        client = faasbox.local(home=str(Path(tmp) / "home"), keep_alive_s=600)
        try:
            client.deploy("noop", code, handler="app.handler")
            results.update(interleaved({
                "pipe_round_trip": pipe.call,
                "sdk_warm": lambda: client.invoke("noop", {"x": 1}),
            }, n))
            results["sdk_throughput_2"] = {
                "per_s": throughput(lambda: client.invoke("noop", {"x": 1}), 2, dur)
            }
            results["pool_throughput_2"] = {"per_s": pool_throughput(dur)}
            results.update(cold_starts(client, cold_n))
        finally:
            client.close()
            pipe.close()
        http_lat, http_tput = http_latency(code, Path(tmp) / "http-home", n // 2, dur)
        results["http_warm"] = http_lat
        results["http_throughput_2"] = {"per_s": http_tput}

    pipe = results["pipe_round_trip"]["p50_ms"]
    warm_ratio = results["sdk_warm"]["p50_ms"] / pipe
    cold_ratio = results["cold_start"]["p50_ms"] / results["python_c_pass"]["p50_ms"]
    tput_ratio = results["sdk_throughput_2"]["per_s"] / results["pool_throughput_2"]["per_s"]
    goals = {
        "warm_sdk_p50_over_pipe": {"ratio": warm_ratio, "goal": "<= 5", "met": warm_ratio <= 5},
        "cold_p50_over_python_c_pass": {
            "ratio": cold_ratio, "goal": "<= 0.5", "met": cold_ratio <= 0.5,
        },
        "sdk_throughput_over_pool": {"ratio": tput_ratio, "goal": "(reported)", "met": True},
    }
    rows = [
        ("warm invoke, in-process SDK", "sdk_warm", "raw mp.Pipe round trip", "pipe_round_trip"),
        ("warm invoke, HTTP", "http_warm", "raw mp.Pipe round trip", "pipe_round_trip"),
        ("cold start, request to result", "cold_start", "python -c pass", "python_c_pass"),
    ]
    print(f"{'measure':34} {'p50 ms':>9} {'p99 ms':>9}   {'baseline':26} {'p50 ms':>9} ratio")
    for label, key, base_label, base in rows:
        r, b = results[key], results[base]
        print(
            f"{label:34} {r['p50_ms']:9.3f} {r['p99_ms']:9.3f}   {base_label:26} "
            f"{b['p50_ms']:9.3f} {r['p50_ms'] / b['p50_ms']:5.2f}x"
        )
    for label, key in (("throughput, SDK, 2 callers", "sdk_throughput_2"),
                       ("throughput, HTTP, 2 callers", "http_throughput_2")):
        base = results["pool_throughput_2"]["per_s"]
        print(
            f"{label:34} {results[key]['per_s']:9.0f}/s {'':9}  {'mp.Pool(2).apply_async':26} "
            f"{base:9.0f}/s {results[key]['per_s'] / base:5.2f}x"
        )
    for name, goal in goals.items():
        mark = "met" if goal["met"] else "NOT MET"
        print(f"goal {name}: {goal['ratio']:.2f} (goal {goal['goal']}) {mark}")
    out = ROOT / "bench" / "results" / "core.json"
    out.write_text(json.dumps({"results": results, "goals": goals,
                               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "cpus": os.cpu_count()}, indent=2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
