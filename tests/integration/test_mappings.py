"""Queue -> function mappings on a real platform: real queues in SQLite, real sandboxes.

Handlers print what they got; the tests read it back from the framed logs, so every
count below is what the function really saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write_function

from faasbox.api.queues import Message
from faasbox.config import Limits
from faasbox.errors import (
    AliasNotFoundError,
    ConflictError,
    FunctionNotFoundError,
    InvalidParameterError,
    QueueNotFoundError,
    TriggerNotFoundError,
)
from faasbox.events.mappings import _chunks, batch_item_failures
from faasbox.model import Status

#: Prints one line per record: GOT <body> <receive count> <message id>.
RECORDER = """
    def handler(event, context):
        for r in event["Records"]:
            print("GOT", r["body"], r["attributes"]["ApproximateReceiveCount"], r["messageId"])
"""


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def got(client, function: str = "fn") -> list[tuple[str, int, str]]:
    """(body, receive count, message id) of every record the function was given."""
    lines = client.logs(function, limit=10_000).splitlines()
    return [(parts[1], int(parts[2]), parts[3])
            for parts in (line.split() for line in lines if line.startswith("GOT "))]


def invocations(client, function: str = "fn") -> list[int]:
    """Records per invocation, from the GOT lines grouped by request."""
    sizes: list[int] = []
    for block in client.logs(function, limit=10_000).split("START RequestId:")[1:]:
        sizes.append(sum(line.startswith("GOT ") for line in block.splitlines()))
    return sizes


def empty(client, queue: str) -> bool:
    info = client.queues.get(queue)
    return info["visible"] + info["in_flight"] + info["delayed"] == 0


def deploy(client, tmp_path: Path, source: str = RECORDER, name: str = "fn", **config):
    folder = write_function(tmp_path / name, source)
    return client.deploy(name, folder, handler="app.handler", **config)


def warm(client, function: str = "fn") -> None:
    """Start the function's sandbox with an empty batch, so that the batches under test
    meet a warm sandbox: a cold start on a busy machine can outlast a short visibility
    timeout, and the batch would come back before its answer was acted on."""
    assert not client.invoke(function, {"Records": []}).function_error


def send(client, queue: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [{"id": f"e{i}", "body": body}
                   for i, body in enumerate(bodies[start:start + 10])]
        assert not client.queues.send_batch(queue, entries)["failed"]


def test_every_message_is_processed_once_in_batches_of_the_batch_size(client, tmp_path) -> None:
    deploy(client, tmp_path)
    client.queues.create("jobs", visibility_timeout_s=30)
    trigger = client.triggers.create("jobs", "fn", enabled=False)
    bodies = [f"m{i}" for i in range(25)]
    send(client, "jobs", bodies)
    client.triggers.enable(trigger["id"])
    wait_for(lambda: len(got(client)) >= 25 and empty(client, "jobs"), "25 messages")
    assert Counter(body for body, _, _ in got(client)) == Counter(bodies)
    assert sorted(invocations(client)) == [5, 10, 10]
    assert {count for _, count, _ in got(client)} == {1}
    assert client.triggers.get(trigger["id"])["last_processing_result"] == "OK"


def test_event_has_the_sqs_shape_and_a_qualified_target_runs_that_version(
    client, tmp_path
) -> None:
    deploy(client, tmp_path, """
        import json
        def handler(event, context):
            print("EVENT", json.dumps(event), context.function_version)
    """)
    client.publish("fn")
    client.set_alias("fn", "live", "1")
    client.queues.create("shapes", visibility_timeout_s=10)
    trigger = client.triggers.create("shapes", "fn:live")
    assert trigger["function"] == "fn:live"
    assert trigger["function_arn"].endswith(":function:fn:live")
    sent = client.queues.send("shapes", "hello", message_attributes={
        "color": {"DataType": "String", "StringValue": "blue"}})
    line = wait_for(lambda: [ln for ln in client.logs("fn").splitlines()
                             if ln.startswith("EVENT ")], "the event")[0]
    payload, version = line[len("EVENT "):].rsplit(" ", 1)
    assert version == "1"
    (record,) = json.loads(payload)["Records"]
    assert record["messageId"] == sent["message_id"]
    assert record["body"] == "hello" and record["md5OfBody"] == sent["md5_of_body"]
    assert (record["eventSource"], record["awsRegion"]) == ("aws:sqs", "local")
    assert record["eventSourceARN"] == client.queues.get("shapes")["arn"]
    assert record["eventSourceARN"] == trigger["event_source_arn"]
    assert record["receiptHandle"]
    assert set(record["attributes"]) == {"ApproximateReceiveCount", "SentTimestamp",
                                         "SenderId", "ApproximateFirstReceiveTimestamp"}
    assert record["messageAttributes"] == {"color": {
        "dataType": "String", "stringValue": "blue", "stringListValues": [],
        "binaryListValues": []}}
    wait_for(lambda: empty(client, "shapes"), "the message deleted")


def test_function_error_brings_the_batch_back_until_it_goes_to_the_dlq(
    client, tmp_path
) -> None:
    deploy(client, tmp_path, """
        def handler(event, context):
            for r in event["Records"]:
                print("GOT", r["body"], r["attributes"]["ApproximateReceiveCount"],
                      r["messageId"])
            raise RuntimeError("cannot handle it")
    """, timeout_s=1)
    client.queues.create("dead")
    client.queues.create("work", visibility_timeout_s=1, dead_letter_queue="dead",
                         max_receive_count=2)
    trigger = client.triggers.create("work", "fn")
    sent = client.queues.send("work", "poison")
    wait_for(lambda: client.queues.get("dead")["visible"] == 1, "the dead-letter move")
    assert [(body, count) for body, count, _ in got(client)] == [("poison", 1), ("poison", 2)]
    assert [r.status for r in client.records("fn")] == [Status.ERROR, Status.ERROR]
    assert empty(client, "work")
    (moved,) = client.queues.receive("dead")
    assert moved.message_id == sent["message_id"]
    assert client.triggers.get(trigger["id"])["last_processing_result"].startswith("PROBLEM")


FAIL_BAD_ONCE = """
    def handler(event, context):
        failures = []
        for r in event["Records"]:
            count = r["attributes"]["ApproximateReceiveCount"]
            print("GOT", r["body"], count, r["messageId"])
            if r["body"].startswith("bad") and count == "1":
                failures.append({"itemIdentifier": r["messageId"]})
        return {"batchItemFailures": failures}
"""


def test_batch_item_failures_delete_only_the_successes(client, tmp_path) -> None:
    # 3 s: far more than a warm invocation takes, so only a named failure comes back
    deploy(client, tmp_path, FAIL_BAD_ONCE, timeout_s=3)
    warm(client)
    client.queues.create("items", visibility_timeout_s=3)
    trigger = client.triggers.create("items", "fn", enabled=False,
                                     report_batch_item_failures=True)
    assert trigger["report_batch_item_failures"] is True
    send(client, "items", ["good1", "bad1", "good2", "bad2", "good3"])
    client.triggers.enable(trigger["id"])
    wait_for(lambda: len(got(client)) >= 7 and empty(client, "items"), "the retried failures")
    seen = Counter((body, count) for body, count, _ in got(client))
    assert seen == Counter({("good1", 1): 1, ("good2", 1): 1, ("good3", 1): 1,
                            ("bad1", 1): 1, ("bad2", 1): 1, ("bad1", 2): 1, ("bad2", 2): 1})
    assert invocations(client) == [0, 5, 2]  # the warm-up, the batch, the failures again


def test_malformed_batch_item_failures_fail_the_whole_batch(client, tmp_path) -> None:
    deploy(client, tmp_path, """
        def handler(event, context):
            records = event["Records"]
            for r in records:
                print("GOT", r["body"], r["attributes"]["ApproximateReceiveCount"],
                      r["messageId"])
            if records and records[0]["attributes"]["ApproximateReceiveCount"] == "1":
                return {"batchItemFailures": [{"itemIdentifier": "no-such-message"}]}
    """, timeout_s=3)
    warm(client)
    client.queues.create("items", visibility_timeout_s=3)
    trigger = client.triggers.create("items", "fn", enabled=False,
                                     report_batch_item_failures=True)
    send(client, "items", ["a", "b", "c"])
    client.triggers.enable(trigger["id"])
    wait_for(lambda: len(got(client)) >= 6 and empty(client, "items"), "the whole batch again")
    assert Counter((body, count) for body, count, _ in got(client)) == Counter(
        {(body, count): 1 for body in "abc" for count in (1, 2)})


def test_batch_item_failures_are_ignored_unless_switched_on(client, tmp_path) -> None:
    # Lambda's default: without FunctionResponseTypes=["ReportBatchItemFailures"] a
    # successful invocation deletes the whole batch, whatever the function answered.
    deploy(client, tmp_path, FAIL_BAD_ONCE, timeout_s=3)
    warm(client)
    client.queues.create("items", visibility_timeout_s=3)
    trigger = client.triggers.create("items", "fn", enabled=False)
    assert trigger["report_batch_item_failures"] is False
    send(client, "items", ["good1", "bad1"])
    client.triggers.enable(trigger["id"])
    wait_for(lambda: empty(client, "items"), "the batch deleted")
    assert sorted((body, count) for body, count, _ in got(client)) == [("bad1", 1), ("good1", 1)]

    # Switched on later, the next batch's named failure comes back.
    client.triggers.update(trigger["id"], report_batch_item_failures=True)
    send(client, "items", ["bad2"])
    wait_for(lambda: ("bad2", 2) in {(b, c) for b, c, _ in got(client)}
             and empty(client, "items"), "the reported failure retried")
    assert sorted((body, count) for body, count, _ in got(client)) == [
        ("bad1", 1), ("bad2", 1), ("bad2", 2), ("good1", 1)]


def test_batching_window_gathers_messages_sent_over_time(client, tmp_path) -> None:
    deploy(client, tmp_path)
    client.queues.create("trickle", visibility_timeout_s=30)
    client.triggers.create("trickle", "fn", batch_size=100, max_batching_window_s=3)
    for i in range(5):
        client.queues.send("trickle", f"t{i}")
        time.sleep(0.1)
    wait_for(lambda: len(got(client)) >= 5 and empty(client, "trickle"), "the gathered batch")
    assert invocations(client) == [5]


def test_a_batch_over_the_payload_limit_is_cut_into_invocations(
    make_platform, tmp_path
) -> None:
    client = make_platform(limits=Limits(sync_payload_bytes=64 * 1024)).client()
    deploy(client, tmp_path, """
        def handler(event, context):
            for r in event["Records"]:
                print("GOT", r["body"][:4], r["attributes"]["ApproximateReceiveCount"],
                      r["messageId"])
    """)
    client.queues.create("big", visibility_timeout_s=30)
    trigger = client.triggers.create("big", "fn", batch_size=100, max_batching_window_s=1,
                                     enabled=False)
    bodies = [f"b{i:03d}" + "x" * 20_000 for i in range(8)]
    send(client, "big", bodies)
    client.triggers.enable(trigger["id"])
    wait_for(lambda: len(got(client)) >= 8 and empty(client, "big"), "every big message")
    assert sorted(body for body, _, _ in got(client)) == [b[:4] for b in bodies]
    sizes = invocations(client)
    assert len(sizes) >= 3 and max(sizes) <= 3  # 3 x 20 KB fit in 64 KB, 4 do not
    assert all(r.status is Status.SUCCESS for r in client.records("fn"))


#: Prints its messages and its span. MARKS is a folder shared with the test: each
#: invocation leaves a file there when it starts. The second invocation waits until a
#: third has started (10 s at most): a single poller cannot start the third before the
#: second ends, while scaling pollers overlap them however slowly a new sandbox starts.
#: (Two that start at once both see three files: they overlap anyway.) Asked to
#: ``hold`` (a direct call), it keeps its sandbox -- and the function's one reserved
#: slot -- until the test writes ``release``.
SPANS = """
    import os, time
    def handler(event, context):
        start = time.time()
        marks = os.environ["MARKS"]
        if event.get("hold"):
            open(os.path.join(marks, "held"), "w").close()
            while not os.path.exists(os.path.join(marks, "release")) and (
                    time.time() - start < 20):
                time.sleep(0.02)
        else:
            open(os.path.join(marks, context.aws_request_id), "w").close()
            if len(os.listdir(marks)) == 2:
                while len(os.listdir(marks)) < 3 and time.time() - start < 10:
                    time.sleep(0.02)
            time.sleep(0.2)
        for r in event.get("Records", []):
            print("GOT", r["body"], r["attributes"]["ApproximateReceiveCount"],
                  r["messageId"])
        print("SPAN", start, time.time())
"""


def deploy_spans(client, tmp_path: Path, **config) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir()
    deploy(client, tmp_path, SPANS, timeout_s=25, environment={"MARKS": str(marks)},
           **config)
    return marks


def most_at_once(client) -> int:
    spans = [tuple(map(float, line.split()[1:3]))
             for line in client.logs("fn", limit=10_000).splitlines()
             if line.startswith("SPAN ")]
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_pollers_scale_with_the_backlog_up_to_max_concurrency(client, tmp_path) -> None:
    deploy_spans(client, tmp_path)
    client.queues.create("backlog", visibility_timeout_s=30)
    trigger = client.triggers.create("backlog", "fn", batch_size=1, max_concurrency=3,
                                     enabled=False)
    bodies = [f"s{i}" for i in range(12)]
    send(client, "backlog", bodies)
    client.triggers.enable(trigger["id"])
    pollers: list[int] = []

    def all_seen() -> bool:
        pollers.append(client.triggers.get(trigger["id"])["pollers"])
        return len(got(client)) >= 12

    wait_for(all_seen, "12 messages", timeout_s=60)
    wait_for(lambda: empty(client, "backlog"), "the backlog drained")
    assert Counter(body for body, _, _ in got(client)) == Counter(bodies)
    assert {count for _, count, _ in got(client)} == {1}
    assert 1 < most_at_once(client) <= 3
    assert max(pollers) <= 3


def test_throttled_batches_are_given_back_and_finish_later(client, tmp_path) -> None:
    marks = deploy_spans(client, tmp_path, reserved_concurrency=1)
    client.queues.create("narrow", visibility_timeout_s=30)
    trigger = client.triggers.create("narrow", "fn", batch_size=1, max_concurrency=3,
                                     enabled=False)
    bodies = [f"n{i}" for i in range(6)]
    send(client, "narrow", bodies)
    # A direct call takes the one reserved slot and keeps it until released: every
    # batch the trigger tries meanwhile is throttled.
    held: list[Any] = []
    holder = threading.Thread(target=lambda: held.append(client.invoke("fn", {"hold": 1})))
    holder.start()
    try:
        wait_for(lambda: (marks / "held").exists(), "the slot taken")
        client.triggers.enable(trigger["id"])
        wait_for(lambda: any(r.status is Status.THROTTLED for r in client.records("fn")),
                 "a throttled batch")
        wait_for(lambda: client.triggers.get(trigger["id"])["last_processing_result"]
                 == "PROBLEM: Function call throttled", "the throttle reported")
        assert got(client) == []
    finally:
        (marks / "release").touch()
        holder.join()
    assert not held[0].function_error
    wait_for(lambda: len(got(client)) >= 6 and empty(client, "narrow"), "every message",
             timeout_s=60)
    assert Counter(body for body, _, _ in got(client)) == Counter(bodies)
    assert most_at_once(client) == 1  # the held call included
    statuses = Counter(r.status for r in client.records("fn", limit=1000))
    assert statuses[Status.SUCCESS] == 7 and statuses[Status.THROTTLED] >= 1
    assert set(statuses) == {Status.SUCCESS, Status.THROTTLED}
    wait_for(lambda: client.triggers.get(trigger["id"])["last_processing_result"] == "OK",
             "the trigger reporting OK")


def test_invalid_triggers_are_refused_and_change_nothing(client, tmp_path) -> None:
    deploy(client, tmp_path, timeout_s=10)
    client.queues.create("short", visibility_timeout_s=5)
    client.queues.create("long", visibility_timeout_s=60)
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"queue": "nope", "function": "fn"}, QueueNotFoundError, "Queue not found: nope"),
        ({"queue": "long", "function": "ghost"}, FunctionNotFoundError, "ghost"),
        ({"queue": "long", "function": "fn:nope"}, AliasNotFoundError, "fn:nope"),
        ({"queue": "long", "function": "bad name"}, InvalidParameterError, "function name"),
        ({"queue": "short", "function": "fn"}, InvalidParameterError, "(5 s)"),
        ({"queue": "long", "function": "fn", "batch_size": 0}, InvalidParameterError,
         "batch_size=0"),
        ({"queue": "long", "function": "fn", "batch_size": 10_001, "max_batching_window_s": 5},
         InvalidParameterError, "batch_size=10001"),
        ({"queue": "long", "function": "fn", "batch_size": True}, InvalidParameterError,
         "batch_size=True"),
        ({"queue": "long", "function": "fn", "batch_size": 11}, InvalidParameterError,
         "max_batching_window_s to at least 1"),
        ({"queue": "long", "function": "fn", "max_batching_window_s": 301},
         InvalidParameterError, "max_batching_window_s=301"),
        ({"queue": "long", "function": "fn", "max_batching_window_s": -1},
         InvalidParameterError, "max_batching_window_s=-1"),
        ({"queue": "long", "function": "fn", "max_concurrency": 1}, InvalidParameterError,
         "max_concurrency=1 is out of range 2-1000"),
        ({"queue": "long", "function": "fn", "max_concurrency": 1001}, InvalidParameterError,
         "max_concurrency=1001"),
        ({"queue": "long", "function": "fn", "enabled": "yes"}, InvalidParameterError,
         "enabled='yes'"),
    ]
    for kwargs, error, text in cases:
        with pytest.raises(error) as raised:
            client.triggers.create(**kwargs)
        assert text in str(raised.value), (kwargs, str(raised.value))
    with pytest.raises(InvalidParameterError) as short:
        client.triggers.create("short", "fn")
    assert "(5 s)" in str(short.value) and "(10 s)" in str(short.value)
    assert client.triggers.list() == []

    trigger = client.triggers.create("long", "fn", batch_size=20, max_batching_window_s=2)
    with pytest.raises(ConflictError, match="already triggers fn"):
        client.triggers.create("long", "fn")
    for changes in ({"batch_size": 20_000}, {"max_batching_window_s": 0},
                    {"max_concurrency": 1}, {"enabled": 1}, {"queue": "short"}):
        with pytest.raises(InvalidParameterError):
            client.triggers.update(trigger["id"], **changes)
    assert client.triggers.list() == [client.triggers.get(trigger["id"])]
    unchanged = client.triggers.get(trigger["id"])
    assert (unchanged["batch_size"], unchanged["max_batching_window_s"],
            unchanged["max_concurrency"]) == (20, 2, None)
    assert unchanged["updated_at"] == trigger["updated_at"]
    for call in (client.triggers.get, client.triggers.enable, client.triggers.disable,
                 client.triggers.delete):
        with pytest.raises(TriggerNotFoundError, match="Trigger not found: missing"):
            call("missing")


def test_update_changes_settings_and_list_filters(client, tmp_path) -> None:
    deploy(client, tmp_path)
    deploy(client, tmp_path, name="other")
    for name in ("a", "b"):
        client.queues.create(name, visibility_timeout_s=30)
    first = client.triggers.create("a", "fn")
    second = client.triggers.create("b", "fn", enabled=False)
    third = client.triggers.create("a", "other", max_concurrency=5)
    assert [t["id"] for t in client.triggers.list()] == [first["id"], second["id"], third["id"]]
    assert [t["id"] for t in client.triggers.list(queue="a")] == [first["id"], third["id"]]
    assert [t["id"] for t in client.triggers.list(function="fn")] == [first["id"], second["id"]]
    assert [t["id"] for t in client.triggers.list(queue="a", function="other")] == [third["id"]]
    changed = client.triggers.update(third["id"], batch_size=50, max_batching_window_s=4,
                                     max_concurrency=None, report_batch_item_failures=False)
    assert (changed["batch_size"], changed["max_batching_window_s"],
            changed["max_concurrency"], changed["report_batch_item_failures"]) == (
        50, 4, None, False)
    assert changed["updated_at"] >= third["updated_at"]
    assert client.triggers.get(third["id"]) | {"pollers": 0} == changed | {"pollers": 0}
    client.triggers.delete(second["id"])
    assert [t["id"] for t in client.triggers.list(function="fn")] == [first["id"]]


def test_disable_stops_processing_and_enable_resumes(client, tmp_path) -> None:
    deploy(client, tmp_path)
    client.queues.create("toggled", visibility_timeout_s=30)
    trigger = client.triggers.create("toggled", "fn")
    client.queues.send("toggled", "before")
    wait_for(lambda: got(client), "the first message")
    disabled = client.triggers.disable(trigger["id"])
    assert (disabled["enabled"], disabled["state"]) == (False, "Disabled")
    wait_for(lambda: client.triggers.get(trigger["id"])["pollers"] == 0, "pollers gone")
    send(client, "toggled", ["x1", "x2", "x3"])
    time.sleep(1.0)  # quiet period: a running poller would have taken them by now
    assert client.queues.get("toggled")["visible"] == 3
    assert [body for body, _, _ in got(client)] == ["before"]
    assert client.triggers.enable(trigger["id"])["state"] == "Enabled"
    wait_for(lambda: len(got(client)) >= 4 and empty(client, "toggled"), "the resumed batch")
    assert sorted(body for body, _, _ in got(client)) == ["before", "x1", "x2", "x3"]


def test_delete_stops_polling_and_keeps_the_queue(client, tmp_path) -> None:
    deploy(client, tmp_path)
    client.queues.create("kept", visibility_timeout_s=30)
    trigger = client.triggers.create("kept", "fn")
    client.triggers.delete(trigger["id"])
    client.queues.send("kept", "stays")
    time.sleep(1.0)  # quiet period, as above
    assert client.queues.get("kept")["visible"] == 1
    assert got(client) == [] and client.triggers.list() == []


def test_enabled_mappings_resume_after_a_restart(make_platform, tmp_path) -> None:
    first = make_platform()
    client = first.client()
    deploy(client, tmp_path)
    client.queues.create("on", visibility_timeout_s=30)
    client.queues.create("off", visibility_timeout_s=30)
    on = client.triggers.create("on", "fn")
    off = client.triggers.create("off", "fn", enabled=False)
    first.close()

    client = make_platform().client()
    send(client, "on", ["r1", "r2"])
    send(client, "off", ["w1"])
    wait_for(lambda: len(got(client)) >= 2 and empty(client, "on"), "the resumed mapping")
    assert sorted(body for body, _, _ in got(client)) == ["r1", "r2"]
    assert client.queues.get("off")["visible"] == 1
    assert client.triggers.get(on["id"])["state"] == "Enabled"
    assert client.triggers.get(off["id"])["state"] == "Disabled"


def test_batch_item_failures_answers() -> None:
    ids = {"m1", "m2"}
    for answer, failed in [
        (b"null", set()),
        (b"", set()),
        (b'"done"', set()),
        (b"{}", set()),
        (b'{"batchItemFailures": null}', set()),
        (b'{"batchItemFailures": []}', set()),
        (b'{"batchItemFailures": [{"itemIdentifier": "m2"}]}', {"m2"}),
        (b'{"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}',
         {"m1", "m2"}),
        (b'{"batchItemFailures": [{"itemIdentifier": "m3"}]}', None),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', None),
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', None),
        (b'{"batchItemFailures": [{"id": "m1"}]}', None),
        (b'{"batchItemFailures": ["m1"]}', None),
        (b'{"batchItemFailures": "m1"}', None),
        (b"{not json", None),
    ]:
        assert batch_item_failures(answer, ids) == failed, answer


def test_chunks_keep_each_event_within_the_limit() -> None:
    def part(size: int) -> tuple[Message, bytes]:
        message = Message(message_id=str(size), receipt_handle="h", body="", md5_of_body="")
        return message, b"x" * size

    limit = 100
    parts = [part(30), part(30), part(30), part(95), part(200), part(10)]
    chunks = list(_chunks(parts, limit))
    assert [[len(p) for _, p in chunk] for chunk in chunks] == [[30, 30], [30], [95], [200],
                                                                 [10]]
    for chunk in chunks:
        event = b'{"Records":[' + b",".join(p for _, p in chunk) + b"]}"
        assert len(event) <= limit or len(chunk) == 1


def test_enabling_a_trigger_prewarms_one_sandbox_and_its_first_batch_is_a_warm_call(
        client, tmp_path) -> None:
    """A trigger's first batch should not wait for an interpreter and the function's
    imports: enabling one starts a sandbox of its function ahead of need."""
    node = client.platform.node
    deploy(client, tmp_path, "\n    print('INIT')" + RECORDER)
    client.queues.create("soon", visibility_timeout_s=30)
    trigger = client.triggers.create("soon", "fn", enabled=False)
    time.sleep(0.3)
    assert node.stats()["sandboxes"] == []  # deploying, or a disabled trigger, starts none
    client.triggers.enable(trigger["id"])
    [ready] = wait_for(lambda: [sb for sb in node.stats()["sandboxes"]
                                if sb["state"] == "idle"], "the pre-warmed sandbox")
    assert (ready["function"], ready["invocations"]) == ("fn", 0)
    assert client.records("fn") == []
    send(client, "soon", ["first"])
    wait_for(lambda: got(client) and empty(client, "soon"), "the message handled")
    [record] = client.records("fn")
    assert record.init_duration_ms is None  # warm: the init ran before, outside any call
    [after] = node.stats()["sandboxes"]
    assert (after["id"], after["invocations"]) == (ready["id"], 1)
    assert "INIT" in client.logs("fn")  # the init's output is in the first call's log


def test_no_sandbox_is_prewarmed_for_a_function_that_reserves_concurrency(
        client, tmp_path) -> None:
    """A sandbox starting ahead of need must never make a real call throttle."""
    deploy(client, tmp_path, reserved_concurrency=1)
    client.queues.create("held", visibility_timeout_s=30)
    client.triggers.create("held", "fn")
    time.sleep(0.5)
    assert client.platform.node.stats()["sandboxes"] == []
    send(client, "held", ["one"])
    wait_for(lambda: got(client) and empty(client, "held"), "the message handled")


#: Leaves a mark, then waits (up to 10 s) for a second invocation's mark: TOGETHER if it
#: came while this one ran, ALONE if not.
PAIR = """
    import os, time

    def handler(event, context):
        marks = os.environ["MARKS"]
        open(os.path.join(marks, context.aws_request_id), "w").close()
        start = time.time()
        while len(os.listdir(marks)) < 2 and time.time() - start < 10:
            time.sleep(0.02)
        print("TOGETHER" if len(os.listdir(marks)) >= 2 else "ALONE")
"""


def test_a_backlog_found_at_the_first_batch_starts_a_second_poller_at_once(
        client, tmp_path) -> None:
    """Growth is paced (one poller per GROW_EVERY_S), but the first poller is not
    growth: its first full batch, with more waiting, brings in a second straight away."""
    marks = tmp_path / "marks"
    marks.mkdir()
    deploy(client, tmp_path, PAIR, timeout_s=20, environment={"MARKS": str(marks)})
    client.queues.create("pair", visibility_timeout_s=30)
    trigger = client.triggers.create("pair", "fn", batch_size=1, max_concurrency=2,
                                     enabled=False)
    send(client, "pair", ["a", "b"])
    client.triggers.enable(trigger["id"])
    wait_for(lambda: empty(client, "pair"), "both messages handled", timeout_s=60)
    lines = [line for line in client.logs("fn").splitlines()
             if line in ("TOGETHER", "ALONE")]
    assert lines == ["TOGETHER", "TOGETHER"]
