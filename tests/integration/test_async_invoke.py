"""Async invocation on a real platform: the durable queue, retries, event age, destinations."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import write_function

from faasbox.errors import (
    AliasNotFoundError,
    FunctionNotFoundError,
    InvalidParameterError,
    PayloadTooLargeError,
    QueueNotFoundError,
    VersionNotFoundError,
)
from faasbox.events.async_invocations import RetryPolicy
from faasbox.model import InvocationRecord, Status
from faasbox.stores.async_events import AsyncEvent
from faasbox.stores.sql import SqlStateStore

FAST = RetryPolicy(base_s=0.3, min_s=0.3, throttle_base_s=0.05, throttle_max_s=0.2)

SLEEPY = """
    import time
    def handler(event, context):
        time.sleep(1.5)
        return {"got": event}
"""
FAILING = """
    def handler(event, context):
        raise RuntimeError("boom " + str(event))
"""
ECHO = """
    def handler(event, context):
        return {"echo": event}
"""
# A destination: prints what it received, so its log shows the destination record.
SINK = """
    import json
    def handler(event, context):
        print("RECEIVED " + json.dumps(event))
        return "ok"
"""


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def platform(make_platform):
    made = make_platform()
    made.async_invoker.retry = FAST
    return made


def deploy(client, tmp_path: Path, name: str, source: str, **kw: Any) -> None:
    client.deploy(name, write_function(tmp_path / name, source), handler="app.handler", **kw)


def received(client, sink: str = "sink") -> list[dict[str, Any]]:
    """The destination records the sink function was given, oldest first."""
    text = client.logs(sink)
    return [json.loads(line[len("RECEIVED "):]) for line in text.splitlines()
            if line.startswith("RECEIVED ")]


def attempts(client, request_id: str) -> list:
    return sorted(client.records(request_id=request_id), key=lambda r: r.started_at)


def test_invoke_async_answers_before_the_function_runs_then_runs_it(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "sleepy", SLEEPY, timeout_s=10)
    request_id = client.invoke_async("sleepy", {"n": 1})
    # The function sleeps 1.5 s and a record exists only once a call has finished:
    # none yet means the request id came back without waiting for the function.
    assert client.records(request_id=request_id) == []
    done = wait_for(lambda: attempts(client, request_id), what="the async attempt")
    assert [(r.status, r.attempt, r.async_request_id) for r in done] == [
        (Status.SUCCESS, 1, request_id)
    ]
    assert done[0].request_id != request_id  # each attempt is a call of its own
    assert f"START RequestId: {done[0].request_id}" in client.logs("sleepy", request_id=request_id)
    wait_for(lambda: platform.async_invoker.store.count() == 0, what="the event to finish")


def test_failures_are_retried_with_backoff_then_sent_to_on_failure(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "failing", FAILING)
    deploy(client, tmp_path, "sink", SINK)
    client.put_async_config("failing", on_failure="function:sink")
    request_id = client.invoke_async("failing", "x")
    records = wait_for(lambda: received(client), what="the on-failure record")
    tried = attempts(client, request_id)
    assert [(r.attempt, r.status) for r in tried] == [(n, Status.ERROR) for n in (1, 2, 3)]
    assert {r.async_request_id for r in tried} == {request_id}
    gaps = [b.started_at - a.started_at for a, b in itertools.pairwise(tried)]
    assert all(gap >= FAST.min_s for gap in gaps), gaps  # never sooner than the minimum
    [record] = records
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": "arn:faasbox:lambda:local:000000000000:function:failing:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == "x"
    assert record["responseContext"] == {
        "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"
    }
    assert record["responsePayload"]["errorMessage"] == "boom x"
    assert record["responsePayload"]["errorType"] == "RuntimeError"


def test_max_retries_zero_means_one_attempt(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "failing", FAILING)
    deploy(client, tmp_path, "sink", SINK)
    client.put_async_config("failing", max_retries=0, on_failure="function:sink")
    request_id = client.invoke_async("failing", 1)
    [record] = wait_for(lambda: received(client), what="the on-failure record")
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert [r.attempt for r in attempts(client, request_id)] == [1]


def test_success_goes_to_on_success_with_the_response(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "echo", ECHO)
    deploy(client, tmp_path, "sink", SINK)
    client.put_async_config("echo", on_success="function:sink", on_failure="")
    request_id = client.invoke_async("echo", {"a": [1, 2]})
    [record] = wait_for(lambda: received(client), what="the on-success record")
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"] == {"a": [1, 2]}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"echo": {"a": [1, 2]}}


def test_an_event_older_than_max_event_age_is_dropped_to_on_failure(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "echo", ECHO)
    deploy(client, tmp_path, "sink", SINK)
    client.put_async_config("echo", max_event_age_s=60, on_failure="function:sink")
    # An event that waited two minutes (the platform was down, say), as the queue holds it.
    old = time.time() - 120
    platform.async_invoker.store.add(AsyncEvent("old-event", "echo", None, b'"late"', old, old))
    platform.dispatcher.wake("async-invocations")
    [record] = wait_for(lambda: received(client), what="the on-failure record")
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == "late"
    assert "responseContext" not in record
    assert client.records("echo") == []  # it never ran


def test_throttles_are_retried_without_using_attempts(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "echo", ECHO, reserved_concurrency=0)
    client.put_async_config("echo", max_retries=0)
    request_id = client.invoke_async("echo", 5)
    wait_for(lambda: len(attempts(client, request_id)) >= 3, what="throttled tries")
    client.update_config("echo", reserved_concurrency=None)
    wait_for(lambda: attempts(client, request_id)[-1].status is Status.SUCCESS,
             what="the attempt after the throttles")
    tried = attempts(client, request_id)
    assert {r.status for r in tried[:-1]} == {Status.THROTTLED}
    assert {r.attempt for r in tried} == {1}  # max_retries=0, yet it ran: throttles are free


def test_bad_events_are_refused_and_nothing_is_queued(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "echo", ECHO)
    store = platform.async_invoker.store
    limit = platform.settings.limits.async_payload_bytes
    with pytest.raises(PayloadTooLargeError, match=f"over the {limit}-byte limit"):
        client.invoke_async("echo", "x" * limit)
    with pytest.raises(InvalidParameterError, match="not valid JSON"):
        client.invoke_async("echo", raw=b"{nope")
    with pytest.raises(FunctionNotFoundError):
        client.invoke_async("missing", 1)
    with pytest.raises(AliasNotFoundError):
        client.invoke_async("echo:live", 1)
    assert store.count() == 0


def test_config_defaults_validation_and_qualifier_fallback(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "echo", ECHO)
    deploy(client, tmp_path, "sink", SINK)
    client.publish("echo")
    client.set_alias("echo", "live", "1")
    defaults = {"function": "echo", "qualifier": None, "max_retries": 2,
                "max_event_age_s": 21600, "on_success": None, "on_failure": None}
    assert client.get_async_config("echo") == defaults
    set_one = client.put_async_config("echo", max_retries=1, on_failure="function:sink:$LATEST")
    assert set_one == {**defaults, "max_retries": 1, "on_failure": "function:sink:$LATEST"}
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"max_retries": 3}, InvalidParameterError, "max_retries=3 is out of range 0-2"),
        ({"max_retries": True}, InvalidParameterError, "out of range"),
        ({"max_event_age_s": 59}, InvalidParameterError, "out of range 60-21600"),
        ({"max_event_age_s": 21601}, InvalidParameterError, "out of range 60-21600"),
        ({"on_success": "sqs:x"}, InvalidParameterError, "queue:NAME or function:NAME"),
        ({"on_success": "function:nope"}, FunctionNotFoundError, "nope"),
        ({"on_failure": "function:sink:9"}, VersionNotFoundError, "sink:9"),
        ({"on_failure": "function:echo"}, InvalidParameterError, "its own destination"),
    ]
    for change, error, message in bad:
        with pytest.raises(error, match=message):
            client.put_async_config("echo", **change)
    with pytest.raises(FunctionNotFoundError):
        client.put_async_config("nope", max_retries=1)
    assert client.get_async_config("echo") == set_one  # nothing changed
    # An alias without its own config runs with the function's; with one, its own.
    assert client.get_async_config("echo:live")["max_retries"] == 1
    client.put_async_config("echo", qualifier="live", max_retries=0)
    assert client.get_async_config("echo", qualifier="live")["max_retries"] == 0
    assert client.get_async_config("echo")["max_retries"] == 1
    client.delete_async_config("echo")
    client.delete_async_config("echo")  # idempotent
    assert client.get_async_config("echo") == defaults
    assert client.get_async_config("echo:live")["max_retries"] == 0


def test_a_leased_event_of_a_crashed_platform_runs_after_restart(make_platform, tmp_path) -> None:
    first = make_platform(home=tmp_path / "h")
    client = first.client()
    deploy(client, tmp_path, "echo", ECHO)
    first.dispatcher.close()  # no driver: the event stays queued
    request_id = client.invoke_async("echo", "survivor")
    # As if a worker had claimed it and then the process died mid-run.
    [claimed] = first.async_invoker.store.claim(time.time(), 10, lease_s=3600)
    assert claimed.request_id == request_id
    first.close()
    again = make_platform(home=tmp_path / "h").client()
    done = wait_for(lambda: attempts(again, request_id), what="the recovered attempt")
    assert [(r.status, r.attempt) for r in done] == [(Status.SUCCESS, 1)]


def test_queue_destinations_receive_the_record(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "echo", ECHO)
    deploy(client, tmp_path, "failing", FAILING)
    client.queues.create("done")
    client.queues.create("failed")
    with pytest.raises(QueueNotFoundError):
        client.put_async_config("echo", on_success="queue:nope")
    client.put_async_config("echo", on_success="queue:done")
    client.put_async_config("failing", max_retries=0, on_failure="queue:failed")
    ok_id = client.invoke_async("echo", {"q": 1})
    bad_id = client.invoke_async("failing", {"q": 2})

    def one(queue: str) -> Any:
        got = client.queues.receive(queue, max_messages=10)
        return got and json.loads(got[0].body)

    success = wait_for(lambda: one("done"), what="the on-success message")
    failure = wait_for(lambda: one("failed"), what="the on-failure message")
    assert success["requestContext"]["requestId"] == ok_id
    assert success["requestContext"]["condition"] == "Success"
    assert success["responsePayload"] == {"echo": {"q": 1}}
    assert failure["requestContext"]["requestId"] == bad_id
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["responseContext"]["functionError"] == "Unhandled"
    wait_for(lambda: platform.async_invoker.store.count() == 0, what="both events to finish")


def test_an_older_invocations_table_gets_the_attempt_columns(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table as the first release made it
        conn.exec_driver_sql(
            "CREATE TABLE invocations (request_id VARCHAR(64) PRIMARY KEY, function "
            "VARCHAR(64) NOT NULL, version VARCHAR(16) NOT NULL, qualifier VARCHAR(128) NOT "
            "NULL, status VARCHAR(16) NOT NULL, started_at FLOAT NOT NULL, duration_ms FLOAT "
            "NOT NULL, billed_duration_ms INTEGER NOT NULL, memory_size_mb INTEGER NOT NULL, "
            "max_memory_used_mb INTEGER NOT NULL, init_duration_ms FLOAT, error_type "
            "VARCHAR(128), error_message TEXT, log_file TEXT NOT NULL, log_offset BIGINT NOT "
            "NULL, log_length INTEGER NOT NULL)"
        )
    engine.dispose()
    store = SqlStateStore(url)
    record = InvocationRecord("r1", "f", "$LATEST", "$LATEST", Status.ERROR, 1.0, 2.0, 2, 128,
                              30, async_request_id="a1", attempt=2)
    store.add_records([(record, "f.log")])
    [(found, _)] = store.records(request_id="a1")
    assert (found.request_id, found.async_request_id, found.attempt) == ("r1", "a1", 2)
    store.close()
