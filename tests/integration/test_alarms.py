"""Alarms on real metrics: state changes, actions (async invoke, queue message), history."""

from __future__ import annotations

import json
import time

import pytest
from tests.conftest import write_function

from faasbox.api.alarms import ALARM, INSUFFICIENT_DATA, OK
from faasbox.errors import (
    AlarmNotFoundError,
    AliasNotFoundError,
    FunctionNotFoundError,
    InvalidParameterError,
    QueueNotFoundError,
)
from faasbox.stores.alarms import AlarmStore
from faasbox.stores.database import Database

ON_ALARM = """
    def handler(event, context):
        data = event["alarmData"]
        print("ALARM-EVENT", data["alarmName"], data["state"]["value"], event["source"])
"""
BAD_SOURCE = """
    def handler(event, context):
        raise RuntimeError("boom")
"""

DEEP = dict(
    namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
    dimensions={"QueueName": "work"}, statistic="Maximum", period_s=10,
    evaluation_periods=1, threshold=3, comparison_operator="GreaterThanOrEqualToThreshold",
)


def tick(platform) -> None:
    """Collect, then evaluate, as the 10-second tick does; again if a 10-second edge
    passed in between (a level sampled before the edge is then the older period's)."""
    while True:
        slot = time.time() // 10
        platform.metrics.collect_now()
        platform.alarms.evaluate_now()
        if time.time() // 10 == slot:
            return


def bodies(client, queue: str) -> list[dict]:
    got = []
    while batch := client.queues.receive(queue, max_messages=10):
        got.extend(json.loads(m.body) for m in batch)
        for message in batch:
            client.queues.delete_message(queue, message.receipt_handle)
    return got


def wait_for_log(client, name: str, text: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = client.logs(name)
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the logs of {name}")


def test_queue_depth_alarm_fires_its_actions_then_recovers(make_platform, tmp_path) -> None:
    platform = make_platform()
    client = platform.client()
    client.deploy("on-alarm", write_function(tmp_path / "on", ON_ALARM), handler="app.handler")
    client.queues.create("work")
    client.queues.create("alerts")
    for i in range(5):
        client.queues.send("work", f"page {i}")
    platform.metrics.collect_now()  # every evaluation from here on sees 5 visible
    created = client.alarms.put(
        "deep", **DEEP, description="work piling up",
        alarm_actions=["function:on-alarm", "queue:alerts"], ok_actions=["queue:alerts"],
    )
    assert created["state"] == INSUFFICIENT_DATA
    assert created["arn"].endswith(":alarm:deep")
    tick(platform)
    alarm = client.alarms.get("deep")
    assert alarm["state"] == ALARM
    assert "greater than or equal to the threshold (3)" in alarm["state_reason"]

    [event] = bodies(client, "alerts")
    assert event["source"] == "aws.cloudwatch"
    assert event["alarmData"]["state"]["value"] == ALARM
    assert event["alarmData"]["previousState"]["value"] == INSUFFICIENT_DATA
    assert event["alarmData"]["configuration"]["description"] == "work piling up"
    wait_for_log(client, "on-alarm", "ALARM-EVENT deep ALARM aws.cloudwatch")

    client.queues.purge("work")
    tick(platform)  # the new sample replaces the level of the period that just ended
    assert client.alarms.get("deep")["state"] == OK
    [recovered] = bodies(client, "alerts")
    assert recovered["alarmData"]["state"]["value"] == OK
    assert recovered["alarmData"]["previousState"]["value"] == ALARM

    history = client.alarms.history("deep")
    updates = [(h["data"]["old_state"], h["data"]["new_state"])
               for h in reversed(history) if h["type"] == "StateUpdate"]
    assert updates == [(INSUFFICIENT_DATA, ALARM), (ALARM, OK)]
    actions = [h for h in history if h["type"] == "Action"]
    assert len(actions) == 3
    assert all(h["summary"].startswith("Successfully executed action") for h in actions)
    assert history[-1]["type"] == "ConfigurationUpdate"


def test_function_error_alarm_goes_to_alarm_at_the_tick_that_saw_the_error(
    make_platform, tmp_path
) -> None:
    platform = make_platform()
    client = platform.client()
    client.deploy("bad", write_function(tmp_path / "bad", BAD_SOURCE), handler="app.handler")
    client.alarms.put(
        "bad-errors", namespace="AWS/Lambda", metric="Errors",
        dimensions={"FunctionName": "bad"}, statistic="Sum", period_s=10,
        evaluation_periods=1, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
        treat_missing_data="notBreaching",
    )
    platform.alarms.evaluate_now()
    assert client.alarms.get("bad-errors")["state"] == OK  # no data, not breaching
    client.invoke("bad")
    tick(platform)  # the running period's Sum already reached 1: final, fires at once
    assert client.alarms.get("bad-errors")["state"] == ALARM
    assert [a["name"] for a in client.alarms.list(state=ALARM)] == ["bad-errors"]


def test_an_action_whose_target_is_gone_is_recorded_as_failed(make_platform) -> None:
    platform = make_platform()
    client = platform.client()
    client.queues.create("work")
    client.queues.create("doomed")
    client.alarms.put("deep", **DEEP, alarm_actions=["queue:doomed"])
    tick(platform)
    assert client.alarms.get("deep")["state"] == OK
    client.queues.delete("doomed")
    for i in range(3):
        client.queues.send("work", str(i))
    tick(platform)
    assert client.alarms.get("deep")["state"] == ALARM
    [action] = [h for h in client.alarms.history("deep") if h["type"] == "Action"]
    assert action["summary"].startswith("Failed to execute action queue:doomed")
    assert "Queue not found: doomed" in action["data"]["error"]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"alarm_actions": ["function:missing"]}, FunctionNotFoundError,
         "Function not found: missing"),
        ({"alarm_actions": ["function:missing:prod"]}, FunctionNotFoundError,
         "Function not found: missing"),
        ({"ok_actions": ["queue:missing"]}, QueueNotFoundError, "Queue not found: missing"),
    ],
)
def test_actions_on_missing_targets_are_not_found_and_nothing_is_stored(
    client, changes, error, message
) -> None:
    """As schedules, triggers and bucket notifications: a missing target is a 404."""
    with pytest.raises(error, match=message):
        client.alarms.put("nope", **{**DEEP, **changes})
    assert client.alarms.list() == []


def test_an_action_on_a_missing_alias_names_the_alias(client, tmp_path) -> None:
    client.deploy("on-alarm", write_function(tmp_path / "on", ON_ALARM), handler="app.handler")
    with pytest.raises(AliasNotFoundError, match="prod"):
        client.alarms.put("nope", **DEEP, alarm_actions=["function:on-alarm:prod"])
    assert client.alarms.list() == []


@pytest.mark.parametrize(
    ("left_out", "message"),
    [
        (("statistic", "period_s"), "alarm 'nope' is missing required fields: statistic, "
         "period_s$"),
        (("namespace", "metric", "dimensions", "statistic", "period_s", "evaluation_periods",
          "threshold", "comparison_operator"),
         "missing required fields: namespace, metric, dimensions, statistic, period_s, "
         "evaluation_periods, threshold, comparison_operator$"),
    ],
)
def test_an_incomplete_alarm_names_the_missing_fields(client, left_out, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        client.alarms.put("nope", **{k: v for k, v in DEEP.items() if k not in left_out})
    assert client.alarms.list() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"alarm_actions": ["topic:x"]}, "invalid alarm action"),
        ({"metric": "Depth"}, "unknown metric 'Depth'"),
        ({"statistic": "Median"}, "unknown statistic"),
        ({"comparison_operator": "Above"}, "unknown comparison operator"),
        ({"period_s": 25}, "multiple of 10"),
        ({"colour": "red"}, "unknown alarm fields"),
    ],
)
def test_bad_alarms_are_refused_and_nothing_is_stored(client, changes, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        client.alarms.put("nope", **{**DEEP, **changes})
    assert client.alarms.list() == []
    with pytest.raises(AlarmNotFoundError, match="Alarm not found: nope"):
        client.alarms.get("nope")


def test_put_again_keeps_the_state_and_delete_removes_everything(make_platform) -> None:
    platform = make_platform()
    client = platform.client()
    client.alarms.put("deep", **DEEP, treat_missing_data="breaching")  # no such queue yet
    platform.alarms.evaluate_now()
    assert client.alarms.get("deep")["state"] == ALARM  # no samples yet: missing breaches
    updated = client.alarms.put("deep", **{**DEEP, "threshold": 10},
                                treat_missing_data="breaching")
    assert (updated["state"], updated["threshold"]) == (ALARM, 10)
    kinds = [h["type"] for h in client.alarms.history("deep")]
    assert kinds.count("ConfigurationUpdate") == 2
    with pytest.raises(InvalidParameterError, match="limit"):
        client.alarms.history("deep", limit=0)
    client.alarms.delete("deep")
    with pytest.raises(AlarmNotFoundError):
        client.alarms.delete("deep")
    with pytest.raises(AlarmNotFoundError):
        client.alarms.history("deep")


def test_actions_a_crash_left_in_the_outbox_are_delivered_when_the_platform_opens(
    make_platform,
) -> None:
    """A crash right after the state change committed leaves the change, its history and
    its outbox rows, but nothing delivered: the next start delivers them."""
    platform = make_platform()
    client = platform.client()
    client.queues.create("alerts")
    # no queue "work": no data, and "ignore" keeps whatever state the test sets
    client.alarms.put("deep", **DEEP, treat_missing_data="ignore",
                      alarm_actions=["queue:alerts"])
    platform.close()

    # What the evaluator commits in one transaction, written on the closed platform's
    # home through the store: no delivery follows, as after a SIGKILL at that line.
    database = Database(platform.settings.database_url
                        or f"sqlite:///{platform.layout.state_db}")
    try:
        store = AlarmStore(database)
        row = store.get("deep")
        assert row is not None and row.state == INSUFFICIENT_DATA
        event = json.dumps({"source": "aws.cloudwatch", "alarmData": {
            "alarmName": "deep", "state": {"value": ALARM}}})
        assert store.transition(row, ALARM, "Threshold Crossed: crash test", {}, time.time(),
                                [("queue:alerts", event)])
        assert [p.action for p in store.pending()] == ["queue:alerts"]
    finally:
        database.close()

    reopened = make_platform()
    client = reopened.client()
    # delivered while the platform opened: no evaluation, tick or wait needed
    [message] = client.queues.receive("alerts", max_messages=10)
    assert json.loads(message.body)["alarmData"]["alarmName"] == "deep"
    assert reopened.alarms.store.pending() == []
    assert client.alarms.get("deep")["state"] == ALARM
    kinds = [(h["type"], h["summary"]) for h in client.alarms.history("deep")]
    assert kinds[0] == ("Action", "Successfully executed action queue:alerts")
    assert kinds[1][0] == "StateUpdate"
