"""The classic file pipeline (examples/pagecount) against a real ``faasbox up``.

1,000 generated documents go into bucket ``incoming`` with the real CLI (``faasbox cp
-r``); each upload notifies queue ``pages``; with the trigger disabled the backlog builds
and sets alarm ``pages-backlog`` off, whose action invokes ``pagecount``, which drains
the queue ten messages at a time, writing one result per document into ``results`` and
a running summary; the sandboxes then scale to zero. A second run of 1,000 documents is cut
by a SIGKILL of the server halfway; after a restart on the same home nothing is lost and
no result is written twice, even when the same notifications are delivered again.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from tests.e2e.conftest import EXAMPLES, Server, start_server, stop_server

from faasbox.events.notifications import event_body
from faasbox.remote import RemoteClient
from faasbox.stores.folder import FolderStore
from faasbox.stores.objects import Change

sys.path.insert(0, str(EXAMPLES / "pagecount"))
import documents
import pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SETTINGS = {"FAASBOX_KEEP_ALIVE_S": "2"}


def wait_until(check, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout_s:.0f} s")
        time.sleep(0.1)


def zygotes_of(pid: int) -> list[int]:
    """The zygote processes ``faasbox up`` (``pid``) runs: they kill their sandboxes when
    it dies."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"zygote.py" in cmdline:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def results_written(home: Path) -> dict[str, tuple[float, str]]:
    """Every result object's (last_modified, etag), read from the store's own index
    while no server runs."""
    store = FolderStore(home / "objects", sweep=False)
    try:
        found: dict[str, tuple[float, str]] = {}
        token = None
        while True:
            page = store.list(pipeline.RESULTS, continuation_token=token)
            found.update({s.key: (s.last_modified, s.etag) for s in page.contents})
            if not page.is_truncated:
                return found
            token = page.next_continuation_token
    finally:
        store.close()


def test_pagecount_pipeline_end_to_end_and_across_a_sigkill(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, env_extra=SETTINGS)
    client = server.client(60)
    try:
        first = _first_run(server, client, tmp_path)
        _second_run_cut_by_sigkill(server, client, tmp_path, home, first)
    finally:
        client.close()


def _first_run(server: Server, client: RemoteClient, tmp_path: Path) -> int:
    # No trigger and, until the backlog is complete, no alarm: the 10-second tick must
    # not start the drain halfway through the upload.
    trigger = pipeline.set_up(client, trigger_enabled=False, alarm=False)
    folder = tmp_path / "run1"
    pages = documents.generate(folder, 1000, seed=1, prefix="first")
    server.cli("cp", "-r", str(folder), "fb://incoming/", timeout=300)
    wait_until(lambda: client.queues.get(pipeline.QUEUE)["visible"] == 1000, 60,
               "1,000 notifications queued")

    pipeline.set_up(client, trigger_enabled=False)  # the same parts, plus the alarm
    client.metrics.collect_now()  # the 10-second tick, now
    client.alarms.evaluate_now()
    assert client.alarms.get(pipeline.ALARM)["state"] == "ALARM"

    summary = pipeline.wait_for(client, 1000, timeout_s=180)
    assert (summary["documents"], summary["pages"]) == (1000, pages)
    assert pipeline.check_results(client, folder) == pages
    assert client.triggers.get(trigger)["enabled"] is False  # the alarm's drain did it all
    drains = [r for r in client.records("pagecount", limit=10_000) if r.status == "success"]
    assert len(drains) == 1 and drains[0].async_request_id  # one async call, from the alarm
    assert client.queues.get(pipeline.QUEUE)["visible"] == 0

    wait_until(lambda: not client.sandboxes(), 60, "scaled to zero")
    client.metrics.collect_now()
    client.alarms.evaluate_now()
    assert client.alarms.get(pipeline.ALARM)["state"] == "OK"
    client.triggers.enable(trigger)
    return pages


def listed(client: RemoteClient, bucket: str) -> dict[str, tuple[float, str]]:
    found: dict[str, tuple[float, str]] = {}
    token = None
    while True:
        page = client.objects.list(bucket, continuation_token=token)
        found.update({o["key"]: (o["last_modified"], o["etag"]) for o in page["contents"]})
        if not page["is_truncated"]:
            return found
        token = page["next_continuation_token"]


def _redelivered_messages_write_nothing_twice(client: RemoteClient, folder: Path,
                                              total_pages: int) -> None:
    """At-least-once delivery hands a batch over again when a crash lands between
    writing its results and deleting its messages; here the same notifications are sent
    again on purpose: no result is written again and the summary counts nobody twice."""
    before = listed(client, pipeline.RESULTS)
    names = sorted(p.name for p in folder.iterdir())[:100]
    for start in range(0, len(names), 10):
        entries = []
        for i, name in enumerate(names[start:start + 10]):
            head = client.objects.head(pipeline.INCOMING, name)
            change = Change(start + i + 1, pipeline.INCOMING, name, "ObjectCreated:Put",
                            head["size"], head["etag"], time.time())
            entries.append({"id": str(i), "body": event_body(change, "redelivered").decode()})
        assert not client.queues.send_batch(pipeline.QUEUE, entries)["failed"]
    wait_until(lambda: (lambda q: q["visible"] + q["in_flight"] == 0)(
        client.queues.get(pipeline.QUEUE)), 60, "the duplicates consumed")
    summary = pipeline.summary(client)
    assert (summary["documents"], summary["pages"]) == (2000, total_pages)
    after = listed(client, pipeline.RESULTS)
    rewritten = [key for key, written in before.items()
                 if key != pipeline.SUMMARY_KEY and after[key] != written]
    assert rewritten == [], f"results written twice: {rewritten[:5]}"


def _second_run_cut_by_sigkill(server: Server, client: RemoteClient, tmp_path: Path,
                               home: Path, first_pages: int) -> None:
    folder = tmp_path / "run2"
    pages = documents.generate(folder, 1000, seed=2, prefix="second")
    # This run is the trigger's: the alarm goes, so no drain runs beside it. Small
    # batches, so the run lasts long enough to be cut in the middle.
    client.alarms.delete(pipeline.ALARM)
    trigger = client.triggers.list(queue=pipeline.QUEUE)[0]["id"]
    client.triggers.update(trigger, batch_size=10, max_batching_window_s=0)
    client.triggers.disable(trigger)
    server.cli("cp", "-r", str(folder), "fb://incoming/", timeout=300)
    wait_until(lambda: client.queues.get(pipeline.QUEUE)["visible"] == 1000, 60,
               "1,000 notifications queued")
    client.triggers.enable(trigger)
    wait_until(lambda: pipeline.summary(client)["documents"] >= 1300, 120,
               "a third of the second run counted")
    zygotes = zygotes_of(server.process.pid)
    assert zygotes
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    # Its sandboxes die with it (their zygote sees its socket close): nothing writes now.
    wait_until(lambda: all(gone(pid) for pid in zygotes), 10, "sandboxes gone")
    before = results_written(home)
    assert 300 <= len(before) - 1 - 1000 < 1000, "the kill did not land mid-run"

    restarted = start_server(home, env_extra=SETTINGS)
    again = restarted.client(60)
    try:
        summary = pipeline.wait_for(again, 2000, timeout_s=240)
        assert (summary["documents"], summary["pages"]) == (2000, first_pages + pages)
        assert pipeline.check_results(again, folder) == pages
        after = results_written(home)
        assert len(after) == 2000 + 1  # one per document, and the summary
        rewritten = [key for key, written in before.items()
                     if key != pipeline.SUMMARY_KEY and after[key] != written]
        assert rewritten == [], f"results written twice: {rewritten[:5]}"
        _redelivered_messages_write_nothing_twice(again, folder, first_pages + pages)
        wait_until(lambda: not again.sandboxes(), 60, "scaled to zero after the restart")
    finally:
        again.close()
        code = stop_server(restarted)
        assert code == 0, restarted.log()
