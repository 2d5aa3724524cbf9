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

import report

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


def bulk_queue_round(client: Client, n: int, queue: str, batch: int = 100) -> float:
    """Messages per second through the bulk calls other services use (``send_many``,
    ``receive_batch``, ``delete_handles``: one transaction each), ``batch`` at a time."""
    service = client.platform.queues  # type: ignore[attr-defined]
    client.queues.create(queue)
    body = "x" * 200
    done = threading.Event()
    received = 0

    def consume() -> None:
        nonlocal received
        while received < n:
            messages = service.receive_batch(queue, batch, wait_s=1.0)
            if messages:
                service.delete_handles(queue, [m.receipt_handle for m in messages])
                received += len(messages)
        done.set()

    consumer = threading.Thread(target=consume)
    started = time.perf_counter()
    consumer.start()
    for start in range(0, n, batch):
        service.send_many(queue, [body] * min(batch, n - start))
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
    ours, bulk, base = [], [], []
    for i in range(rounds):
        ours.append(queue_round(client, n, f"bench-{i}"))
        bulk.append(bulk_queue_round(client, n, f"bulk-{i}"))
        base.append(mp_queue_round(n))
    return {
        "faasbox_per_s": statistics.median(ours),
        "faasbox_bulk_100_per_s": statistics.median(bulk),
        "mp_queue_per_s": statistics.median(base),
        "rounds": rounds,
        "messages": n,
    }


# -- the file pipeline: 5,000 documents ----------------------------------------------


def _count_one(args: tuple[str, str]) -> tuple[str, int]:
    from pipeline import count_pages  # the pagecount function's own counter

    src, out = args
    data = Path(src).read_bytes()
    pages = count_pages(src, data)
    Path(out).write_text(json.dumps({"key": Path(src).name, "etag": "", "size": len(data),
                                     "pages": pages}))
    return Path(src).name, pages


def mp_pipeline_round(folder: Path, out: Path) -> float:
    """The baseline: multiprocessing.Pool(2) reads each document, counts its pages
    (the same function), writes one JSON result per document and then the summary.
    As a plain script would, it imports its libraries before the pool forks."""
    import pipeline
    import pypdf  # noqa: F401

    pipeline.count_pages("warm.txt", b"")  # loads the function's module before the fork

    out.mkdir()
    started = time.perf_counter()
    with mp.Pool(2) as pool:
        counted = dict(pool.map(_count_one, [(str(p), str(out / f"{p.name}.json"))
                                             for p in sorted(folder.iterdir())],
                                chunksize=50))
    (out / "_summary.json").write_text(json.dumps({
        "documents": len(counted), "pages": sum(counted.values()), "by_document": counted}))
    return time.perf_counter() - started


def faasbox_pipeline_round(folder: Path, home: Path, expected_pages: int) -> dict[str, float]:
    """The pagecount pipeline on a fresh in-process platform, once set up and ready (the
    trigger's pre-warmed sandbox idle, as the baseline imports its libraries before it
    starts): upload every document (``put_many``, 100 per commit), then wait until the
    summary counts them all.
    Notification -> queue -> trigger (batches of 250, window 1 s, 2 pollers) ->
    function -> results, as examples/pagecount sets it up."""
    import pipeline

    client = faasbox.local(home=str(home), keep_alive_s=60)
    try:
        pipeline.set_up(client, batch_size=250, window_s=1, max_concurrency=2)
        # documents arrive at a pipeline set up before: its trigger's sandbox is warm
        if not pipeline.wait_ready(client):
            raise AssertionError("the trigger pre-warmed no sandbox of pagecount")
        started = time.perf_counter()
        pipeline.upload(client, folder)
        uploaded = time.perf_counter() - started
        summary = pipeline.wait_for(client, len(list(folder.iterdir())))
        elapsed = time.perf_counter() - started
        if summary["pages"] != expected_pages:
            raise AssertionError(f"pipeline counted {summary['pages']} pages, expected "
                                 f"{expected_pages}")
        return {"seconds": elapsed, "upload_s": uploaded}
    finally:
        client.close()


def file_create_us(folder: Path, n: int = 2000) -> float:
    """What creating a small file costs on this filesystem now (write + rename), in µs:
    the baseline writes one per document, so its time follows this figure."""
    folder.mkdir()
    started = time.perf_counter()
    for i in range(n):
        (folder / f".{i}").write_bytes(b"x" * 200)
        os.rename(folder / f".{i}", folder / str(i))
    return (time.perf_counter() - started) / n * 1e6


def pipeline_bench(tmp: Path, documents_n: int, rounds: int) -> dict[str, Any]:
    sys.path.insert(0, str(PAGECOUNT))
    import documents

    folder = tmp / "documents"
    expected = documents.generate(folder, documents_n)
    ours, base, uploads, creates = [], [], [], []
    for i in range(rounds):
        creates.append(file_create_us(tmp / f"probe-{i}"))
        base.append(mp_pipeline_round(folder, tmp / f"mp-{i}"))
        result = faasbox_pipeline_round(folder, tmp / f"home-{i}", expected)
        ours.append(result["seconds"])
        uploads.append(result["upload_s"])
    return {
        "documents": documents_n,
        "pages": expected,
        "rounds": rounds,
        "faasbox_s": statistics.median(ours),
        "faasbox_upload_s": statistics.median(uploads),
        "mp_pool_s": statistics.median(base),
        "file_create_us": statistics.median(creates),
        "faasbox_all_s": ours,
        "mp_all_s": base,
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
        results["pipeline"] = pipeline_bench(Path(tmp), 1000 if args.quick else 5000,
                                             3 if args.quick else 5)
    q = results["queue"]
    print(f"queue send+receive+delete, batches of {BATCH}: {q['faasbox_per_s']:9.0f}/s   "
          f"multiprocessing.Queue: {q['mp_queue_per_s']:9.0f}/s   "
          f"ratio {q['faasbox_per_s'] / q['mp_queue_per_s']:.3f}")
    print(f"queue, bulk calls, batches of 100: {q['faasbox_bulk_100_per_s']:9.0f}/s "
          "(send_many, receive_batch, delete_handles)")
    p = results["pipeline"]
    ratio = p["faasbox_s"] / p["mp_pool_s"]
    goals = {"pipeline_over_mp_pool": {"ratio": ratio, "goal": "<= 2", "met": ratio <= 2}}
    print(f"pipeline, {p['documents']} documents ({p['pages']} pages), median of "
          f"{p['rounds']}: faasbox {p['faasbox_s']:.2f} s (upload {p['faasbox_upload_s']:.2f} s)"
          f"   multiprocessing.Pool(2): {p['mp_pool_s']:.2f} s   ratio {ratio:.2f}x "
          f"(goal <= 2x: {'met' if ratio <= 2 else 'NOT MET'}); a file create costs "
          f"{p['file_create_us']:.0f} µs here now")
    report.write("triggers", results, goals)


if __name__ == "__main__":
    main()
