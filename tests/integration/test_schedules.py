"""Schedules on a real platform: ticks fire once and are recorded, missed ticks collapse
into one run after a restart, overlap, disable/enable, one-time at(), bad input."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write_function

from faasbox.api.schedules import Schedule
from faasbox.errors import (
    AliasNotFoundError,
    ConflictError,
    FunctionNotFoundError,
    InvalidParameterError,
    ScheduleNotFoundError,
)
from faasbox.events.expressions import parse
from faasbox.model import ACCOUNT_ID, REGION, schedule_arn
from faasbox.stores.database import Database
from faasbox.stores.schedules import ScheduleStore

ECHO = """
    import json, time
    def handler(event, context):
        print("EVENT " + json.dumps(event))
        if isinstance(event, dict) and event.get("sleep"):
            time.sleep(event["sleep"])
        if isinstance(event, dict) and event.get("fail"):
            raise RuntimeError("asked to fail")
        return "done"
"""
DEADLINE_S = 20.0


def deploy_echo(client, tmp_path: Path, name: str = "echo", **kw: Any) -> None:
    folder = write_function(tmp_path / name, ECHO)
    client.deploy(name, folder, handler="app.handler", timeout_s=10, **kw)


def wait_for(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something truthy (a short deadline, no sleeps)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def finished(client, name: str, runs: int = 1) -> dict[str, Any]:
    """The schedule once ``runs`` runs have started and the last one ended."""
    def done() -> dict[str, Any] | None:
        item = client.schedules.get(name)
        ok = item["run_count"] >= runs and item["last_status"] not in (None, "Running")
        return item if ok else None
    result: dict[str, Any] = wait_for(done, f"{name} to finish {runs} run(s)")
    return result


def event_of(client, function: str, request_id: str) -> Any:
    log = client.logs(function, request_id=request_id)
    line = next(line for line in log.splitlines() if line.startswith("EVENT "))
    return json.loads(line.removeprefix("EVENT "))


def soon(period_s: int = 60, lead_s: float = 0.3) -> float:
    """A rate() start time whose first tick comes ``lead_s`` from now."""
    return time.time() - period_s + lead_s


def test_a_due_tick_fires_once_with_the_scheduled_event_and_is_recorded(
    client, tmp_path: Path
) -> None:
    deploy_echo(client, tmp_path)
    created = client.schedules.create("every-minute", "rate(1 minute)", "echo",
                                      start_at=soon())
    tick = created["next_run_at"]
    assert created["enabled"] and created["last_run_at"] is None and tick > time.time() - 1
    item = finished(client, "every-minute")
    assert item["last_status"] == "Succeeded" and item["last_error"] is None
    assert item["run_count"] == 1 and item["last_tick_at"] == tick
    assert item["next_run_at"] == pytest.approx(tick + 60)
    event = event_of(client, "echo", item["last_request_id"])
    assert event == {
        "version": "0", "id": event["id"], "detail-type": "Scheduled Event",
        "source": "aws.events", "account": ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tick)), "region": REGION,
        "resources": [schedule_arn("every-minute")], "detail": {},
    }
    assert [r.request_id for r in client.records("echo")] == [item["last_request_id"]]


def test_one_time_at_in_the_past_runs_once_with_the_fixed_input_then_stays_disabled(
    client, tmp_path: Path
) -> None:
    deploy_echo(client, tmp_path)
    client.publish("echo")
    client.set_alias("echo", "live", "1")
    payload = {"order": [1, 2, {"x": None}], "note": "fixed"}
    client.schedules.create("once", "at(2020-06-01T12:00:00)", "echo:live",
                            timezone="Europe/Paris", input=payload)
    item = finished(client, "once")
    assert item["last_status"] == "Succeeded" and item["input"] == payload
    assert not item["enabled"] and item["next_run_at"] is None and item["run_count"] == 1
    assert item["last_tick_at"] == parse("at(2020-06-01T12:00:00)", "Europe/Paris").when
    assert event_of(client, "echo", item["last_request_id"]) == payload
    assert client.records("echo")[0].qualifier == "live"
    with pytest.raises(ConflictError, match="one-time schedule that already ran"):
        client.schedules.enable("once")
    assert client.schedules.get("once") == item


def test_ticks_missed_while_down_fire_once_after_a_restart(make_platform, tmp_path) -> None:
    platform = make_platform()
    deploy_echo(platform.client(), tmp_path)
    home = platform.settings.home
    platform.close()
    # While no platform runs, a schedule is stored whose ticks began an hour ago.
    now = time.time()
    start = now - 3600 - 30
    database = Database(f"sqlite:///{home / 'state.db'}")
    ScheduleStore(database).insert(Schedule(
        name="missed", expression="rate(1 minute)", target="echo", start_at=start,
        created_at=start, next_run_at=start + 60,
    ))
    database.close()

    client = make_platform().client()
    item = finished(client, "missed")
    assert item["run_count"] == 1 and item["last_status"] == "Succeeded"
    assert item["last_tick_at"] == start + 60  # the first missed tick, once
    assert now < item["next_run_at"] <= time.time() + 60  # then the next future tick
    assert (item["next_run_at"] - start) % 60 == pytest.approx(0, abs=1e-6)
    assert len(client.records("echo")) == 1


def test_a_tick_is_claimed_by_one_claimer_only(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'race.db'}")
    store = ScheduleStore(database)
    store.insert(Schedule(name="race", expression="rate(1 minute)", target="echo",
                          enabled=True, next_run_at=100.0))
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.append(store.claim("race", 100.0, 160.0, run_at=time.time()))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
    stored = store.get("race")
    database.close()
    assert stored is not None and stored.run_count == 1 and stored.next_run_at == 160.0


@pytest.mark.parametrize(("overlap", "runs", "skipped"), [("skip", 1, 1), ("allow", 2, 0)])
def test_overlap_policy_while_a_run_is_still_going(
    client, tmp_path: Path, overlap: str, runs: int, skipped: int
) -> None:
    deploy_echo(client, tmp_path)
    client.schedules.create("slow", "rate(1 minute)", "echo", input={"sleep": 1.5},
                            overlap=overlap, start_at=soon())
    wait_for(lambda: client.schedules.get("slow")["last_status"] == "Running", "a run")
    # Move the grid so that a second tick comes while the first run sleeps.
    client.schedules.update("slow", start_at=soon(lead_s=0.1))
    wait_for(lambda: client.schedules.get("slow")["next_run_at"] > time.time() + 30,
             "the second tick to be claimed")
    item = finished(client, "slow", runs)
    wait_for(lambda: len(client.records("echo")) == runs, f"{runs} invocation record(s)")
    assert (item["run_count"], item["skipped_count"]) == (runs, skipped)


def test_a_disabled_schedule_does_not_fire_and_enabling_skips_missed_ticks(
    client, tmp_path: Path
) -> None:
    deploy_echo(client, tmp_path, "quiet")
    deploy_echo(client, tmp_path, "witness")
    start = soon()
    off = client.schedules.create("off", "rate(1 minute)", "quiet", start_at=start,
                                  enabled=False)
    assert not off["enabled"] and off["next_run_at"] is None
    client.schedules.create("on", "rate(1 minute)", "witness", start_at=start)
    client.schedules.create("paused", "rate(1 minute)", "quiet", start_at=soon(lead_s=5))
    client.schedules.disable("paused")
    finished(client, "on")  # the same tick as "off": it has come and gone
    assert client.schedules.get("off")["run_count"] == 0
    assert client.records("quiet") == []
    enabled = client.schedules.enable("off")
    assert enabled["enabled"] and enabled["next_run_at"] == pytest.approx(start + 120)
    assert client.schedules.enable("off") == enabled  # idempotent
    assert client.schedules.get("paused")["next_run_at"] is None
    assert client.schedules.disable("paused")["enabled"] is False


def test_function_errors_and_throttles_are_failed_runs_without_retries(
    client, tmp_path: Path
) -> None:
    deploy_echo(client, tmp_path)
    deploy_echo(client, tmp_path, "blocked", reserved_concurrency=0)
    client.schedules.create("fails", "rate(5 minutes)", "echo", input={"fail": True},
                            start_at=soon(300))
    client.schedules.create("throttled", "rate(5 minutes)", "blocked", start_at=soon(300))
    failed = finished(client, "fails")
    assert failed["last_status"] == "Failed" and "asked to fail" in failed["last_error"]
    assert failed["last_request_id"] == client.records("echo")[0].request_id
    throttled = finished(client, "throttled")
    assert throttled["last_status"] == "Throttled" and "reserved" in throttled["last_error"]
    assert throttled["run_count"] == 1
    assert throttled["next_run_at"] > time.time() + 200  # no retry: the next tick


def test_cron_schedule_in_a_timezone_lists_and_updates(client, tmp_path: Path) -> None:
    deploy_echo(client, tmp_path)
    made = client.schedules.create("weekday", "cron(30 9 ? * MON-FRI *)", "echo",
                                   timezone="America/New_York")
    expected = parse("cron(30 9 ? * MON-FRI *)", "America/New_York").next_after(
        made["created_at"], made["start_at"])
    assert made["next_run_at"] == expected
    client.schedules.create("other", "0 3 * * *", "echo")
    assert [s["name"] for s in client.schedules.list()] == ["other", "weekday"]
    assert [s["name"] for s in client.schedules.list("week")] == ["weekday"]
    changed = client.schedules.update("weekday", expression="cron(0 12 L * ? *)",
                                      timezone="UTC", input={"a": 1})
    assert changed["expression"] == "cron(0 12 L * ? *)" and changed["input"] == {"a": 1}
    assert changed["next_run_at"] == parse("cron(0 12 L * ? *)").next_after(
        time.time() - 5, 0.0)
    assert client.schedules.update("weekday", input=None)["input"] is None
    client.schedules.delete("weekday")
    with pytest.raises(ScheduleNotFoundError, match="Schedule not found: weekday"):
        client.schedules.get("weekday")
    with pytest.raises(ScheduleNotFoundError):
        client.schedules.delete("weekday")


def test_bad_input_is_refused_with_a_clear_error_and_changes_nothing(
    client, tmp_path: Path
) -> None:
    deploy_echo(client, tmp_path)
    client.schedules.create("kept", "rate(1 hour)", "echo")
    before = client.schedules.list()
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"name": "bad name!"}, InvalidParameterError, "invalid schedule name"),
        ({"expression": "rate(1 minutes)"}, InvalidParameterError, "write rate(1 minute)"),
        ({"expression": "cron(0 12 * * * *)"}, InvalidParameterError, "must be '?'"),
        ({"timezone": "Moon/Base"}, InvalidParameterError, "unknown timezone 'Moon/Base'"),
        ({"target": "missing"}, FunctionNotFoundError, "Function not found: missing"),
        ({"target": "echo:nope"}, AliasNotFoundError, "Alias not found: echo:nope"),
        ({"overlap": "queue"}, InvalidParameterError, "invalid overlap 'queue'"),
        ({"input": {"x": {1, 2}}}, InvalidParameterError, "input is not JSON-serializable"),
        ({"input": "x" * 300_000}, InvalidParameterError, "over the 262144-byte limit"),
        ({"start_at": float("nan")}, InvalidParameterError, "invalid start_at"),
        ({"name": "kept"}, ConflictError, "schedule 'kept' already exists"),
    ]
    for override, error, message in cases:
        args = {"name": "new", "expression": "rate(5 minutes)", "target": "echo", **override}
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
            client.schedules.create(
                args.pop("name"), args.pop("expression"), args.pop("target"), **args
            )
    with pytest.raises(InvalidParameterError, match="cannot update enabled"):
        client.schedules.update("kept", enabled=False)
    with pytest.raises(InvalidParameterError, match="bad hours field '25'"):
        client.schedules.update("kept", expression="cron(0 25 * * ? *)")
    assert client.schedules.list() == before
