"""Queues as a user drives them: the real server over HTTP, the real CLI, and a
SIGKILL between receive and delete."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from tests.conftest import admin_credentials, sign_with
from tests.e2e.conftest import Server, start_server, stop_server

from faasbox.config import Settings
from faasbox.errors import InvalidParameterError, InvalidReceiptHandleError, QueueNotFoundError
from faasbox.platform import Platform
from faasbox.remote import RemoteClient
from faasbox.remote.signing import SigV4
from faasbox.server.app import create_app
from faasbox.server.queues import ReceiveSlots

with warnings.catch_warnings():  # starlette's notice about a future httpx; not ours
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

#: More long polls than the shared thread pool of the other routes has threads (40).
POLLS = 60


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
    done = server.cli("queue", "delete-message", "cli-jobs",
                      *(m["receipt_handle"] for m in got), "--json")
    assert len(_json(done)["deleted"]) == 2
    again = server.cli("queue", "delete-message", "cli-jobs", got[0]["receipt_handle"],
                       check=False)
    assert again.returncode == 1 and "ReceiptHandleIsInvalid" in again.stderr
    attrs = _json(server.cli("queue", "attrs", "cli-jobs", "--json"))
    assert (attrs["visible"], attrs["in_flight"]) == (0, 0)


def test_cli_receive_table_shows_handles(server: Server) -> None:
    server.cli("queue", "create", "cli-table")
    server.cli("queue", "send", "cli-table", "tabled")
    out = server.cli("queue", "receive", "cli-table").stdout
    assert "tabled" in out and "RECEIPT HANDLE" in out
    assert "No messages." in server.cli("queue", "receive", "cli-table").stdout


def test_cli_dead_letter_attrs_redrive_purge_delete(server: Server) -> None:
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
    assert "Deleted queue cli-work" in server.cli("queue", "delete", "cli-work").stdout
    server.cli("queue", "rm", "cli-dlq")  # the alias other resources' commands use
    missing = server.cli("queue", "attrs", "cli-work", check=False)
    assert missing.returncode == 1 and "Queue not found: cli-work" in missing.stderr
    names = {q["name"] for q in _json(server.cli("queue", "ls", "--json"))}
    assert not names & {"cli-work", "cli-dlq"}


def test_cli_send_batch_and_change_visibility(server: Server, tmp_path: Path) -> None:
    server.cli("queue", "create", "cli-batch", "--visibility-timeout", "300")
    (tmp_path / "third.txt").write_text("from a file")
    sent = _json(server.cli("queue", "send-batch", "cli-batch", "first", "",
                            f"@{tmp_path / 'third.txt'}", "--json", check=False))
    assert [item["id"] for item in sent["successful"]] == ["0", "2"]
    assert [(item["id"], item["code"]) for item in sent["failed"]] == [
        ("1", "InvalidParameterValueException")]  # the empty body fails alone
    partly = server.cli("queue", "send-batch", "cli-batch", "fourth", "", check=False)
    assert partly.returncode == 1 and "body 1: InvalidParameterValueException" in partly.stderr
    assert "Sent " in partly.stdout
    got = _json(server.cli("queue", "receive", "cli-batch", "--max", "10", "--json"))
    assert sorted(m["body"] for m in got) == ["first", "fourth", "from a file"]
    first = next(m for m in got if m["body"] == "first")
    assert "visible again now" in server.cli(
        "queue", "change-visibility", "cli-batch", first["receipt_handle"], "0").stdout
    again = _json(server.cli("queue", "receive", "cli-batch", "--max", "10", "--json"))
    assert [m["message_id"] for m in again] == [first["message_id"]]  # only the released one
    server.cli("queue", "change-visibility", "cli-batch", again[0]["receipt_handle"], "600")
    assert _json(server.cli("queue", "attrs", "cli-batch", "--json"))["in_flight"] == 3
    stale = server.cli("queue", "change-visibility", "cli-batch", first["receipt_handle"], "0",
                       check=False)  # the handle of an earlier receive
    assert stale.returncode == 1 and "ReceiptHandleIsInvalid" in stale.stderr
    too_many = server.cli("queue", "send-batch", "cli-batch", *"abcdefghijk", check=False)
    assert too_many.returncode == 1 and "11 bodies: a batch takes 1-10" in too_many.stderr
    assert _json(server.cli("queue", "attrs", "cli-batch", "--json"))["visible"] == 0


def test_cli_send_batch_over_256_kb_in_all_sends_nothing(server: Server, tmp_path: Path) -> None:
    server.cli("queue", "create", "cli-big")
    files = []
    for index in range(2):  # each under the message limit, 400 KB together
        files.append(tmp_path / f"body{index}.txt")
        files[-1].write_text(str(index) * 200_000)
    big = server.cli("queue", "send-batch", "cli-big", *(f"@{f}" for f in files), check=False)
    assert big.returncode == 1
    assert "batch is 400000 bytes in all" in big.stderr and "262144-byte limit" in big.stderr
    assert _json(server.cli("queue", "attrs", "cli-big", "--json"))["visible"] == 0


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


def _wait_for(predicate, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_waiting_long_polls_do_not_hold_up_the_send_that_wakes_them(
    server: Server, http: httpx.Client,
) -> None:
    """Receives wait in threads of their own: with 60 long polls parked, a send still
    answers at once and one of the polls gets its message. (Were they in the shared
    pool, its 40 threads would all be waiting: the send would answer only after those
    polls had ended empty.)"""
    assert http.put("/v1/queues/lp-q").status_code == 200
    answers: list[httpx.Response] = []
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=POLLS + 10)
    with httpx.Client(base_url=server.url, timeout=60, limits=limits,
                      auth=SigV4(server.credentials)) as polls:

        def poll() -> None:
            answer = polls.post("/v1/queues/lp-q/receive", json={"wait_s": 20})
            with lock:
                answers.append(answer)

        pollers = [threading.Thread(target=poll) for _ in range(POLLS)]
        for poller in pollers:
            poller.start()
        try:
            time.sleep(1.0)  # let them park (with the fix the outcome is the same either way)
            assert http.get("/v1/queues", params={"prefix": "lp-"}).status_code == 200
            sent = http.post("/v1/queues/lp-q/messages", json={"body": "wake one"})
            assert sent.status_code == 200, sent.text
            with lock:  # the send answered before any poll gave up waiting
                assert all(a.status_code == 200 and a.json()["messages"] for a in answers), [
                    a.text for a in answers]
            _wait_for(lambda: len(answers) >= 1, "the poll that gets the message")
        finally:
            http.delete("/v1/queues/lp-q")  # the other polls end: QueueDoesNotExist
            for poller in pollers:
                poller.join(timeout=60)
    assert not any(poller.is_alive() for poller in pollers)
    got = [a.json()["messages"] for a in answers if a.status_code == 200]
    assert [[m["body"] for m in messages] for messages in got] == [["wake one"]]
    assert got[0][0]["message_id"] == sent.json()["message_id"]
    assert sorted(a.status_code for a in answers) == [200] + [404] * (POLLS - 1)


def test_full_receive_slots_answer_429_at_once(tmp_path: Path) -> None:
    """Past its receive slots the server refuses a receive at once (it does not queue
    it behind long polls); the slots free up as the polls end."""
    settings = Settings.from_env({}, isolation="process", home=tmp_path / "home")
    with Platform(settings) as platform:
        app = create_app(platform.client())
        slots = app.state.receive_slots = ReceiveSlots(2)
        with TestClient(app, raise_server_exceptions=False) as api:
            sign_with(api, admin_credentials(platform))
            api.put("/v1/queues/few")
            answers: list[list[str]] = []

            def poll() -> None:
                found = api.post("/v1/queues/few/receive", json={"wait_s": 20})
                answers.append([m["body"] for m in found.json()["messages"]])

            pollers = [threading.Thread(target=poll) for _ in range(2)]
            for poller in pollers:
                poller.start()
            try:
                _wait_for(lambda: slots.in_use == 2, "two waiting receives")
                extra = api.post("/v1/queues/few/receive", json={"wait_s": 0})
                assert extra.status_code == 429, extra.text
                assert extra.json() == {
                    "errorType": "TooManyRequestsException",
                    "errorMessage": "the server's 2 concurrent queue receives are in use; "
                                    "retry later"}
            finally:
                for body in ("one", "two"):
                    assert api.post("/v1/queues/few/messages",
                                    json={"body": body}).status_code == 200
                for poller in pollers:
                    poller.join(timeout=30)
            assert sorted(answers) == [["one"], ["two"]]
            assert slots.in_use == 0
            assert api.post("/v1/queues/few/receive").json() == {"messages": []}


def test_receive_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReceiveSlots(0)


def test_remote_client_raises_what_the_server_raised(remote: RemoteClient) -> None:
    queues = remote.queues
    queues.create("remote-q", visibility_timeout_s=30)
    queues.send("remote-q", "r1", message_attributes={
        "k": {"DataType": "String", "StringValue": "v"}})
    message = queues.receive("remote-q", wait_s=1)[0]
    assert message.message_attributes == {"k": {"DataType": "String", "StringValue": "v"}}
    with pytest.raises(InvalidReceiptHandleError):
        handle = message.receipt_handle
        queues.delete_message("remote-q", handle[:9] + ("A" if handle[9] != "A" else "B")
                              + handle[10:])
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
        second.cli("queue", "delete-message", "crash-q", again[0]["receipt_handle"])
    finally:
        assert stop_server(second) == 0


def test_stopping_the_server_ends_waiting_long_polls_with_an_empty_answer(
    tmp_path: Path,
) -> None:
    """SIGINT while long polls wait: they answer 200 with no messages at once, rather
    than being cancelled (a 500 and a traceback) when the graceful timeout runs out."""
    server = start_server(tmp_path / "home")
    answers: list[httpx.Response] = []
    try:
        server.cli("queue", "create", "stop-q")
        with server.http() as http:
            def poll() -> None:
                answers.append(http.post("/v1/queues/stop-q/receive",
                                         json={"wait_s": 20}))
            polls = [threading.Thread(target=poll) for _ in range(3)]
            for thread in polls:
                thread.start()
            time.sleep(1.0)  # let all three reach the server and wait there
            server.process.send_signal(signal.SIGINT)
            for thread in polls:
                thread.join(timeout=30)
            server.process.wait(timeout=30)  # one SIGINT: a second would force an exit
    finally:
        code = stop_server(server)
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"messages": []})] * 3
    assert code == 0
    assert "Traceback" not in server.log(), server.log()
