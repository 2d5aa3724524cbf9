"""Metrics and alarms end to end: the real server, the CLI and the HTTP API."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import EXAMPLES, Server

from faasbox.errors import (
    AlarmNotFoundError,
    FunctionNotFoundError,
    InvalidParameterError,
    QueueNotFoundError,
)
from faasbox.remote import RemoteClient


def _json(done: subprocess.CompletedProcess[str]):
    return json.loads(done.stdout)


def test_cli_metrics_shows_invocations_with_a_trend(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    for _ in range(3):
        server.cli("invoke", "hello")
    summary = _json(server.cli("metrics", "hello", "--since", "15m", "--json"))
    assert summary["function"] == "hello" and summary["totals"]["Invocations"] >= 3
    assert summary["totals"]["Errors"] == 0
    assert len(summary["series"]["Invocations"]) >= 30
    table = server.cli("metrics", "hello", "--since", "15m").stdout
    assert "Invocations" in table and "ColdStarts" in table and "p99" in table
    assert any(bar in table for bar in "▁▂▃▄▅▆▇█")
    only = server.cli("metrics", "hello", "--metric", "Duration").stdout
    assert "Duration" in only and "Throttles" not in only


def test_cli_metrics_refuses_bad_input(server: Server) -> None:
    done = server.cli("metrics", "hello", "--since", "yesterday", check=False)
    assert done.returncode == 1 and "--since 'yesterday'" in done.stderr
    done = server.cli("metrics", "hello", "--metric", "Latency", check=False)
    assert done.returncode == 1 and "unknown metric 'Latency'" in done.stderr
    done = server.cli("metrics", "hello", "--period", "15", check=False)
    assert done.returncode == 1 and "multiple of 10" in done.stderr


def test_prometheus_route_serves_the_text_format(server: Server, http: httpx.Client) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    server.cli("invoke", "hello")
    http.post("/v1/metrics/collect").raise_for_status()
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert values[("faasbox_function_invocations_total", (("function", "hello"),))] >= 1


def test_http_datapoints_and_errors(server: Server, http: httpx.Client) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    server.cli("invoke", "hello")
    http.post("/v1/metrics/collect").raise_for_status()
    found = http.get("/v1/metrics/datapoints", params={
        "namespace": "AWS/Lambda", "metric": "Invocations", "dimension": "FunctionName=hello",
        "statistic": "Sum", "period_s": 60, "since": time.time() - 600,
    })
    assert found.status_code == 200 and sum(p["value"] for p in found.json()["datapoints"]) >= 1
    bad = http.get("/v1/metrics/datapoints", params={
        "namespace": "AWS/Lambda", "metric": "Invocations", "dimension": "FunctionName=hello",
        "statistic": "Median"})
    assert bad.status_code == 400
    assert bad.json()["errorType"] == "InvalidParameterValueException"
    assert "unknown statistic 'Median'" in bad.json()["errorMessage"]


def test_cli_alarm_add_ls_history_rm(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    added = _json(server.cli(
        "alarm", "add", "hello-errors", "--function", "hello", "--metric", "Errors",
        "--statistic", "Sum", "--period", "10", "--threshold", "1", "--comparison", ">=",
        "--treat-missing", "notBreaching", "--description", "any error", "--json",
    ))
    assert added["comparison_operator"] == "GreaterThanOrEqualToThreshold"
    assert added["dimensions"] == {"FunctionName": "hello"}
    server.cli("alarm", "add", "hello-slow", "--function", "hello", "--metric", "Duration",
               "--statistic", "p99", "--period", "60", "--evaluation-periods", "3",
               "--datapoints-to-alarm", "2", "--threshold", "1000", "--comparison", ">")
    listed = {a["name"]: a for a in _json(server.cli("alarm", "ls", "--json"))}
    assert set(listed) >= {"hello-errors", "hello-slow"}
    assert listed["hello-slow"]["datapoints_to_alarm"] == 2
    table = server.cli("alarm", "ls").stdout
    assert "hello-slow" in table and "p99(Duration FunctionName=hello) > 1000" in table

    history = _json(server.cli("alarm", "history", "hello-errors", "--json"))
    assert history[-1]["type"] == "ConfigurationUpdate"
    assert "hello-errors" in server.cli("alarm", "history", "hello-errors").stdout

    server.cli("alarm", "rm", "hello-errors")
    gone = server.cli("alarm", "rm", "hello-errors", check=False)
    assert gone.returncode == 1 and "Alarm not found: hello-errors" in gone.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--function", "hello", "--metric", "Latency"], "unknown metric 'Latency'"),
        (["--function", "hello", "--metric", "Errors", "--period", "15"], "multiple of 10"),
        (["--function", "hello", "--metric", "Errors", "--comparison", "=="],
         "unknown comparison operator '=='"),
        (["--function", "hello", "--metric", "Errors", "--statistic", "Median"],
         "unknown statistic 'Median'"),
        (["--function", "hello", "--metric", "Errors", "--alarm-action", "queue:nowhere"],
         "Queue not found: nowhere"),
        (["--metric", "Errors"], "--function NAME, --queue NAME"),
    ],
)
def test_cli_alarm_add_refuses_bad_input(server: Server, flags, message) -> None:
    comparison = [] if "--comparison" in flags else ["--comparison", ">="]
    done = server.cli("alarm", "add", "broken", "--threshold", "1", *comparison, *flags,
                      check=False)
    assert done.returncode == 1, done.stdout
    assert message in done.stderr
    assert "broken" not in [a["name"] for a in _json(server.cli("alarm", "ls", "--json"))]


def test_remote_alarm_fires_into_a_queue(server: Server, remote: RemoteClient) -> None:
    remote.queues.create("e2e-pages")
    remote.queues.create("e2e-alerts")
    for i in range(4):
        remote.queues.send("e2e-pages", f"page {i}")
    remote.metrics.collect_now()
    remote.alarms.put(
        "e2e-deep", namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": "e2e-pages"}, statistic="Maximum", period_s=10,
        evaluation_periods=1, threshold=4, comparison_operator="GreaterThanOrEqualToThreshold",
        alarm_actions=["queue:e2e-alerts"],
    )
    deadline = time.monotonic() + 30
    while remote.alarms.get("e2e-deep")["state"] != "ALARM":  # again if a 10 s edge passed
        assert time.monotonic() < deadline, remote.alarms.get("e2e-deep")
        remote.metrics.collect_now()
        remote.alarms.evaluate_now()
    [message] = remote.queues.receive("e2e-alerts", wait_s=5)
    assert json.loads(message.body)["alarmData"]["alarmName"] == "e2e-deep"
    summary = remote.metrics.queue_summary("e2e-pages")
    assert summary["latest"]["ApproximateNumberOfMessagesVisible"] == 4
    with pytest.raises(AlarmNotFoundError):
        remote.alarms.get("e2e-missing")
    with pytest.raises(InvalidParameterError, match="unknown namespace"):
        remote.metrics.get("AWS/EC2", "CPUUtilization", {"InstanceId": "i-1"})


def test_http_incomplete_alarm_and_missing_targets(server: Server, http: httpx.Client) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    incomplete = http.put("/v1/alarms/a", json={
        "namespace": "AWS/Lambda", "metric": "Errors", "dimensions": {"FunctionName": "hello"},
        "evaluation_periods": 1, "threshold": 1,
        "comparison_operator": "GreaterThanOrEqualToThreshold"})
    assert incomplete.status_code == 400
    assert incomplete.json()["errorType"] == "InvalidParameterValueException"
    assert incomplete.json()["errorMessage"] == (
        "alarm 'a' is missing required fields: statistic, period_s")
    complete = {"namespace": "AWS/Lambda", "metric": "Errors",
                "dimensions": {"FunctionName": "hello"}, "statistic": "Sum", "period_s": 60,
                "evaluation_periods": 1, "threshold": 1,
                "comparison_operator": "GreaterThanOrEqualToThreshold"}
    for action, message in (("function:ghost", "Function not found: ghost"),
                            ("queue:ghost", "Queue not found: ghost")):
        missing = http.put("/v1/alarms/a", json={**complete, "alarm_actions": [action]})
        assert missing.status_code == 404, missing.text
        assert missing.json()["errorMessage"] == message
    assert http.get("/v1/alarms/a").status_code == 404  # nothing was stored


def test_remote_alarm_on_a_missing_function_raises_not_found(remote: RemoteClient) -> None:
    with pytest.raises(FunctionNotFoundError, match="Function not found: ghost"):
        remote.alarms.put(
            "e2e-ghost", namespace="AWS/Lambda", metric="Errors",
            dimensions={"FunctionName": "ghost"}, statistic="Sum", period_s=60,
            evaluation_periods=1, threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            alarm_actions=["function:ghost"],
        )
    with pytest.raises(InvalidParameterError, match="missing required fields: threshold"):
        remote.alarms.put(
            "e2e-ghost", namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": "q"}, statistic="Maximum", period_s=10,
            evaluation_periods=1, comparison_operator="GreaterThanOrEqualToThreshold",
        )


def test_metrics_of_a_name_that_never_existed_are_not_found(
    server: Server, http: httpx.Client, remote: RemoteClient
) -> None:
    ghost = http.get("/v1/metrics/functions/ghost")
    assert ghost.status_code == 404
    assert ghost.json()["errorMessage"] == "Function not found: ghost"
    assert http.get("/v1/metrics/queues/ghost").status_code == 404
    with pytest.raises(QueueNotFoundError, match="Queue not found: ghost"):
        remote.metrics.queue_summary("ghost")
    done = server.cli("metrics", "ghost", check=False)
    assert done.returncode == 1 and "Function not found: ghost" in done.stderr
    done = server.cli("metrics", "ghost", "--queue", check=False)
    assert done.returncode == 1 and "Queue not found: ghost" in done.stderr


def test_cli_metrics_datapoints_and_list(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    server.cli("invoke", "hello")
    points = _json(server.cli("metrics", "datapoints", "AWS/Lambda", "Invocations",
                              "--dim", "FunctionName=hello", "--stat", "Sum",
                              "--period", "60", "--since", "1h", "--json"))
    assert sum(p["value"] for p in points) >= 1
    assert all(p["timestamp"] % 60 == 0 for p in points)
    table = server.cli("metrics", "datapoints", "AWS/Lambda", "Duration", "--dimension",
                       "FunctionName=hello", "--statistic", "p99", "--since", "15m").stdout
    assert "p99(Duration FunctionName=hello) per 60 s" in table and "SAMPLES" in table
    listed = _json(server.cli("metrics", "list", "--namespace", "AWS/Lambda", "--json"))
    assert {"namespace": "AWS/Lambda", "metric": "Invocations",
            "dimensions": {"FunctionName": "hello"}} in listed
    assert "FunctionName=hello" in server.cli("metrics", "list").stdout
    # the short form and the explicit one show the same function
    shown = _json(server.cli("metrics", "show", "hello", "--json"))
    assert shown["function"] == "hello" and shown["totals"]["Invocations"] >= 1
    bad = server.cli("metrics", "datapoints", "AWS/Lambda", "Invocations", "--dim",
                     "FunctionName", check=False)
    assert bad.returncode == 1 and "--dimension 'FunctionName': expected Name=value" in (
        bad.stderr)
    bad = server.cli("metrics", "datapoints", "AWS/Lambda", "Invocations", "--dim",
                     "FunctionName=hello", "--stat", "Median", check=False)
    assert bad.returncode == 1 and "unknown statistic 'Median'" in bad.stderr


def test_cli_alarm_show(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    server.cli("alarm", "add", "show-me", "--function", "hello", "--metric", "Errors",
               "--statistic", "Sum", "--period", "60", "--threshold", "2",
               "--comparison", ">=", "--description", "two errors")
    shown = _json(server.cli("alarm", "show", "show-me", "--json"))
    assert (shown["name"], shown["threshold"], shown["description"]) == (
        "show-me", 2, "two errors")
    assert shown["state"] in ("OK", "INSUFFICIENT_DATA") and shown["state_reason"]
    table = server.cli("alarm", "show", "show-me").stdout
    assert "Sum(Errors FunctionName=hello) >= 2 for 1 of 1 x 60 s" in table
    assert "state_reason" in table and "two errors" in table
    done = server.cli("alarm", "show", "no-such-alarm", check=False)
    assert done.returncode == 1 and "Alarm not found: no-such-alarm" in done.stderr
