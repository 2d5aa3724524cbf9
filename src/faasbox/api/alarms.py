"""Metric alarms with Amazon CloudWatch semantics.

An alarm watches one metric's statistic over ``period_s`` periods. Every evaluation
looks at the last ``evaluation_periods`` periods and goes ``ALARM`` when at least
``datapoints_to_alarm`` of them breach the threshold, ``OK`` when not, and
``INSUFFICIENT_DATA`` when there is not enough data (``treat_missing_data`` says how a
period without data counts). Alarms start in ``INSUFFICIENT_DATA``. On each change of
state the actions of the new state run: ``function:NAME[:QUALIFIER]`` invokes the
function asynchronously with CloudWatch's alarm event, ``queue:NAME`` sends that event
to the queue as a message.
"""

from __future__ import annotations

import abc
import builtins
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faasbox.api.metrics import check_metric, check_period, check_statistic
from faasbox.errors import InvalidParameterError
from faasbox.model import Destination, validate_name

OK = "OK"
ALARM = "ALARM"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)

#: Comparison operators, with the words CloudWatch's state reasons use.
OPERATORS = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}
#: Shorthands accepted where people type (the CLI).
OPERATOR_SYMBOLS = {
    ">=": "GreaterThanOrEqualToThreshold",
    ">": "GreaterThanThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}
TREAT_MISSING = ("missing", "notBreaching", "breaching", "ignore")
#: CloudWatch's limits: 5 actions per state, one day of evaluation range.
MAX_ACTIONS = 5
MAX_RANGE_S = 86400


def compare(operator: str, value: float, threshold: float) -> bool:
    """Whether ``value`` breaches ``threshold`` under ``operator``."""
    if operator == "GreaterThanOrEqualToThreshold":
        return value >= threshold
    if operator == "GreaterThanThreshold":
        return value > threshold
    if operator == "LessThanThreshold":
        return value < threshold
    if operator == "LessThanOrEqualToThreshold":
        return value <= threshold
    raise InvalidParameterError(f"unknown comparison operator {operator!r}")


def parse_action(action: str) -> tuple[str, str, str | None]:
    """``function:NAME[:QUALIFIER]`` or ``queue:NAME`` -> (kind, name, qualifier).
    Raises InvalidParameterError for anything else."""
    target = Destination.parse(action, "alarm action")
    return target.kind, target.name, target.qualifier


@dataclass(frozen=True)
class AlarmDefinition:
    """What an alarm watches and does; validated when built (:meth:`build`)."""

    name: str
    namespace: str
    metric: str
    dimensions: Mapping[str, str]
    statistic: str
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison_operator: str
    treat_missing_data: str = "missing"
    description: str = ""
    actions_enabled: bool = True
    alarm_actions: tuple[str, ...] = ()
    ok_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    #: Filled by the service: the dimensions' canonical key.
    dimensions_key: str = field(default="", compare=False)

    @classmethod
    def build(
        cls,
        name: str,
        *,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        statistic: str,
        period_s: int,
        evaluation_periods: int,
        threshold: float,
        comparison_operator: str,
        datapoints_to_alarm: int | None = None,
        treat_missing_data: str = "missing",
        description: str = "",
        actions_enabled: bool = True,
        alarm_actions: Sequence[str] = (),
        ok_actions: Sequence[str] = (),
        insufficient_data_actions: Sequence[str] = (),
    ) -> AlarmDefinition:
        """Validate every field; raises InvalidParameterError naming the first bad one."""
        validate_name(name, "alarm name")
        key = check_metric(namespace, metric, dimensions)
        check_statistic(statistic)
        period = check_period(period_s)
        if not _is_int(evaluation_periods) or evaluation_periods < 1:
            raise InvalidParameterError(
                f"evaluation_periods={evaluation_periods!r} must be a whole number >= 1"
            )
        if period * evaluation_periods > MAX_RANGE_S:
            raise InvalidParameterError(
                f"period_s x evaluation_periods = {period * evaluation_periods} s is over "
                f"the {MAX_RANGE_S} s (one day) an alarm may look back"
            )
        if datapoints_to_alarm is None:
            datapoints_to_alarm = evaluation_periods
        if not _is_int(datapoints_to_alarm) or not 1 <= datapoints_to_alarm <= evaluation_periods:
            raise InvalidParameterError(
                f"datapoints_to_alarm={datapoints_to_alarm!r} must be from 1 to "
                f"evaluation_periods ({evaluation_periods})"
            )
        if (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                or not math.isfinite(threshold)):
            raise InvalidParameterError(f"threshold={threshold!r} must be a finite number")
        if comparison_operator not in OPERATORS:
            raise InvalidParameterError(
                f"unknown comparison operator {comparison_operator!r}: use one of "
                f"{', '.join(OPERATORS)}"
            )
        if treat_missing_data not in TREAT_MISSING:
            raise InvalidParameterError(
                f"unknown treat_missing_data {treat_missing_data!r}: use one of "
                f"{', '.join(TREAT_MISSING)}"
            )
        if not isinstance(description, str) or len(description) > 1024:
            raise InvalidParameterError("description must be text of at most 1024 characters")
        lists = {"alarm_actions": alarm_actions, "ok_actions": ok_actions,
                 "insufficient_data_actions": insufficient_data_actions}
        for what, actions in lists.items():
            if isinstance(actions, str) or not isinstance(actions, Sequence):
                raise InvalidParameterError(f"{what} must be a list of actions")
            if len(actions) > MAX_ACTIONS:
                raise InvalidParameterError(f"{what}: at most {MAX_ACTIONS} actions")
            for action in actions:
                parse_action(action)
        return cls(
            name=name, namespace=namespace, metric=metric, dimensions=dict(dimensions),
            statistic=statistic, period_s=period, evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm, threshold=float(threshold),
            comparison_operator=comparison_operator, treat_missing_data=treat_missing_data,
            description=description, actions_enabled=bool(actions_enabled),
            alarm_actions=tuple(alarm_actions), ok_actions=tuple(ok_actions),
            insufficient_data_actions=tuple(insufficient_data_actions), dimensions_key=key,
        )

    def actions_for(self, state: str) -> tuple[str, ...]:
        """The actions to run on entering ``state`` (none while actions are disabled)."""
        if not self.actions_enabled:
            return ()
        return {ALARM: self.alarm_actions, OK: self.ok_actions,
                INSUFFICIENT_DATA: self.insufficient_data_actions}[state]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "metric": self.metric,
            "dimensions": dict(self.dimensions),
            "statistic": self.statistic,
            "period_s": self.period_s,
            "evaluation_periods": self.evaluation_periods,
            "datapoints_to_alarm": self.datapoints_to_alarm,
            "threshold": self.threshold,
            "comparison_operator": self.comparison_operator,
            "treat_missing_data": self.treat_missing_data,
            "description": self.description,
            "actions_enabled": self.actions_enabled,
            "alarm_actions": list(self.alarm_actions),
            "ok_actions": list(self.ok_actions),
            "insufficient_data_actions": list(self.insufficient_data_actions),
        }

    @classmethod
    def from_fields(cls, name: str, fields: Mapping[str, Any]) -> AlarmDefinition:
        """Build (and validate) from the fields of a request (all but ``name``). Raises
        InvalidParameterError naming every unknown field, or every required field left
        out, before looking at their values."""
        if not isinstance(fields, Mapping):
            raise InvalidParameterError("an alarm must be an object")
        unknown = set(fields) - (FIELDS - {"name"})
        if unknown:
            raise InvalidParameterError(f"unknown alarm fields: {sorted(unknown)}")
        missing = [f for f in REQUIRED if f not in fields]
        if missing:
            raise InvalidParameterError(
                f"alarm {name!r} is missing required fields: {', '.join(missing)}"
            )
        return cls.build(name, **fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlarmDefinition:
        """Build (and validate) from ``to_dict``'s shape; see :meth:`from_fields`."""
        if not isinstance(data, Mapping):
            raise InvalidParameterError("an alarm must be an object")
        fields = dict(data)
        if "name" not in fields:
            raise InvalidParameterError("an alarm needs a name")
        name = fields.pop("name")
        return cls.from_fields(name, fields)


#: Every field of an alarm definition.
FIELDS = frozenset({
    "name", "namespace", "metric", "dimensions", "statistic", "period_s",
    "evaluation_periods", "datapoints_to_alarm", "threshold", "comparison_operator",
    "treat_missing_data", "description", "actions_enabled", "alarm_actions", "ok_actions",
    "insufficient_data_actions",
})
#: The fields a definition must give (besides its name), in the order errors list them.
REQUIRED = ("namespace", "metric", "dimensions", "statistic", "period_s",
            "evaluation_periods", "threshold", "comparison_operator")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Alarms(abc.ABC):
    """The alarms of one platform.

    Alarm dicts (``put``/``get``/``list``) are the definition (``AlarmDefinition.to_dict``)
    plus ``arn``, ``state``, ``state_reason``, ``state_updated_at``, ``created_at`` and
    ``updated_at``.
    """

    @abc.abstractmethod
    def put(self, name: str, **definition: Any) -> dict[str, Any]:
        """Create the alarm, or replace its definition (its state is kept, as with
        CloudWatch's PutMetricAlarm). Fields as :meth:`AlarmDefinition.build`. Raises
        InvalidParameterError for an unknown or missing field, a bad value, an unknown
        metric, statistic or operator, or a period that is not a multiple of 10 s;
        FunctionNotFoundError (VersionNotFoundError, AliasNotFoundError) or
        QueueNotFoundError for an action whose target does not exist;
        ServiceUnavailableError for a metric folded from invocation records where the
        state store is not SQLite; nothing changes then."""

    @abc.abstractmethod
    def get(self, name: str) -> dict[str, Any]:
        """The alarm. Raises AlarmNotFoundError."""

    @abc.abstractmethod
    def list(
        self, prefix: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Alarms sorted by name, optionally those whose name starts with ``prefix``
        or that are in ``state``."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete the alarm, its history and its undelivered actions. Raises
        AlarmNotFoundError."""

    @abc.abstractmethod
    def history(self, name: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The alarm's history, newest first: ``{"timestamp", "type", "summary",
        "data"}``; ``type`` is ``ConfigurationUpdate``, ``StateUpdate`` (``data`` has
        ``old_state``, ``new_state``, ``reason``) or ``Action`` (an action delivered, or
        given up on). Raises AlarmNotFoundError."""

    @abc.abstractmethod
    def evaluate_now(self) -> builtins.list[dict[str, Any]]:
        """Evaluate every alarm now (what the driver does after each metric tick) and
        deliver pending actions; returns the alarms whose state changed."""
