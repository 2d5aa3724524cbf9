"""The classic file pipeline, end to end: ``make pagecount`` (or run this file).

    bucket incoming --(notification: ObjectCreated:*)--> queue pages
    alarm pages-backlog: queue pages holds >= 100 visible messages
        --> invokes pagecount, which drains the queue ten messages at a time
    queue pages --(trigger: batches of 250, window 1 s)--> function pagecount
    function pagecount --> bucket results: <document>.json each, and _summary.json

The trigger is the steady consumer; ``--drain-by-alarm`` keeps it disabled, so the
backlog builds, the alarm goes off and the function drains the queue itself. Documents
are generated with a known total of pages (``documents.py``), uploaded, and every
result and the total are checked; then the sandboxes scale to zero after their
keep-alive (checked too). Without ``--endpoint`` a ``faasbox up`` is started on a free
port with a temporary home (``--home`` to keep it), and stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faasbox
from faasbox.errors import ConflictError, ObjectNotFoundError, ServerUnavailableError
from faasbox.sdk import Client
from faasbox.stores.objects import PutItem

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import documents  # noqa: E402 - beside this file, not an installed module

FUNCTION = "pagecount"
INCOMING, RESULTS, QUEUE, ALARM = "incoming", "results", "pages", "pages-backlog"
SUMMARY_KEY = "_summary.json"


def set_up(client: Client, *, batch_size: int = 250, window_s: int = 1,
           max_concurrency: int | None = 2, timeout_s: int = 10, memory_mb: int = 256,
           trigger_enabled: bool = True, alarm: bool = True) -> str:
    """Create (or keep) every part of the pipeline; returns the trigger's id. Safe to
    run again. ``alarm=False`` leaves the backlog alarm out (its drain calls the queue
    API over HTTP: it needs a server, not an in-process platform)."""
    for bucket in (INCOMING, RESULTS):
        client.objects.create_bucket(bucket)
    client.queues.create(QUEUE, visibility_timeout_s=max(timeout_s, 10))
    client.deploy(FUNCTION, HERE / "function", handler="app.handler", timeout_s=timeout_s,
                  memory_mb=memory_mb,
                  environment={"RESULTS_BUCKET": RESULTS, "PAGES_QUEUE": QUEUE},
                  description="Counts the pages of uploaded documents")
    if not client.objects.list_notifications(INCOMING):
        client.objects.add_notification(INCOMING, f"queue:{QUEUE}",
                                        events=["ObjectCreated:*"])
    found = client.triggers.list(queue=QUEUE)
    trigger = found[0] if found else client.triggers.create(
        QUEUE, FUNCTION, batch_size=batch_size, max_batching_window_s=window_s,
        max_concurrency=max_concurrency, report_batch_item_failures=True,
        enabled=trigger_enabled)
    if alarm:
        client.alarms.put(
            ALARM, namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": QUEUE}, statistic="Maximum", period_s=10,
            evaluation_periods=1, threshold=100,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching", alarm_actions=[f"function:{FUNCTION}"],
            description="The pages queue is backing up: drain it",
        )
    trigger_id: str = trigger["id"]
    return trigger_id


def wait_ready(client: Client, timeout_s: float = 30.0) -> bool:
    """Wait until the trigger's pre-warmed sandbox of the function is up and idle (its
    init, pypdf's import included, done), as it is for documents arriving at a pipeline
    set up earlier; False if none came in ``timeout_s`` (the first batch cold-starts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(sb["function"] == FUNCTION and sb["state"] == "idle"
               for sb in client.sandboxes()):
            return True
        time.sleep(0.02)
    return False


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


def counted(client: Client) -> int:
    """Documents the summary counts so far, from its metadata (a HEAD, not a read)."""
    try:
        info = client.objects.head(RESULTS, SUMMARY_KEY)
    except ObjectNotFoundError:
        return 0
    return int(info["metadata"].get("documents", 0))


def wait_for(client: Client, documents_expected: int, timeout_s: float = 300.0,
             interval_s: float = 0.02) -> dict[str, Any]:
    """Poll the summary (a HEAD every ``interval_s``) until it counts
    ``documents_expected`` documents; returns it."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = counted(client)
        if done >= documents_expected:
            return summary(client)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {documents_expected} documents counted after "
                               f"{timeout_s:.0f} s")
        time.sleep(interval_s)


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


def wait_until_scaled_to_zero(client: Client, timeout_s: float = 120.0) -> float:
    """Seconds until no sandbox is left alive (keep-alive ends, they are retired)."""
    started = time.monotonic()
    while client.sandboxes():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"sandboxes still alive after {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


@contextlib.contextmanager
def server(home: Path, keep_alive_s: int = 5, own_credentials: bool = False
           ) -> Iterator[str]:
    """``faasbox up`` on a free loopback port for the length of the block; its URL. Its
    admin key is in ``home``: clients find it with FAASBOX_HOME set to it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FAASBOX_KEEP_ALIVE_S": str(keep_alive_s), "FAASBOX_ENDPOINT": url}
    if own_credentials:  # a throwaway home: keep its admin key out of ~/.faasbox
        env["FAASBOX_CREDENTIALS_FILE"] = str(home.parent / "credentials")
    process = subprocess.Popen(
        [sys.executable, "-m", "faasbox.cli.main", "up", "--port", str(port), "--home",
         str(home)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (home / "credentials").exists():  # written once it serves
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerUnavailableError(f"faasbox up did not start: {process.stderr}")
            time.sleep(0.05)
        os.environ["FAASBOX_HOME"] = str(home)  # where this script's clients find the key
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def run(client: Client, tmp: Path, documents_n: int, drain_by_alarm: bool) -> None:
    print("setting up buckets, queue, function (pip install pypdf), trigger, alarm")
    trigger = set_up(client)
    (client.triggers.disable if drain_by_alarm else client.triggers.enable)(trigger)
    folder = tmp / "documents"
    stamp = time.strftime("%H%M%S")
    expected_pages = documents.generate(folder, documents_n, prefix=f"doc{stamp}-")
    before = summary(client)
    started = time.perf_counter()
    upload(client, folder)
    print(f"uploaded {documents_n} documents ({expected_pages} pages)")
    if drain_by_alarm:
        print("trigger disabled: waiting for the backlog alarm (sampled every 10 s)")
    done = wait_for(client, before["documents"] + documents_n)
    elapsed = time.perf_counter() - started
    checked = check_results(client, folder)
    if checked != expected_pages:
        raise AssertionError(f"results total {checked}, expected {expected_pages}")
    print(f"all {documents_n} results checked: {checked} pages, "
          f"{elapsed:.2f} s from first upload to last result")
    print(f"summary: {done['documents']} documents, {done['pages']} pages in all")
    history = [h for h in client.alarms.history(ALARM)
               if h["type"] == "StateUpdate" and h["data"]["new_state"] == "ALARM"]
    print(f"alarm {ALARM} is {client.alarms.get(ALARM)['state']}; it went off "
          f"{len(history)} time(s)")
    print(f"scaled to zero {wait_until_scaled_to_zero(client):.1f} s later")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--endpoint", help="a running faasbox server (default: start one)")
    parser.add_argument("--home", help="home of the server started (default: temporary)")
    parser.add_argument("--drain-by-alarm", action="store_true",
                        help="keep the trigger disabled: the backlog alarm drains the queue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = args.endpoint or stack.enter_context(
            server(Path(args.home or Path(tmp) / "home"), own_credentials=not args.home))
        with faasbox.connect(url) as client:
            run(client, Path(tmp), args.documents, args.drain_by_alarm)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConflictError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
