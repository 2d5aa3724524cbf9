"""faasbox triggers benchmark: queue throughput and the file pipeline, each beside
multiprocessing doing the same work in the same run.

    make bench            # runs bench/run.py, then this
    .venv/bin/python bench/triggers.py [--quick]

Writes bench/results/triggers.json. Figures are medians over rounds; goals are ratios to
the same-run baseline (these machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import faasbox
from faasbox.sdk import Client

ROOT = Path(__file__).resolve().parent.parent
PAGECOUNT = ROOT / "examples" / "pagecount"
BATCH = 10


# -- queue throughput: send + receive + delete, batched -------------------------------


def queue_round(client: Client, n: int, queue: str) -> float:
    """Messages per second through ``queue``: one thread sends batches of 10, another
    receives batches of 10 and deletes them."""
    client.queues.create(queue)
    body = "x" * 200
    done = threading.Event()
    received = 0

    def consume() -> None:
        nonlocal received
        while received < n:
            messages = client.queues.receive(queue, max_messages=BATCH, wait_s=1)
            if messages:
                client.queues.delete_batch(queue, [
                    {"id": str(i), "receipt_handle": m.receipt_handle}
                    for i, m in enumerate(messages)
                ])
                received += len(messages)
        done.set()

    consumer = threading.Thread(target=consume)
    started = time.perf_counter()
    consumer.start()
    for start in range(0, n, BATCH):
        client.queues.send_batch(queue, [
            {"id": str(i), "body": body} for i in range(start, min(n, start + BATCH))
        ])
    done.wait()
    elapsed = time.perf_counter() - started
    consumer.join()
    client.queues.delete(queue)
    return n / elapsed


def _mp_consumer(q: Any, n: int) -> None:
    got = 0
    while got < n:
        got += len(q.get())


def mp_queue_round(n: int) -> float:
    """The baseline: a producer and a consumer process passing batches of 10 through a
    multiprocessing.Queue (no durability, no visibility, nothing to delete)."""
    q: Any = mp.Queue()
    consumer = mp.Process(target=_mp_consumer, args=(q, n))
    consumer.start()
    body = "x" * 200
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        q.put([body] * min(BATCH, n - start))
    consumer.join()
    return n / (time.perf_counter() - started)


def queue_throughput(client: Client, n: int, rounds: int) -> dict[str, Any]:
    ours, base = [], []
    for i in range(rounds):
        ours.append(queue_round(client, n, f"bench-{i}"))
        base.append(mp_queue_round(n))
    return {
        "faasbox_per_s": statistics.median(ours),
        "mp_queue_per_s": statistics.median(base),
        "rounds": rounds,
        "messages": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer messages and documents")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        client = faasbox.local(home=str(Path(tmp) / "home"), keep_alive_s=600)
        try:
            results["queue"] = queue_throughput(
                client, 2000 if args.quick else 10_000, 3 if args.quick else 5
            )
        finally:
            client.close()
    q = results["queue"]
    print(f"queue send+receive+delete, batches of {BATCH}: {q['faasbox_per_s']:9.0f}/s   "
          f"multiprocessing.Queue: {q['mp_queue_per_s']:9.0f}/s   "
          f"ratio {q['faasbox_per_s'] / q['mp_queue_per_s']:.3f}")
    out = ROOT / "bench" / "results" / "triggers.json"
    out.write_text(json.dumps({"results": results,
                               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "cpus": os.cpu_count(), "python": sys.version.split()[0]},
                              indent=2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
