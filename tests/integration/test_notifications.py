"""Bucket notifications on a real platform: the S3 event shape, delivery to queues and
functions, filters, and no event lost when the process dies right after a put."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from tests.conftest import write_function

from faasbox.errors import (
    BucketNotFoundError,
    FunctionNotFoundError,
    InvalidParameterError,
    NotificationNotFoundError,
    QueueNotFoundError,
)
from faasbox.events.notifications import event_body, event_record
from faasbox.model import REGION
from faasbox.stores.folder import FolderStore
from faasbox.stores.objects import COPY, DELETE, PUT, Change


def receive_all(client: Any, queue: str, count: int, deadline_s: float = 10.0) -> list[dict]:
    """Receive (and delete) messages until ``count`` arrived; their bodies, parsed."""
    bodies: list[dict] = []
    deadline = time.monotonic() + deadline_s
    while len(bodies) < count and time.monotonic() < deadline:
        for message in client.queues.receive(queue, max_messages=10, wait_s=1):
            bodies.append(json.loads(message.body))
            client.queues.delete_message(queue, message.receipt_handle)
    return bodies


def records(bodies: list[dict]) -> list[dict]:
    return [record for body in bodies for record in body["Records"]]


def test_event_record_has_the_s3_shape() -> None:
    change = Change(seq=42, bucket="docs", key="in/my file+x=1.pdf", event=PUT, size=12,
                    etag="abc123", time=1700000000.1234)
    record = event_record(change, "cfg-1")
    assert record["eventVersion"] == "2.1" and record["eventSource"] == "aws:s3"
    assert record["awsRegion"] == REGION
    assert record["eventTime"] == "2023-11-14T22:13:20.123Z"
    assert record["eventName"] == "ObjectCreated:Put"
    assert set(record) >= {"userIdentity", "requestParameters", "responseElements"}
    s3 = record["s3"]
    assert s3["s3SchemaVersion"] == "1.0" and s3["configurationId"] == "cfg-1"
    assert s3["bucket"]["name"] == "docs" and s3["bucket"]["arn"].endswith(":::docs")
    assert "ownerIdentity" in s3["bucket"]
    assert s3["object"]["key"] == "in/my+file%2Bx%3D1.pdf"
    assert unquote_plus(s3["object"]["key"]) == change.key
    assert (s3["object"]["size"], s3["object"]["eTag"]) == (12, "abc123")
    assert s3["object"]["sequencer"] == "000000000000002A"
    removed = event_record(Change(43, "docs", "k", DELETE, 0, "", 1700000000.0), "c")
    assert "size" not in removed["s3"]["object"] and removed["eventName"] == DELETE
    assert json.loads(event_body(change, "cfg-1")) == {"Records": [record]}


def test_put_copy_delete_reach_a_queue_filtered_by_event_prefix_and_suffix(client) -> None:
    client.queues.create("events")
    client.objects.create_bucket("docs")
    client.objects.put("docs", "before/a.pdf", b"old")  # before the notification: not sent
    created = client.objects.add_notification("docs", "queue:events", prefix="in/",
                                              suffix=".pdf")
    assert created["events"] == ["ObjectCreated:*"]
    removed = client.objects.add_notification("docs", "queue:events",
                                              events=["s3:ObjectRemoved:*"])
    assert [n["id"] for n in client.objects.list_notifications("docs")] == [
        created["id"], removed["id"]]

    put = client.objects.put("docs", "in/report one.pdf", b"%PDF-1.4")
    client.objects.put("docs", "in/notes.txt", b"skip: suffix")
    client.objects.put("docs", "out/x.pdf", b"skip: prefix")
    client.objects.copy("docs", "in/report one.pdf", "docs", "in/copy.pdf")
    client.objects.delete("docs", "out/x.pdf")
    client.objects.delete("docs", "never-there")  # nothing removed: no event

    got = records(receive_all(client, "events", 3))
    assert [(r["eventName"], unquote_plus(r["s3"]["object"]["key"])) for r in got] == [
        (PUT, "in/report one.pdf"), (COPY, "in/copy.pdf"), (DELETE, "out/x.pdf")]
    first = got[0]["s3"]
    assert first["configurationId"] == created["id"]
    assert (first["object"]["size"], first["object"]["eTag"]) == (8, put["etag"])
    assert got[2]["s3"]["configurationId"] == removed["id"]
    assert receive_all(client, "events", 1, deadline_s=1.0) == []


def test_events_invoke_a_function_asynchronously(client, tmp_path: Path) -> None:
    folder = write_function(tmp_path / "seen", """
        from urllib.parse import unquote_plus
        def handler(event, context):
            for record in event["Records"]:
                print("SEEN", record["eventName"], unquote_plus(record["s3"]["object"]["key"]))
    """)
    client.deploy("seen", folder, handler="app.handler")
    client.objects.create_bucket("uploads")
    client.objects.add_notification("uploads", "function:seen")
    client.objects.put("uploads", "photo 1.jpg", b"jpeg")
    deadline = time.monotonic() + 20
    logs = ""
    while "SEEN ObjectCreated:Put photo 1.jpg" not in logs and time.monotonic() < deadline:
        time.sleep(0.1)
        logs = client.logs("seen")
    assert "SEEN ObjectCreated:Put photo 1.jpg" in logs


def test_writes_by_another_process_into_the_folder_store_are_notified(
        make_platform, tmp_path: Path) -> None:
    platform = make_platform()
    client = platform.client()
    client.queues.create("events")
    client.objects.create_bucket("docs")
    client.objects.add_notification("docs", "queue:events")
    script = ("import sys; from faasbox.stores.folder import FolderStore;"
              "s = FolderStore(sys.argv[1], sweep=False); s.put('docs', 'from/sandbox', b'x')")
    done = subprocess.run([sys.executable, "-c", script, str(platform.layout.home / "objects")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    got = records(receive_all(client, "events", 1))
    assert [r["s3"]["object"]["key"] for r in got] == ["from/sandbox"]


_KILLED_AFTER_PUT = """
import os, signal, sys
from faasbox.config import Settings
from faasbox.platform import Platform

platform = Platform(Settings.from_env({}, isolation="process", home=sys.argv[1], keep_alive_s=60.0))
client = platform.client()
if sys.argv[2] == "setup":
    client.queues.create("events")
    client.objects.create_bucket("docs")
    client.objects.add_notification("docs", "queue:events")
    platform.close()
else:
    platform.dispatcher.close()  # the driver never runs: nothing delivered before the kill
    client.objects.put("docs", "survivor.txt", b"written, then the server died")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_put_is_notified_even_if_the_server_dies_right_after_it(
        make_platform, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for step in ("setup", "put"):
        done = subprocess.run([sys.executable, "-c", _KILLED_AFTER_PUT, str(home), step],
                              capture_output=True, text=True, timeout=60)
        expected = -signal.SIGKILL if step == "put" else 0
        assert done.returncode == expected, done.stderr
    client = make_platform(home=home).client()
    assert client.objects.get("docs", "survivor.txt")[1] == b"written, then the server died"
    got = records(receive_all(client, "events", 1))
    assert [r["s3"]["object"]["key"] for r in got] == ["survivor.txt"]


def test_a_deleted_destination_does_not_stall_the_others(client) -> None:
    client.queues.create("gone")
    client.queues.create("kept")
    client.objects.create_bucket("docs")
    client.objects.add_notification("docs", "queue:gone", prefix="gone/")
    client.objects.add_notification("docs", "queue:kept", prefix="kept/")
    client.queues.delete("gone")
    client.objects.put("docs", "gone/k", b"v")  # its delivery fails first
    client.objects.put("docs", "kept/k", b"v")
    got = records(receive_all(client, "kept", 1))
    assert [r["s3"]["object"]["key"] for r in got] == ["kept/k"]


@pytest.mark.parametrize(("first", "second"), [
    ({}, {}),
    ({"prefix": "a/"}, {"prefix": "a/b/"}),
    ({"prefix": "a/b/"}, {"prefix": "a/"}),
    ({"prefix": "a/"}, {}),
    ({"suffix": ".txt"}, {"suffix": "notes.txt"}),
    ({"prefix": "a/", "suffix": ".txt"}, {"prefix": "a/b/"}),
    ({"events": ["ObjectCreated:*"]}, {"events": ["s3:ObjectCreated:Put"]}),
    ({"events": ["ObjectCreated:Copy", "ObjectRemoved:*"]},
     {"events": ["ObjectRemoved:Delete"]}),
])
def test_overlapping_notifications_are_refused_naming_the_other(
        client, first: dict[str, Any], second: dict[str, Any]) -> None:
    client.queues.create("events")
    client.queues.create("other")
    client.objects.create_bucket("docs")
    made = client.objects.add_notification("docs", "queue:events", **first)
    # S3 refuses the pair whatever the destinations: a key written once is one event.
    with pytest.raises(InvalidParameterError,
                       match=f"Configurations overlap: notification {made['id']}"):
        client.objects.add_notification("docs", "queue:other", **second)
    assert [n["id"] for n in client.objects.list_notifications("docs")] == [made["id"]]


@pytest.mark.parametrize(("first", "second"), [
    ({"suffix": ".txt"}, {"suffix": ".pdf"}),
    ({"prefix": "a/"}, {"prefix": "b/"}),
    ({"prefix": "a/b/"}, {"prefix": "a/c/"}),
    ({"events": ["ObjectCreated:*"]}, {"events": ["ObjectRemoved:*"]}),
    ({"events": ["ObjectCreated:Put"]}, {"events": ["ObjectCreated:Copy"]}),
])
def test_notifications_that_no_event_matches_both_are_accepted(
        client, first: dict[str, Any], second: dict[str, Any]) -> None:
    client.queues.create("events")
    client.objects.create_bucket("docs")
    client.objects.add_notification("docs", "queue:events", **first)
    client.objects.add_notification("docs", "queue:events", **second)
    assert len(client.objects.list_notifications("docs")) == 2


def test_same_filters_on_another_bucket_do_not_overlap(client) -> None:
    client.queues.create("events")
    client.objects.create_bucket("docs")
    client.objects.create_bucket("pics")
    client.objects.add_notification("docs", "queue:events")
    client.objects.add_notification("pics", "queue:events")
    client.objects.put("docs", "k", b"v")
    client.objects.put("pics", "k", b"v")
    got = records(receive_all(client, "events", 2))
    assert sorted(r["s3"]["bucket"]["name"] for r in got) == ["docs", "pics"]
    assert receive_all(client, "events", 1, deadline_s=1.0) == []


def test_bad_notifications_are_refused_and_nothing_is_stored(client) -> None:
    client.queues.create("events")
    client.objects.create_bucket("docs")
    cases = [
        ("queue:events", ["ObjectCreated:Post"], InvalidParameterError, "unknown event type"),
        ("topic:x", None, InvalidParameterError, "invalid destination"),
        ("queue:bad name", None, InvalidParameterError, "invalid destination"),
        ("queue:missing", None, QueueNotFoundError, "Queue not found: missing"),
        ("function:missing", None, FunctionNotFoundError, "Function not found: missing"),
        ("queue:events", [], InvalidParameterError, "at least one"),
    ]
    for destination, events, error, message in cases:
        with pytest.raises(error, match=message):
            client.objects.add_notification("docs", destination, events)
    with pytest.raises(BucketNotFoundError):
        client.objects.add_notification("nobucket", "queue:events")
    assert client.objects.list_notifications("docs") == []
    with pytest.raises(NotificationNotFoundError):
        client.objects.remove_notification("docs", "nope")


def test_deleting_a_bucket_forgets_its_notifications(client) -> None:
    client.queues.create("events")
    client.objects.create_bucket("docs")
    made = client.objects.add_notification("docs", "queue:events")
    client.objects.remove_notification("docs", made["id"])
    client.objects.add_notification("docs", "queue:events")
    client.objects.delete_bucket("docs")
    client.objects.create_bucket("docs")
    assert client.objects.list_notifications("docs") == []
    client.objects.put("docs", "k", b"v")
    assert receive_all(client, "events", 1, deadline_s=1.0) == []


def test_many_puts_are_delivered_in_batches(client) -> None:
    client.queues.create("events")
    client.objects.create_bucket("docs")
    client.objects.add_notification("docs", "queue:events")
    for i in range(300):
        client.objects.put("docs", f"doc/{i:04d}", b"x")
    got = records(receive_all(client, "events", 300))
    assert sorted(r["s3"]["object"]["key"] for r in got) == [f"doc/{i:04d}" for i in range(300)]


def test_folder_store_feed_is_trimmed_once_delivered(make_platform) -> None:
    platform = make_platform()
    client = platform.client()
    client.queues.create("events")
    client.objects.create_bucket("docs")
    client.objects.add_notification("docs", "queue:events")
    client.objects.put("docs", "k", b"v")
    assert len(receive_all(client, "events", 1)) == 1
    store = FolderStore(platform.layout.home / "objects", sweep=False)
    deadline = time.monotonic() + 5
    while store.changes(0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.changes(0) == []
    store.close()
