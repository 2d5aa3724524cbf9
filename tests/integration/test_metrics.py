"""Metrics from real invocations and real queues, folded into 10-second datapoints."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import write_function

from faasbox.api.metrics import LAMBDA, SQS
from faasbox.errors import (
    FunctionNotFoundError,
    InvalidParameterError,
    QueueNotFoundError,
    TooManyRequestsError,
)

OK_SOURCE = """
    import time
    def handler(event, context):
        time.sleep((event or {}).get("sleep", 0))
        return "ok"
"""
BAD_SOURCE = """
    def handler(event, context):
        raise RuntimeError("boom")
"""


def deploy(client, tmp_path, name: str, source: str, **kw) -> None:
    client.deploy(name, write_function(tmp_path / name, source), handler="app.handler", **kw)


def fn(name: str) -> dict[str, str]:
    return {"FunctionName": name}


def test_invocations_errors_and_cold_starts_fold_into_datapoints(make_platform, tmp_path):
    platform = make_platform()
    client = platform.client()
    deploy(client, tmp_path, "good", OK_SOURCE)
    deploy(client, tmp_path, "bad", BAD_SOURCE)
    for _ in range(3):
        client.invoke("good")
    assert client.invoke("bad").function_error == "Unhandled"

    platform.metrics.collect_now()
    good = client.metrics.function_summary("good")["totals"]
    assert (good["Invocations"], good["Errors"], good["ColdStarts"]) == (3, 0, 1)
    bad = client.metrics.function_summary("bad")["totals"]
    assert (bad["Invocations"], bad["Errors"], bad["Throttles"]) == (1, 1, 0)

    points = client.metrics.get(LAMBDA, "Invocations", fn("good"), statistic="Sum",
                                period_s=10, since=time.time() - 120)
    assert sum(p["value"] for p in points) == 3
    assert all(p["timestamp"] % 10 == 0 for p in points)
    rate = client.metrics.get(LAMBDA, "ColdStarts", fn("good"), statistic="Average",
                              period_s=300, since=time.time() - 600)
    assert sum(p["sample_count"] for p in rate) == 3

    again = platform.metrics.collect_now()  # nothing new: nothing counted twice
    assert again["records"] == 0
    assert client.metrics.function_summary("good")["totals"]["Invocations"] == 3


def test_duration_statistics_match_the_records(make_platform, tmp_path) -> None:
    platform = make_platform()
    client = platform.client()
    deploy(client, tmp_path, "sleepy", OK_SOURCE)
    for sleep in (0, 0.01, 0.02, 0.05, 0.1):
        client.invoke("sleepy", {"sleep": sleep})
    platform.metrics.collect_now()
    durations = [r.duration_ms for r in client.records("sleepy")]
    summary = client.metrics.function_summary("sleepy")["totals"]["Duration"]
    assert summary["maximum"] == pytest.approx(max(durations), abs=1e-3)
    assert summary["average"] == pytest.approx(statistics.mean(durations), abs=1e-3)
    median = sorted(durations)[2]
    assert abs(summary["p50"] - median) <= 0.045 * median
    assert summary["p50"] <= summary["p99"] <= summary["maximum"]
    p90 = client.metrics.get(LAMBDA, "Duration", fn("sleepy"), statistic="p90", period_s=60,
                             since=time.time() - 300)
    assert p90 and all(p["value"] <= max(durations) + 1e-3 for p in p90)


def test_throttled_requests_count_as_throttles_not_invocations(make_platform, tmp_path):
    platform = make_platform()
    client = platform.client()
    deploy(client, tmp_path, "closed", OK_SOURCE, reserved_concurrency=0)
    for _ in range(2):
        with pytest.raises(TooManyRequestsError):
            client.invoke("closed")
    platform.metrics.collect_now()
    totals = client.metrics.function_summary("closed")["totals"]
    assert (totals["Throttles"], totals["Invocations"], totals["Errors"]) == (2, 0, 0)


def test_concurrent_executions_sample_busy_sandboxes(make_platform, tmp_path) -> None:
    platform = make_platform()
    client = platform.client()
    deploy(client, tmp_path, "slow", OK_SOURCE)
    caller = threading.Thread(target=client.invoke, args=("slow", {"sleep": 1.5}))
    caller.start()
    try:
        deadline = time.monotonic() + 10
        while not any(s["state"] == "busy" for s in platform.node.stats()["sandboxes"]):
            assert time.monotonic() < deadline, "the call never got a busy sandbox"
            time.sleep(0.01)
        platform.metrics.collect_now()
    finally:
        caller.join()
    platform.metrics.collect_now()  # idle now: the datapoint keeps its peak
    totals = client.metrics.function_summary("slow")["totals"]
    assert totals["ConcurrentExecutions"] == 1
    peak = client.metrics.get(LAMBDA, "ConcurrentExecutions", fn("slow"), statistic="Maximum",
                              period_s=60, since=time.time() - 120)
    assert max(p["value"] for p in peak) == 1


def test_queue_levels_are_sampled(make_platform) -> None:
    platform = make_platform()
    client = platform.client()
    client.queues.create("work", visibility_timeout_s=60)
    for i in range(3):
        client.queues.send("work", f"m{i}")
    client.queues.receive("work", max_messages=1)
    platform.metrics.collect_now()
    summary = client.metrics.queue_summary("work")
    assert summary["latest"]["ApproximateNumberOfMessagesVisible"] == 2
    assert summary["latest"]["ApproximateNumberOfMessagesNotVisible"] == 1
    assert summary["latest"]["ApproximateAgeOfOldestMessage"] >= 0
    client.queues.purge("work")
    platform.metrics.collect_now()  # the newest sample of a 10-second slot is its level
    latest = client.metrics.queue_summary("work")["latest"]
    assert latest["ApproximateNumberOfMessagesVisible"] == 0
    listed = client.metrics.list_metrics(SQS)
    assert {"namespace": SQS, "metric": "ApproximateNumberOfMessagesVisible",
            "dimensions": {"QueueName": "work"}} in listed


def test_prometheus_exposition_parses_back(make_platform, tmp_path) -> None:
    platform = make_platform()
    client = platform.client()
    deploy(client, tmp_path, "hello", OK_SOURCE)
    deploy(client, tmp_path, "bad", BAD_SOURCE)
    client.invoke("hello")
    client.invoke("hello")
    client.invoke("bad")
    client.queues.create("jobs")
    client.queues.send("jobs", "x")
    platform.metrics.collect_now()

    samples = {}
    for family in text_string_to_metric_families(client.metrics.prometheus()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("faasbox_function_invocations_total", (("function", "hello"),))] == 2
    assert samples[("faasbox_function_errors_total", (("function", "bad"),))] == 1
    assert samples[("faasbox_function_errors_total", (("function", "hello"),))] == 0
    assert samples[("faasbox_function_cold_starts_total", (("function", "hello"),))] == 1
    assert samples[("faasbox_function_duration_milliseconds_count",
                    (("function", "hello"),))] == 2
    assert samples[("faasbox_queue_messages_visible", (("queue", "jobs"),))] == 1


def test_retention_drops_old_datapoints_but_not_counters(make_platform, tmp_path) -> None:
    """Only what this test wrote is asserted on: the background tick may run at any
    moment and sample levels at the real time, and the sandbox that served the call may
    be gone by the "hour on" tick (so its concurrency sample is not relied on)."""
    platform = make_platform(metrics_retention_s=60)
    client = platform.client()
    deploy(client, tmp_path, "hello", OK_SOURCE)
    client.queues.create("work")  # sampled at every tick, whatever runs or not
    client.invoke("hello")
    now = time.time()
    platform.metrics.collect_now(now=now)
    kept = {m["metric"] for m in client.metrics.list_metrics(LAMBDA)}
    assert {"Invocations", "Duration"} <= kept
    later = now + 3600
    platform.metrics.collect_now(now=later)  # an hour on: the call is past retention
    # the record was folded, so no later tick brings its datapoints back
    kept = {m["metric"] for m in client.metrics.list_metrics(LAMBDA)}
    assert not kept & {"Invocations", "Errors", "Duration", "ColdStarts"}
    fresh = client.metrics.get(SQS, "ApproximateNumberOfMessagesVisible",
                               {"QueueName": "work"}, statistic="Maximum", period_s=10,
                               since=later - 60, until=later + 60)
    assert len(fresh) == 1  # the sample taken "an hour on" is within retention
    assert 'faasbox_function_invocations_total{function="hello"} 1.0' in (
        client.metrics.prometheus())


def test_a_function_or_queue_that_never_existed_is_not_found(make_platform, tmp_path):
    platform = make_platform()
    client = platform.client()
    with pytest.raises(FunctionNotFoundError, match="Function not found: ghost"):
        client.metrics.function_summary("ghost")
    with pytest.raises(QueueNotFoundError, match="Queue not found: ghost"):
        client.metrics.queue_summary("ghost")
    deploy(client, tmp_path, "fresh", OK_SOURCE)
    client.queues.create("empty")
    # existing without data yet: zeros, not an error
    assert client.metrics.function_summary("fresh")["totals"]["Invocations"] == 0
    assert client.metrics.queue_summary("empty")["maximum"] == {
        "ApproximateNumberOfMessagesVisible": None,
        "ApproximateNumberOfMessagesNotVisible": None,
        "ApproximateAgeOfOldestMessage": None,
    }


def test_a_deleted_function_or_queue_with_datapoints_still_answers(make_platform, tmp_path):
    platform = make_platform()
    client = platform.client()
    deploy(client, tmp_path, "gone", OK_SOURCE)
    client.invoke("gone")
    client.queues.create("gone-queue")
    client.queues.send("gone-queue", "x")
    platform.metrics.collect_now()
    client.delete_function("gone")
    client.queues.delete("gone-queue")
    assert client.metrics.function_summary("gone")["totals"]["Invocations"] == 1
    summary = client.metrics.queue_summary("gone-queue")
    assert summary["maximum"]["ApproximateNumberOfMessagesVisible"] == 1


def test_the_cursor_survives_a_restart(make_platform, tmp_path) -> None:
    platform = make_platform()
    client = platform.client()
    deploy(client, tmp_path, "hello", OK_SOURCE)
    client.invoke("hello")
    platform.metrics.collect_now()
    platform.close()
    reopened = make_platform()
    assert reopened.metrics.collect_now()["records"] == 0
    assert reopened.client().metrics.function_summary("hello")["totals"]["Invocations"] == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((LAMBDA, "Latency", fn("x")), {}, "unknown metric 'Latency'"),
        (("AWS/EC2", "CPUUtilization", {"InstanceId": "i"}), {}, "unknown namespace"),
        ((LAMBDA, "Errors", {"QueueName": "x"}), {}, "exactly one dimension, FunctionName"),
        ((LAMBDA, "Errors", fn("x")), {"statistic": "Mean"}, "unknown statistic 'Mean'"),
        ((LAMBDA, "Errors", fn("x")), {"period_s": 15}, "multiple of 10"),
        ((LAMBDA, "Errors", fn("x")), {"since": 2000.0, "until": 1000.0}, "before until"),
        ((LAMBDA, "Errors", fn("x")), {"period_s": 10, "since": 0.0}, "datapoints"),
    ],
)
def test_bad_queries_say_what_is_wrong(client, args, kwargs, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        client.metrics.get(*args, **kwargs)
