"""Triggers (queue -> function mappings) through the real server: HTTP, SDK, CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import write_function
from tests.e2e.conftest import Server

from faasbox.errors import InvalidParameterError, QueueNotFoundError, TriggerNotFoundError
from faasbox.remote import RemoteClient

RECORDER = """
    def handler(event, context):
        for r in event["Records"]:
            print("GOT", r["body"], r["eventSource"])
"""


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def got(remote: RemoteClient, function: str) -> list[str]:
    return sorted(line.split()[1] for line in remote.logs(function, limit=1000).splitlines()
                  if line.startswith("GOT "))


def drained(remote: RemoteClient, queue: str) -> bool:
    info = remote.queues.get(queue)
    return info["visible"] + info["in_flight"] == 0


def test_http_routes_create_change_and_delete_a_trigger(
    http: httpx.Client, remote: RemoteClient, tmp_path: Path
) -> None:
    remote.deploy("hrec", write_function(tmp_path / "hrec", RECORDER), handler="app.handler")
    remote.queues.create("hq", visibility_timeout_s=30)
    created = http.post("/v1/triggers", json={"queue": "hq", "function": "hrec",
                                               "batch_size": 5, "enabled": False})
    assert created.status_code == 201, created.text
    trigger = created.json()
    assert (trigger["queue"], trigger["function"], trigger["batch_size"], trigger["state"]) == (
        "hq", "hrec", 5, "Disabled")
    assert trigger["report_batch_item_failures"] is False  # opt-in, as on Lambda
    path = f"/v1/triggers/{trigger['id']}"
    assert http.get(path).json() == trigger
    listed = http.get("/v1/triggers", params={"queue": "hq"}).json()["triggers"]
    assert [t["id"] for t in listed] == [trigger["id"]]
    assert http.get("/v1/triggers", params={"function": "nobody"}).json() == {"triggers": []}

    patched = http.patch(path, json={"batch_size": 20, "max_batching_window_s": 1,
                                     "max_concurrency": 4, "report_batch_item_failures": True})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["batch_size"], patched.json()["max_concurrency"],
            patched.json()["report_batch_item_failures"]) == (20, 4, True)
    assert http.patch(path, json={"max_concurrency": None}).json()["max_concurrency"] is None
    assert http.post(f"{path}/enable").json()["state"] == "Enabled"
    remote.queues.send("hq", "over-http")
    wait_for(lambda: got(remote, "hrec") == ["over-http"] and drained(remote, "hq"),
             "the message processed")
    assert http.post(f"{path}/disable").json()["state"] == "Disabled"
    assert http.delete(path).status_code == 204
    missing = http.get(path)
    assert missing.status_code == 404
    assert missing.json() == {"errorType": "ResourceNotFoundException",
                              "errorMessage": f"Trigger not found: {trigger['id']}"}


@pytest.mark.parametrize(("body", "status", "code", "text"), [
    ({"queue": "nope", "function": "hrec2"}, 404, "QueueDoesNotExist", "Queue not found: nope"),
    ({"queue": "hq2", "function": "ghost"}, 404, "ResourceNotFoundException",
     "Function not found: ghost"),
    ({"queue": "hq2", "function": "hrec2", "batch_size": 11}, 400,
     "InvalidParameterValueException", "max_batching_window_s to at least 1"),
    ({"queue": "hq2", "function": "hrec2", "batch_size": "10"}, 400,
     "InvalidParameterValueException", "batch_size"),
    ({"queue": "hq2", "function": "hrec2", "max_concurrency": 1}, 400,
     "InvalidParameterValueException", "max_concurrency=1 is out of range 2-1000"),
    ({"queue": "hq2", "function": "hrec2", "colour": "red"}, 400,
     "InvalidParameterValueException", "colour"),
])
def test_http_refuses_bad_triggers_and_creates_nothing(
    http: httpx.Client, remote: RemoteClient, tmp_path: Path,
    body: dict[str, Any], status: int, code: str, text: str,
) -> None:
    remote.deploy("hrec2", write_function(tmp_path / "hrec2", RECORDER), handler="app.handler")
    if not any(q["name"] == "hq2" for q in remote.queues.list()):
        remote.queues.create("hq2", visibility_timeout_s=30)
    answer = http.post("/v1/triggers", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["errorType"] == code
    assert text in answer.json()["errorMessage"]
    assert http.get("/v1/triggers", params={"queue": "hq2"}).json() == {"triggers": []}


def test_remote_client_raises_the_servers_errors(remote: RemoteClient, tmp_path: Path) -> None:
    remote.deploy("rrec", write_function(tmp_path / "rrec", RECORDER), handler="app.handler")
    remote.queues.create("rq", visibility_timeout_s=1)
    with pytest.raises(TriggerNotFoundError, match="Trigger not found: 123"):
        remote.triggers.get("123")
    with pytest.raises(QueueNotFoundError):
        remote.triggers.create("absent", "rrec")
    with pytest.raises(InvalidParameterError, match=r"visibility timeout \(1 s\).*\(3 s\)"):
        remote.triggers.create("rq", "rrec")
    assert remote.triggers.list(queue="rq") == []


def test_cli_adds_lists_toggles_and_removes_a_trigger(
    server: Server, remote: RemoteClient, tmp_path: Path
) -> None:
    folder = write_function(tmp_path / "crec", RECORDER)
    server.cli("deploy", str(folder), "--name", "crec", "--handler", "app.handler")
    remote.queues.create("cq", visibility_timeout_s=30)
    added = json.loads(server.cli("trigger", "add", "cq", "crec", "--batch-size", "5",
                                  "--max-concurrency", "2", "--json").stdout)
    assert (added["batch_size"], added["max_concurrency"], added["enabled"],
            added["report_batch_item_failures"]) == (5, 2, True, False)
    trigger_id = added["id"]
    for i in range(7):
        remote.queues.send("cq", f"c{i}")
    wait_for(lambda: len(got(remote, "crec")) == 7 and drained(remote, "cq"), "7 messages")
    assert got(remote, "crec") == [f"c{i}" for i in range(7)]

    table = server.cli("trigger", "ls").stdout
    assert trigger_id in table and "cq" in table and "crec" in table and "OK" in table
    assert trigger_id in server.cli("trigger", "disable", trigger_id).stdout
    shown = json.loads(server.cli("trigger", "show", trigger_id, "--json").stdout)
    assert shown["state"] == "Disabled"
    updated = json.loads(server.cli("trigger", "update", trigger_id, "--batch-size", "50",
                                    "--window", "2", "--no-max-concurrency",
                                    "--report-batch-item-failures", "--json").stdout)
    assert (updated["batch_size"], updated["max_batching_window_s"],
            updated["max_concurrency"], updated["report_batch_item_failures"]) == (
        50, 2, None, True)
    remote.queues.create("cq2", visibility_timeout_s=30)
    reported = json.loads(server.cli("trigger", "add", "cq2", "crec",
                                     "--report-batch-item-failures", "--disabled",
                                     "--json").stdout)
    assert reported["report_batch_item_failures"] is True
    server.cli("trigger", "rm", reported["id"])
    assert "Enabled" in server.cli("trigger", "enable", trigger_id).stdout
    assert trigger_id in server.cli("trigger", "show", trigger_id).stdout
    server.cli("trigger", "rm", trigger_id)
    assert json.loads(server.cli("trigger", "ls", "--queue", "cq", "--json").stdout) == []


def test_cli_errors_are_one_line_and_exit_1(server: Server, remote: RemoteClient,
                                           tmp_path: Path) -> None:
    folder = write_function(tmp_path / "erec", RECORDER)
    server.cli("deploy", str(folder), "--name", "erec", "--handler", "app.handler")
    remote.queues.create("eq", visibility_timeout_s=30)
    for args, message in [
        (("add", "nowhere", "erec"), "QueueDoesNotExist: Queue not found: nowhere"),
        (("add", "eq", "erec", "--batch-size", "11"), "max_batching_window_s to at least 1"),
        (("show", "no-such-id"), "Trigger not found: no-such-id"),
        (("rm", "no-such-id"), "Trigger not found: no-such-id"),
    ]:
        done = server.cli("trigger", *args, check=False)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert json.loads(server.cli("trigger", "ls", "--queue", "eq", "--json").stdout) == []
