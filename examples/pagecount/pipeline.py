"""The classic file pipeline, end to end: ``make pagecount`` (or run this file).

    bucket incoming --(notification: ObjectCreated:*)--> queue pages
    queue pages --(trigger: batches of 100, window 1 s)--> function pagecount
    function pagecount --> bucket results: <document>.json each, and _summary.json
    alarm pages-backlog: queue pages holds >= 100 visible messages --> queue pages-alarms

Documents are generated with a known total of pages (``documents.py``), uploaded, and
every result and the total are checked; the sandboxes then scale to zero after their
keep-alive. Without ``--endpoint`` the platform runs inside this process (home in a
temporary folder unless ``--home``); with it, a running ``faasbox up`` does the work.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faasbox
from faasbox.errors import ConflictError, ObjectNotFoundError
from faasbox.sdk import Client
from faasbox.stores.objects import PutItem

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import documents  # noqa: E402 - beside this file, not an installed module

FUNCTION = "pagecount"
INCOMING, RESULTS, QUEUE, ALARM_QUEUE = "incoming", "results", "pages", "pages-alarms"
SUMMARY_KEY = "_summary.json"


def set_up(client: Client, *, batch_size: int = 250, window_s: int = 1,
           max_concurrency: int | None = 2, timeout_s: int = 10, memory_mb: int = 256) -> None:
    """Create (or keep) every part of the pipeline. Safe to run again."""
    for bucket in (INCOMING, RESULTS):
        client.objects.create_bucket(bucket)
    client.queues.create(QUEUE, visibility_timeout_s=max(timeout_s, 10))
    client.queues.create(ALARM_QUEUE)
    client.deploy(FUNCTION, HERE / "function", handler="app.handler", timeout_s=timeout_s,
                  memory_mb=memory_mb, environment={"RESULTS_BUCKET": RESULTS},
                  description="Counts the pages of uploaded documents")
    if not client.objects.list_notifications(INCOMING):
        client.objects.add_notification(INCOMING, f"queue:{QUEUE}",
                                        events=["ObjectCreated:*"])
    if not client.triggers.list(queue=QUEUE):
        client.triggers.create(QUEUE, FUNCTION, batch_size=batch_size,
                               max_batching_window_s=window_s, max_concurrency=max_concurrency)
    client.alarms.put(
        "pages-backlog", namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": QUEUE}, statistic="Maximum", period_s=10,
        evaluation_periods=1, threshold=100,
        comparison_operator="GreaterThanOrEqualToThreshold",
        treat_missing_data="notBreaching", alarm_actions=[f"queue:{ALARM_QUEUE}"],
        description="The pages queue is backing up",
    )


def upload(client: Client, folder: Path, prefix: str = "", batch: int = 100) -> int:
    """Put every file of ``folder`` into the incoming bucket, ``batch`` files per
    ``put_many`` (one commit each with the in-process SDK); returns how many."""
    paths = sorted(folder.iterdir(), key=lambda path: path.name)
    for start in range(0, len(paths), batch):
        client.objects.put_many(INCOMING, [PutItem(prefix + p.name, p.read_bytes())
                                           for p in paths[start:start + batch]])
    return len(paths)


def summary(client: Client) -> dict[str, Any]:
    try:
        _, data = client.objects.get(RESULTS, SUMMARY_KEY)
    except ObjectNotFoundError:
        return {"documents": 0, "pages": 0, "by_document": {}}
    result: dict[str, Any] = json.loads(data)
    return result


def wait_for(client: Client, documents_expected: int, timeout_s: float = 300.0
             ) -> dict[str, Any]:
    """Poll the summary until it counts ``documents_expected`` documents."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = summary(client)
        if current["documents"] >= documents_expected:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"{current['documents']} of {documents_expected} documents "
                               f"counted after {timeout_s:.0f} s")
        time.sleep(0.1)


@functools.cache
def _function_module() -> Any:
    spec = importlib.util.spec_from_file_location("pagecount_app", HERE / "function" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_pages(name: str, data: bytes) -> int:
    """The function's own page counter (function/app.py), run here on the originals."""
    counted: int = _function_module().count_pages(name, data)
    return counted


def check_results(client: Client, folder: Path, prefix: str = "") -> int:
    """Every document has its result with the right page count; returns the total."""
    total = 0
    for path in sorted(folder.iterdir()):
        _, data = client.objects.get(RESULTS, f"{prefix}{path.name}.json")
        result = json.loads(data)
        expected = count_pages(path.name, path.read_bytes())
        if result["pages"] != expected:
            raise AssertionError(f"{path.name}: {result['pages']} pages, expected {expected}")
        total += expected
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--endpoint", help="a running faasbox server (default: in-process)")
    parser.add_argument("--home", help="platform home when in-process (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.endpoint:
            client = faasbox.connect(args.endpoint)
        else:
            client = faasbox.local(str(args.home or Path(tmp) / "home"), keep_alive_s=5)
        with client:
            print("setting up buckets, queues, function (pip install pypdf), trigger, alarm")
            set_up(client)
            folder = Path(tmp) / "documents"
            stamp = time.strftime("%H%M%S")
            expected_pages = documents.generate(folder, args.documents, prefix=f"doc{stamp}")
            before = summary(client)
            started = time.perf_counter()
            upload(client, folder)
            print(f"uploaded {args.documents} documents ({expected_pages} pages)")
            done = wait_for(client, before["documents"] + args.documents)
            elapsed = time.perf_counter() - started
            checked = check_results(client, folder)
            if checked != expected_pages:
                raise AssertionError(f"results total {checked}, expected {expected_pages}")
            print(f"all {args.documents} results checked: {checked} pages, "
                  f"{elapsed:.2f} s from first upload to last result")
            print(f"summary: {done['documents']} documents, {done['pages']} pages in all")
            alarm = client.alarms.get("pages-backlog")
            print(f"alarm pages-backlog is {alarm['state']}; "
                  f"{client.queues.get(ALARM_QUEUE)['visible']} alarm message(s) queued")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConflictError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
