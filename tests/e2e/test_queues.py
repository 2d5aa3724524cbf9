"""Queues as a user drives them: the real server over HTTP, the real CLI, and a
SIGKILL between receive and delete."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server

from faasbox.errors import InvalidParameterError, InvalidReceiptHandleError, QueueNotFoundError
from faasbox.remote import RemoteClient


def _json(done: subprocess.CompletedProcess[str]):
    return json.loads(done.stdout)


def test_cli_create_send_receive_delete(server: Server) -> None:
    info = _json(server.cli("queue", "create", "cli-jobs", "--visibility-timeout", "60",
                            "--json"))
    assert info["name"] == "cli-jobs" and info["visibility_timeout_s"] == 60
    sent = _json(server.cli("queue", "send", "cli-jobs", "hello queue", "--json"))
    server.cli("queue", "send", "cli-jobs", "second")
    listing = _json(server.cli("queue", "ls", "--json"))
    assert [(q["name"], q["visible"]) for q in listing if q["name"] == "cli-jobs"] == [
        ("cli-jobs", 2)]
    got = _json(server.cli("queue", "receive", "cli-jobs", "--max", "10", "--json"))
    assert sorted(m["body"] for m in got) == ["hello queue", "second"]
    assert sent["message_id"] in {m["message_id"] for m in got}
    table = server.cli("queue", "ls").stdout
    assert "cli-jobs" in table
    done = server.cli("queue", "delete", "cli-jobs", *(m["receipt_handle"] for m in got),
                      "--json")
    assert len(_json(done)["deleted"]) == 2
    again = server.cli("queue", "delete", "cli-jobs", got[0]["receipt_handle"], check=False)
    assert again.returncode == 1 and "ReceiptHandleIsInvalid" in again.stderr
    attrs = _json(server.cli("queue", "attrs", "cli-jobs", "--json"))
    assert (attrs["visible"], attrs["in_flight"]) == (0, 0)


def test_cli_receive_table_shows_handles(server: Server) -> None:
    server.cli("queue", "create", "cli-table")
    server.cli("queue", "send", "cli-table", "tabled")
    out = server.cli("queue", "receive", "cli-table").stdout
    assert "tabled" in out and "RECEIPT HANDLE" in out
    assert "No messages." in server.cli("queue", "receive", "cli-table").stdout


def test_cli_dead_letter_attrs_redrive_purge_rm(server: Server) -> None:
    server.cli("queue", "create", "cli-dlq")
    server.cli("queue", "create", "cli-work", "--dlq", "cli-dlq", "--max-receive-count", "1")
    server.cli("queue", "send", "cli-work", "poison")
    server.cli("queue", "receive", "cli-work", "--visibility", "0")
    assert _json(server.cli("queue", "receive", "cli-work", "--json")) == []  # moved
    assert _json(server.cli("queue", "attrs", "cli-dlq", "--json"))["visible"] == 1
    assert _json(server.cli("queue", "redrive", "cli-dlq", "--json")) == {"moved": 1}
    changed = _json(server.cli("queue", "attrs", "cli-work", "--no-dlq", "--delay", "3",
                               "--json"))
    assert (changed["dead_letter_queue"], changed["delay_s"]) == (None, 3)
    assert _json(server.cli("queue", "purge", "cli-work", "--json")) == {"purged": 1}
    server.cli("queue", "rm", "cli-work")
    server.cli("queue", "rm", "cli-dlq")
    missing = server.cli("queue", "attrs", "cli-work", check=False)
    assert missing.returncode == 1 and "Queue not found: cli-work" in missing.stderr


def test_cli_bad_input_is_one_clear_line(server: Server) -> None:
    bad = server.cli("queue", "create", "no/slash", check=False)
    assert bad.returncode == 1 and "invalid queue name" in bad.stderr
    bad = server.cli("queue", "create", "cli-bad", "--retention", "1", check=False)
    assert bad.returncode == 1 and "retention_s=1 is out of range" in bad.stderr
    assert "cli-bad" not in server.cli("queue", "ls").stdout
    server.cli("queue", "create", "cli-small", "--max-message-bytes", "1024")
    big = server.cli("queue", "send", "cli-small", "x" * 2000, check=False)
    assert big.returncode == 1 and "over queue cli-small's max_message_bytes" in big.stderr


def test_http_routes_and_errors(http: httpx.Client) -> None:
    created = http.put("/v1/queues/http-q", json={"visibility_timeout_s": 5})
    assert created.status_code == 200 and created.json()["visibility_timeout_s"] == 5
    assert http.put("/v1/queues/http-q", json={"visibility_timeout_s": 6}).status_code == 409
    sent = http.post("/v1/queues/http-q/messages", json={"body": "over http"}).json()
    batch = http.post("/v1/queues/http-q/messages/batch", json={"entries": [
        {"id": "a", "body": "b1"}, {"id": "b", "body": ""}]}).json()
    assert [e["id"] for e in batch["failed"]] == ["b"]
    got = http.post("/v1/queues/http-q/receive", json={"max_messages": 10}).json()["messages"]
    assert {m["body"] for m in got} == {"over http", "b1"}
    assert sent["message_id"] in {m["message_id"] for m in got}
    handle = got[0]["receipt_handle"]
    answer = http.put(f"/v1/queues/http-q/messages/{handle}/visibility",
                      json={"visibility_timeout_s": 0})
    assert answer.status_code == 204
    again = http.post("/v1/queues/http-q/receive", json={"wait_s": 1}).json()["messages"]
    assert [m["message_id"] for m in again] == [got[0]["message_id"]]
    stale = http.delete(f"/v1/queues/http-q/messages/{handle}")  # received again since
    assert stale.status_code == 400 and stale.json()["errorType"] == "ReceiptHandleIsInvalid"
    fresh = again[0]["receipt_handle"]
    assert http.delete(f"/v1/queues/http-q/messages/{fresh}").status_code == 204
    forged = http.delete("/v1/queues/http-q/messages/not/a/handle")
    assert forged.status_code == 400
    assert forged.json()["errorType"] == "ReceiptHandleIsInvalid"
    missing = http.get("/v1/queues/nope")
    assert missing.status_code == 404
    assert missing.json() == {"errorType": "QueueDoesNotExist",
                              "errorMessage": "Queue not found: nope"}
    assert http.post("/v1/queues/http-q/purge").json() == {"purged": 1}
    assert http.delete("/v1/queues/http-q").status_code == 204


def test_remote_client_raises_what_the_server_raised(remote: RemoteClient) -> None:
    queues = remote.queues
    queues.create("remote-q", visibility_timeout_s=30)
    queues.send("remote-q", "r1", message_attributes={
        "k": {"DataType": "String", "StringValue": "v"}})
    message = queues.receive("remote-q", wait_s=1)[0]
    assert message.message_attributes == {"k": {"DataType": "String", "StringValue": "v"}}
    with pytest.raises(InvalidReceiptHandleError):
        queues.delete_message("remote-q", message.receipt_handle[:-1] + "x")
    queues.change_visibility("remote-q", message.receipt_handle, 0)
    again = queues.receive("remote-q")[0]
    result = queues.delete_batch("remote-q", [
        {"id": "old", "receipt_handle": message.receipt_handle},
        {"id": "new", "receipt_handle": again.receipt_handle}])
    assert [e["id"] for e in result["successful"]] == ["new"]
    with pytest.raises(QueueNotFoundError, match="Queue not found: nope"):
        queues.get("nope")
    with pytest.raises(InvalidParameterError):
        queues.create("remote-q2", delay_s=901)
    assert "remote-q2" not in {q["name"] for q in queues.list(prefix="remote-")}
    assert queues.set_attributes("remote-q", delay_s=2)["delay_s"] == 2
    assert queues.purge("remote-q") == 0
    assert queues.redrive("remote-q") == 0
    queues.delete("remote-q")


def test_a_received_message_survives_sigkill_of_the_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_server(home)
    try:
        first.cli("queue", "create", "crash-q")
        sent = _json(first.cli("queue", "send", "crash-q", "precious", "--json"))
        got = _json(first.cli("queue", "receive", "crash-q", "--visibility", "2", "--json"))
        assert [m["message_id"] for m in got] == [sent["message_id"]]
        first.process.send_signal(signal.SIGKILL)  # between receive and delete
        first.process.wait(timeout=10)
    finally:
        stop_server(first)
    second = start_server(home)
    try:
        deadline = time.monotonic() + 30
        again: list = []
        while not again and time.monotonic() < deadline:
            again = _json(second.cli("queue", "receive", "crash-q", "--wait", "5", "--json"))
        assert [m["message_id"] for m in again] == [sent["message_id"]]
        assert again[0]["attributes"]["ApproximateReceiveCount"] == "2"
        second.cli("queue", "delete", "crash-q", again[0]["receipt_handle"])
    finally:
        assert stop_server(second) == 0
