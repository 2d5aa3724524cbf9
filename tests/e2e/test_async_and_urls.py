"""Async invoke and function URLs through the real server, HTTP API and CLI."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server

from faasbox.errors import (
    FunctionNotFoundError,
    InvalidParameterError,
    NotFoundError,
    PayloadTooLargeError,
)
from faasbox.model import Status
from faasbox.remote import RemoteClient

SLEEPY = (
    "import time\n"
    "def handler(event, context):\n"
    "    time.sleep(1.0)\n"
    "    return {'slept': event}\n"
)
WEB = "def handler(event, context):\n    return {'statusCode': 200, 'body': event['rawPath']}\n"


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def deploy(server: Server, tmp_path: Path, name: str, source: str) -> None:
    code = tmp_path / name
    code.mkdir()
    (code / "app.py").write_text(source)
    server.cli("deploy", str(code), "--name", name, "--handler", "app.handler", "--timeout", "10")


def test_async_event_survives_a_sigkill_after_202_and_runs_after_restart(tmp_path) -> None:
    home = tmp_path / "home"
    running = start_server(home)
    try:
        deploy(running, tmp_path, "sleepy", SLEEPY)
        with running.http(timeout=10) as http:
            answer = http.post("/v1/functions/sleepy/invoke", content=b'{"n": 7}',
                               headers={"X-Amz-Invocation-Type": "Event"})
        assert answer.status_code == 202 and answer.content == b""
        request_id = answer.headers["x-amzn-requestid"]
        running.process.send_signal(signal.SIGKILL)  # while it sleeps, or before it ran
        running.process.wait()
    finally:
        stop_server(running)
    again = start_server(home)
    try:
        with again.client() as remote:
            done = wait_for(
                lambda: [r for r in remote.records(request_id=request_id)
                         if r.status is Status.SUCCESS],
                what="the event to run after the restart",
            )
            assert [(r.async_request_id, r.function) for r in done] == [(request_id, "sleepy")]
            log = remote.logs("sleepy", request_id=request_id)
            assert f"START RequestId: {done[0].request_id}" in log
    finally:
        assert stop_server(again) == 0, again.log()


def test_http_async_errors_and_config_routes(server: Server, http: httpx.Client,
                                             tmp_path: Path) -> None:
    deploy(server, tmp_path, "web", WEB)
    event = {"X-Amz-Invocation-Type": "Event"}
    too_big = http.post("/v1/functions/web/invoke", content=b'"' + b"x" * 262144 + b'"',
                        headers=event)
    assert too_big.status_code == 413
    assert too_big.json()["errorType"] == "RequestTooLargeException"
    assert http.post("/v1/functions/nope/invoke", content=b"1", headers=event).status_code == 404
    odd = http.post("/v1/functions/web/invoke", content=b"1",
                    headers={"X-Amz-Invocation-Type": "Sometime"})
    assert odd.status_code == 400 and "RequestResponse or Event" in odd.json()["errorMessage"]
    bad = http.put("/v1/functions/web/async-config", json={"max_retries": 5})
    assert bad.status_code == 400 and "max_retries=5" in bad.json()["errorMessage"]
    unknown = http.put("/v1/functions/web/async-config", json={"retries": 1})
    assert unknown.status_code == 400
    good = http.put("/v1/functions/web/async-config", json={"max_event_age_s": 120})
    assert good.status_code == 200 and good.json()["max_event_age_s"] == 120
    assert http.get("/v1/functions/web/async-config").json()["max_event_age_s"] == 120
    assert http.delete("/v1/functions/web/async-config").status_code == 204
    assert http.get("/v1/functions/web/async-config").json()["max_event_age_s"] == 21600


def test_remote_client_async_and_url_methods(server: Server, remote: RemoteClient,
                                             tmp_path: Path) -> None:
    deploy(server, tmp_path, "remote-web", WEB)
    deploy(server, tmp_path, "remote-sink", WEB)
    with pytest.raises(PayloadTooLargeError):
        remote.invoke_async("remote-web", "x" * 262144)
    with pytest.raises(FunctionNotFoundError):
        remote.invoke_async("nope", 1)
    config = remote.put_async_config("remote-web", max_retries=0, on_failure="function:remote-sink")
    assert (config["max_retries"], config["on_failure"]) == (0, "function:remote-sink")
    assert remote.get_async_config("remote-web") == config
    with pytest.raises(InvalidParameterError, match="queue:NAME or function:NAME"):
        remote.put_async_config("remote-web", on_success="lambda:x")
    with pytest.raises(InvalidParameterError, match="remote-web cannot be its own destination"):
        remote.put_async_config("remote-web", on_failure="function:remote-web")
    remote.delete_async_config("remote-web")
    assert remote.get_async_config("remote-web")["on_failure"] is None
    url = remote.set_function_url("remote-web", auth="none")
    assert url["url"] == f"{server.url}/fn/remote-web"
    assert remote.get_function_url("remote-web") == url
    assert url in remote.list_function_urls()
    assert httpx.get(url["url"] + "/deep/path").text == "/deep/path"
    remote.delete_function_url("remote-web")
    with pytest.raises(NotFoundError, match="FunctionUrl not found: remote-web"):
        remote.get_function_url("remote-web")


def test_cli_invoke_async_then_records_show_the_attempt(server: Server, tmp_path: Path) -> None:
    deploy(server, tmp_path, "cli-sleepy", SLEEPY)
    done = server.cli("invoke", "cli-sleepy", "--async", "--payload", '{"k": 1}')
    request_id = done.stdout.strip()
    assert len(request_id) == 36, done.stdout
    as_json = json.loads(server.cli("invoke", "cli-sleepy", "--async", "--json").stdout)
    assert as_json["status"] == 202 and as_json["request_id"] != request_id

    def attempt_listed() -> list[dict[str, Any]]:
        out = server.cli("records", "--request-id", request_id, "--json").stdout
        return [r for r in json.loads(out) if r["status"] == "success"]

    [record] = wait_for(attempt_listed, what="the async attempt's record")
    assert (record["async_request_id"], record["attempt"]) == (request_id, 1)
    table = server.cli("records", "cli-sleepy", "--request-id", request_id).stdout
    assert "ATTEMPT" in table and f"1 of {request_id}" in table
    refused = server.cli("invoke", "cli-sleepy", "--async", "--log", check=False)
    assert refused.returncode == 1 and "--log needs a synchronous call" in refused.stderr


def test_cli_url_and_async_config_commands(server: Server, tmp_path: Path) -> None:
    deploy(server, tmp_path, "cli-web", WEB)
    deploy(server, tmp_path, "cli-sink", WEB)
    shown = json.loads(server.cli("url", "set", "cli-web", "--auth", "platform", "--json").stdout)
    assert shown == {"function": "cli-web", "qualifier": None, "auth": "platform",
                     "url": f"{server.url}/fn/cli-web"}
    refused = httpx.get(shown["url"])
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == (
        "AWS4-HMAC-SHA256")
    with server.http() as signed:  # the admin key: allowed functions:InvokeFunctionUrl
        authorized = signed.get(shown["url"] + "/x")
    assert authorized.status_code == 200 and authorized.text == "/x"
    table = server.cli("url", "show", "cli-web").stdout
    assert "platform" in table and f"{server.url}/fn/cli-web" in table
    listed = json.loads(server.cli("url", "ls", "--json").stdout)
    assert shown in listed
    bad = server.cli("url", "set", "cli-web", "--auth", "maybe", check=False)
    assert bad.returncode == 1 and "auth='maybe' must be one of none, platform" in bad.stderr
    server.cli("url", "rm", "cli-web")
    assert httpx.get(shown["url"]).status_code == 404
    missing = server.cli("url", "show", "cli-web", check=False)
    assert missing.returncode == 1 and "FunctionUrl not found: cli-web" in missing.stderr

    config = json.loads(server.cli(
        "async-config", "set", "cli-web", "--max-retries", "1", "--max-event-age", "300",
        "--on-failure", "function:cli-sink", "--json",
    ).stdout)
    assert (config["max_retries"], config["max_event_age_s"], config["on_failure"]) == (
        1, 300, "function:cli-sink")
    refused = server.cli("async-config", "set", "cli-web", "--on-success", "queue:", check=False)
    assert refused.returncode == 1 and "invalid destination 'queue:'" in refused.stderr
    refused = server.cli("async-config", "set", "cli-web", "--on-success", "topic:x",
                         check=False)
    assert refused.returncode == 1 and "queue:NAME or function:NAME" in refused.stderr
    assert "function:cli-sink" in server.cli("async-config", "show", "cli-web").stdout
    server.cli("async-config", "rm", "cli-web")
    back = json.loads(server.cli("async-config", "show", "cli-web", "--json").stdout)
    assert back["max_retries"] == 2 and back["on_failure"] is None
