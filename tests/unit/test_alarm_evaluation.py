"""Alarm evaluation as pure functions: comparisons, M of N, missing data, validation."""

from __future__ import annotations

import json

import pytest

from faasbox.api.alarms import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    AlarmDefinition,
    compare,
    parse_action,
)
from faasbox.errors import InvalidParameterError
from faasbox.events.alarms import alarm_event, evaluate, iso
from faasbox.stores.alarms import AlarmRow
from faasbox.stores.metrics import Stats

NOW = 1_700_000_005.0  # 5 s into a 10-second period
P = 10
CURRENT = int(NOW // P) * P  # the running period
LAST = CURRENT - P  # the last complete one


def alarm(**changes) -> AlarmDefinition:
    fields = dict(
        namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": "pages"}, statistic="Maximum", period_s=P,
        evaluation_periods=1, threshold=100, comparison_operator="GreaterThanOrEqualToThreshold",
    )
    fields.update(changes)
    return AlarmDefinition.build("pages-deep", **fields)


def series(*values: float | None, end: int = LAST) -> dict[int, float]:
    """Values of consecutive periods ending with the one starting at ``end``; None is a
    period without data."""
    first = end - (len(values) - 1) * P
    return {first + i * P: v for i, v in enumerate(values) if v is not None}


@pytest.mark.parametrize(
    ("operator", "value", "breaches"),
    [
        ("GreaterThanOrEqualToThreshold", 100, True),
        ("GreaterThanOrEqualToThreshold", 99.5, False),
        ("GreaterThanThreshold", 100, False),
        ("GreaterThanThreshold", 100.5, True),
        ("LessThanThreshold", 100, False),
        ("LessThanThreshold", 99, True),
        ("LessThanOrEqualToThreshold", 100, True),
        ("LessThanOrEqualToThreshold", 101, False),
    ],
)
def test_every_comparison_operator(operator: str, value: float, breaches: bool) -> None:
    assert compare(operator, value, 100) is breaches
    outcome = evaluate(alarm(comparison_operator=operator), series(value), NOW, OK)
    assert outcome.state == (ALARM if breaches else OK)


def test_the_window_is_the_last_complete_periods() -> None:
    outcome = evaluate(alarm(), series(150), NOW, INSUFFICIENT_DATA)
    assert outcome.state == ALARM
    assert "1 out of the last 1 datapoints [150" in outcome.reason
    assert "greater than or equal to the threshold (100)" in outcome.reason
    assert outcome.reason_data["recentDatapoints"] == [150]
    older = series(150, end=LAST - P)
    assert evaluate(alarm(), older, NOW, OK).state == INSUFFICIENT_DATA


@pytest.mark.parametrize(
    ("changes", "running", "state"),
    [
        ({}, 150, ALARM),  # Maximum >= 100 already: final, fires early
        ({"statistic": "Sum"}, 150, ALARM),
        ({"statistic": "Average"}, 150, OK),  # an average may still fall
        ({"statistic": "Maximum"}, 50, OK),  # not breaching (yet): the window decides
        ({"comparison_operator": "LessThanThreshold", "statistic": "Sum"}, 50, OK),
        ({"comparison_operator": "LessThanThreshold", "statistic": "Minimum"}, 50, ALARM),
        ({"comparison_operator": "LessThanThreshold", "statistic": "Minimum"}, 150, OK),
    ],
)
def test_the_running_period_only_fires_early_where_its_breach_is_final(
    changes, running, state
) -> None:
    less = changes.get("comparison_operator", "").startswith("Less")
    values = {LAST: 150 if less else 50, CURRENT: running}  # LAST does not breach
    outcome = evaluate(alarm(**changes), values, NOW, OK)
    assert outcome.state == state, outcome.reason


@pytest.mark.parametrize(
    ("values", "state"),
    [
        ((0, 150, 150), ALARM),  # 2 of 3 breach
        ((150, 0, 150), ALARM),  # not necessarily consecutive
        ((150, 0, 0), OK),
        ((0, 0, 0), OK),
        ((150, 150, 150), ALARM),
    ],
)
def test_datapoints_to_alarm_m_out_of_n(values, state) -> None:
    two_of_three = alarm(evaluation_periods=3, datapoints_to_alarm=2)
    assert evaluate(two_of_three, series(*values), NOW, OK).state == state


def test_datapoints_to_alarm_defaults_to_evaluation_periods() -> None:
    three = alarm(evaluation_periods=3)
    assert three.datapoints_to_alarm == 3
    assert evaluate(three, series(150, 150, 0), NOW, OK).state == OK
    assert evaluate(three, series(150, 150, 150), NOW, OK).state == ALARM


@pytest.mark.parametrize(
    ("treat", "values", "current", "state"),
    [
        # nothing at all
        ("missing", (None, None, None), OK, INSUFFICIENT_DATA),
        ("ignore", (None, None, None), ALARM, ALARM),
        ("ignore", (None, None, None), OK, OK),
        ("breaching", (None, None, None), OK, ALARM),
        ("notBreaching", (None, None, None), ALARM, OK),
        # some missing: missing/ignore judge the datapoints there are
        ("missing", (150, 150, None), OK, ALARM),
        ("missing", (0, 150, None), OK, OK),
        ("missing", (None, 0, None), ALARM, OK),
        ("ignore", (150, None, 150), OK, ALARM),
        ("breaching", (150, None, 150), OK, ALARM),
        ("breaching", (0, None, 150), OK, OK),
        ("notBreaching", (150, None, 150), OK, OK),
    ],
)
def test_treat_missing_data(treat, values, current, state) -> None:
    three = alarm(evaluation_periods=3, treat_missing_data=treat)
    # the last value is the period before the current one (the current one is empty)
    outcome = evaluate(three, series(*values, end=CURRENT - P), NOW, current)
    assert outcome.state == state, outcome.reason


def test_insufficient_data_reason_and_evaluated_datapoints() -> None:
    outcome = evaluate(alarm(evaluation_periods=2), {}, NOW, OK)
    assert outcome.reason == "Insufficient Data: 2 datapoints were unknown."
    assert [p.keys() for p in outcome.reason_data["evaluatedDatapoints"]] == [
        {"timestamp"}, {"timestamp"}]


def test_periods_longer_than_ten_seconds_align_to_the_epoch() -> None:
    minute = alarm(period_s=60, statistic="Sum", metric="ApproximateNumberOfMessagesVisible")
    start = int(NOW // 60) * 60
    assert evaluate(minute, {start: 120.0}, NOW, OK).state == ALARM
    assert evaluate(minute, {start - 60: 120.0}, NOW, OK).state == ALARM
    assert evaluate(minute, {start - 120: 120.0}, NOW, OK).state == INSUFFICIENT_DATA


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric": "Depth"}, "unknown metric 'Depth'"),
        ({"namespace": "AWS/EC2"}, "unknown namespace"),
        ({"statistic": "Median"}, "unknown statistic 'Median'"),
        ({"statistic": "p101"}, "unknown statistic"),
        ({"comparison_operator": "Above"}, "unknown comparison operator 'Above'"),
        ({"period_s": 15}, "multiple of 10"),
        ({"period_s": 0}, "multiple of 10"),
        ({"evaluation_periods": 0}, "evaluation_periods"),
        ({"evaluation_periods": 2, "datapoints_to_alarm": 3}, "datapoints_to_alarm"),
        ({"period_s": 3600, "evaluation_periods": 25}, "one day"),
        ({"treat_missing_data": "zero"}, "treat_missing_data"),
        ({"dimensions": {"FunctionName": "x"}}, "exactly one dimension, QueueName"),
        ({"threshold": float("nan")}, "threshold"),
        ({"alarm_actions": ["sns:topic"]}, "invalid alarm action 'sns:topic'"),
        ({"ok_actions": ["queue:a:b"]}, "invalid alarm action"),
        ({"alarm_actions": [f"queue:q{i}" for i in range(6)]}, "at most 5"),
    ],
)
def test_bad_definitions_are_refused_with_a_clear_error(changes, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        alarm(**changes)


def test_definition_round_trips_and_actions_parse() -> None:
    made = alarm(alarm_actions=["function:on-alarm:live", "queue:alerts"], ok_actions=[])
    again = AlarmDefinition.from_dict(made.to_dict())
    assert again == made and again.dimensions_key == "QueueName=pages"
    assert parse_action("function:on-alarm:live") == ("function", "on-alarm", "live")
    assert parse_action("queue:alerts") == ("queue", "alerts", None)
    assert made.actions_for(ALARM) == ("function:on-alarm:live", "queue:alerts")
    disabled = alarm(alarm_actions=["queue:alerts"], actions_enabled=False)
    assert disabled.actions_for(ALARM) == ()
    with pytest.raises(InvalidParameterError, match="unknown alarm fields"):
        AlarmDefinition.from_dict({**made.to_dict(), "colour": "red"})


def test_missing_and_unknown_fields_are_named_before_any_value_is_judged() -> None:
    fields = alarm().to_dict()
    del fields["name"], fields["statistic"], fields["period_s"]
    with pytest.raises(InvalidParameterError) as missing:
        AlarmDefinition.from_fields("a", fields)
    assert missing.value.message == "alarm 'a' is missing required fields: statistic, period_s"
    with pytest.raises(InvalidParameterError, match=r"unknown alarm fields: \['colour'\]"):
        AlarmDefinition.from_fields("a", {"colour": "red"})
    with pytest.raises(InvalidParameterError, match="an alarm needs a name"):
        AlarmDefinition.from_dict({})


def test_alarm_event_has_cloudwatchs_lambda_shape() -> None:
    definition = alarm(description="pages piling up")
    row = AlarmRow(definition, 1, INSUFFICIENT_DATA, "Unchecked: Initial alarm creation", {},
                   NOW - 60, NOW - 60, NOW - 60)
    outcome = evaluate(definition, series(150), NOW, row.state)
    event = alarm_event(row, outcome, NOW)
    assert event["source"] == "aws.cloudwatch"
    assert event["alarmArn"].endswith(":alarm:pages-deep")
    assert event["time"] == iso(NOW) and event["time"].endswith("+0000")
    data = event["alarmData"]
    assert data["alarmName"] == "pages-deep"
    assert data["state"]["value"] == ALARM and data["previousState"]["value"] == INSUFFICIENT_DATA
    assert json.loads(data["state"]["reasonData"])["threshold"] == 100
    metric = data["configuration"]["metrics"][0]["metricStat"]
    assert metric == {"metric": {"namespace": "AWS/SQS",
                                 "name": "ApproximateNumberOfMessagesVisible",
                                 "dimensions": {"QueueName": "pages"}},
                      "period": 10, "stat": "Maximum"}
    assert data["configuration"]["description"] == "pages piling up"


def test_percentiles_merge_across_datapoints_within_the_documented_error() -> None:
    first = Stats.of(*range(1, 501))
    second = Stats.of(*range(501, 1001))
    merged = Stats().merge(first).merge(second)
    assert merged.count == 1000 and merged.sum == sum(range(1, 1001))
    assert (merged.min, merged.max) == (1, 1000)
    for p in (50, 90, 99):
        exact = p * 10
        assert abs(merged.percentile(p) - exact) / exact <= 0.045, p
    assert merged.value("p100") == 1000 and merged.value("Average") == 500.5
    assert Stats.of(0, 0, 5).value("p50") == 0
