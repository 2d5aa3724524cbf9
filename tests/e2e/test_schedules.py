"""Schedules through the real server: the HTTP API, the remote SDK and the CLI."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from tests.conftest import write_function
from tests.e2e.conftest import Server, start_server, stop_server

from faasbox.errors import FunctionNotFoundError, ScheduleNotFoundError
from faasbox.remote import RemoteClient

TICK = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event))
    return "ticked"
"""


@pytest.fixture(scope="module")
def ticker(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("ticker")
    (folder / "app.py").write_text(TICK)
    server.cli("deploy", str(folder), "--name", "ticker", "--handler", "app.handler")
    return "ticker"


def _wait_run(remote: RemoteClient, name: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        item = remote.schedules.get(name)
        if item["last_status"] not in (None, "Running"):
            return item
        time.sleep(0.05)
    raise AssertionError(f"{name} did not run")


def test_http_create_run_update_and_errors(
    http: httpx.Client, remote: RemoteClient, ticker: str
) -> None:
    answer = http.post("/v1/schedules", json={
        "name": "http-rate", "expression": "rate(1 minute)", "target": ticker,
        "input": {"from": "http"}, "start_at": time.time() - 59.7,
    })
    assert answer.status_code == 200, answer.text
    item = _wait_run(remote, "http-rate")
    assert item["last_status"] == "Succeeded" and item["run_count"] == 1
    listed = http.get("/v1/schedules", params={"prefix": "http-"}).json()["schedules"]
    assert [s["name"] for s in listed] == ["http-rate"]
    patched = http.patch("/v1/schedules/http-rate", json={"overlap": "allow"}).json()
    assert patched["overlap"] == "allow" and patched["next_run_at"] == item["next_run_at"]
    assert http.post("/v1/schedules/http-rate/disable").json()["next_run_at"] is None

    bad = http.post("/v1/schedules", json={"name": "x", "expression": "cron(0 9 * * * *)",
                                           "target": ticker})
    assert bad.status_code == 400
    assert bad.json()["errorType"] == "InvalidParameterValueException"
    assert "must be '?'" in bad.json()["errorMessage"]
    missing = http.get("/v1/schedules/nope")
    assert missing.status_code == 404 and missing.json()["errorMessage"] == (
        "Schedule not found: nope"
    )
    with pytest.raises(ScheduleNotFoundError):
        remote.schedules.enable("nope")
    with pytest.raises(FunctionNotFoundError, match="Function not found: ghost"):
        remote.schedules.create("ghost", "rate(5 minutes)", "ghost")
    assert http.delete("/v1/schedules/http-rate").status_code == 204
    assert [s["name"] for s in remote.schedules.list("http-")] == []


def test_cli_create_ls_show_disable_enable_rm(
    server: Server, remote: RemoteClient, ticker: str, tmp_path: Path
) -> None:
    payload = tmp_path / "input.json"
    payload.write_text('{"from": "cli"}')
    created = json.loads(server.cli(
        "schedule", "create", "cli-once", "--expression", "at(2021-01-01T00:00:00)",
        "--target", ticker, "--tz", "Europe/Berlin", "--input", f"@{payload}", "--json",
    ).stdout)
    assert created["timezone"] == "Europe/Berlin" and created["input"] == {"from": "cli"}
    server.cli("schedule", "create", "cli-nightly", "-x", "cron(0 3 ? * MON-FRI *)",
               "-t", ticker)
    ran = _wait_run(remote, "cli-once")
    assert ran["last_status"] == "Succeeded"

    rows = {line.split()[0]: line for line in server.cli("schedule", "ls").stdout.splitlines()
            if line.strip()}
    once, nightly = rows["cli-once"], rows["cli-nightly"]
    assert "Succeeded" in once and "disabled" in once and once.rstrip().endswith("-")
    berlin = datetime.fromtimestamp(ran["last_run_at"], ZoneInfo("Europe/Berlin"))
    assert berlin.strftime("%Y-%m-%d %H:%M:%S %Z") in once  # the last run, in its timezone
    assert "cron(0 3 ? * MON-FRI *)" in nightly and "enabled" in nightly
    assert " 03:00:00 UTC" in nightly  # the next run
    rows = json.loads(server.cli("schedule", "ls", "--json").stdout)
    assert {r["name"] for r in rows} >= {"cli-once", "cli-nightly"}

    shown = server.cli("schedule", "show", "cli-once").stdout
    assert "last_request_id" in shown and ran["last_request_id"] in shown

    server.cli("schedule", "disable", "cli-nightly")
    assert remote.schedules.get("cli-nightly")["enabled"] is False
    enabled = json.loads(server.cli("schedule", "enable", "cli-nightly", "--json").stdout)
    assert enabled["enabled"] and enabled["next_run_at"] > time.time()
    again = server.cli("schedule", "enable", "cli-once", check=False)
    assert again.returncode == 1 and "already ran" in again.stderr

    bad = server.cli("schedule", "create", "cli-bad", "-x", "rate(1 minutes)", "-t", ticker,
                     check=False)
    assert bad.returncode == 1
    assert "InvalidParameterValueException" in bad.stderr and "rate(1 minute)" in bad.stderr
    tz = server.cli("schedule", "create", "cli-bad", "-x", "rate(5 minutes)", "-t", ticker,
                    "--tz", "Nowhere/City", check=False)
    assert tz.returncode == 1 and "unknown timezone 'Nowhere/City'" in tz.stderr

    server.cli("schedule", "rm", "cli-once")
    server.cli("schedule", "rm", "cli-nightly")
    gone = server.cli("schedule", "show", "cli-once", check=False)
    assert gone.returncode == 1 and "Schedule not found: cli-once" in gone.stderr


#: Notes each start (the tick's time, the request id) in the file STARTS, then sleeps
#: long enough to be cut short. Asked for a ``witness`` run, it returns at once.
SLEEPER = """
import os, time
def handler(event, context):
    if event.get("witness"):
        return "seen"
    with open(os.environ["STARTS"], "a") as starts:
        starts.write(event["time"] + " " + context.aws_request_id + "\\n")
    time.sleep(4)
    return "slept"
"""


def test_a_run_cut_short_by_sigkill_is_interrupted_and_its_tick_never_fires_again(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts.txt"
    home = tmp_path / "home"
    first = start_server(home)
    try:
        remote = first.client()
        remote.deploy("sleeper", write_function(tmp_path / "sleeper", SLEEPER),
                      handler="app.handler", timeout_s=30,
                      environment={"STARTS": str(starts)})
        created = remote.schedules.create("nap", "rate(1 minute)", "sleeper",
                                          start_at=time.time() - 59)  # a tick in ~1 s
        remote.close()
        tick = created["next_run_at"]
        deadline = time.monotonic() + 20
        while not (starts.exists() and starts.read_text()):  # the handler has begun
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.05)
    finally:
        first.process.kill()
        first.process.wait()
    assert first.process.returncode == -signal.SIGKILL

    second = start_server(home)
    try:
        remote = second.client()
        # A one-time schedule, due at once: once it has run, the driver has looked at
        # every due tick since the restart -- the cut-short one too, were it still due.
        remote.schedules.create("witness", "at(2020-01-01T00:00:00)", "sleeper",
                                input={"witness": True})
        assert _wait_run(remote, "witness")["last_status"] == "Succeeded"
        item = remote.schedules.get("nap")
        remote.close()
    finally:
        assert stop_server(second) == 0, second.log()
    assert (item["run_count"], item["last_tick_at"]) == (1, tick)
    assert (item["last_status"], item["last_error"]) == (
        "Interrupted", "the control plane stopped")
    assert item["enabled"] and item["next_run_at"] == pytest.approx(tick + 60)
    (line,) = starts.read_text().splitlines()  # one start, for that tick, ever
    assert line.split()[0] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tick))
    assert "Traceback" not in second.log(), second.log()
