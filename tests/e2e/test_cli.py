"""The ``faasbox`` CLI as a user drives it, against a real server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import EXAMPLES, FAASBOX, REPO, Server, cli_env, free_port


def _json(done: subprocess.CompletedProcess[str]):
    return json.loads(done.stdout)


def test_deploy_folder_then_invoke_prints_the_result(server: Server) -> None:
    info = _json(server.cli("deploy", str(EXAMPLES / "hello"), "--json"))
    assert (info["function"], info["version"], info["handler"]) == ("hello", "$LATEST",
                                                                      "app.handler")
    done = server.cli("invoke", "hello", "--payload", '{"name": "e2e"}')
    assert json.loads(done.stdout) == {"message": "Hello, e2e!"}


def test_deploy_with_flags_and_payload_file(server: Server, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text(
        "import os\n"
        "def run(event, context):\n"
        "    mem = context.memory_limit_in_mb\n"
        "    return {'got': event, 'color': os.environ['COLOR'], 'mem': mem}\n"
    )
    info = _json(server.cli(
        "deploy", str(code), "--name", "flags", "--handler", "main.run", "--memory", "256",
        "--timeout", "7", "--env", "COLOR=blue", "--description", "from flags", "--json",
    ))
    assert (info["memory_mb"], info["timeout_s"], info["environment"]) == (256, 7,
                                                                          {"COLOR": "blue"})
    payload = tmp_path / "event.json"
    payload.write_text('{"n": [1, 2]}')
    out = _json(server.cli("invoke", "flags", "--payload", f"@{payload}", "--json"))
    assert out["payload"] == {"got": {"n": [1, 2]}, "color": "blue", "mem": 256}
    assert out["executed_version"] == "$LATEST" and out["function_error"] is None


def test_invoke_log_shows_the_framed_log(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    done = server.cli("invoke", "hello", "--payload", '{"name": "log"}', "--log")
    assert json.loads(done.stdout) == {"message": "Hello, log!"}
    for marker in ("START RequestId:", "Saying hello to log", "END RequestId:",
                   "REPORT RequestId:"):
        assert marker in done.stderr
    data = _json(server.cli("invoke", "hello", "--log", "--json"))
    assert data["request_id"] in data["log"] and "REPORT" in data["log"]


def test_function_error_exits_1_with_the_error_object(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "fail"))
    done = server.cli("invoke", "fail", "--payload", '{"amount": 7}', check=False)
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["errorType"] == "PaymentDeclined"
    assert "card declined for amount 7" in error["errorMessage"]


def test_versions_aliases_and_listing(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    version = _json(server.cli("publish", "hello", "--json"))["version"]
    alias = _json(server.cli("alias", "hello", "live", version, "--json"))
    assert (alias["name"], alias["version"]) == ("live", version)
    done = server.cli("invoke", "hello:live", "--payload", '{"name": "alias"}', "--json")
    assert _json(done)["executed_version"] == version
    shown = _json(server.cli("show", "hello", "--json"))
    assert version in [v["version"] for v in shown["versions"]]
    assert "live" in [a["name"] for a in shown["aliases"]]
    assert _json(server.cli("show", f"hello:{version}", "--json"))["version"] == version
    names = [fn["function"] for fn in _json(server.cli("ls", "--json"))]
    assert "hello" in names and names == sorted(names)
    server.cli("deploy", str(EXAMPLES / "hello"), "--description", "second")
    second = _json(server.cli("publish", "hello", "--json"))["version"]
    assert second != version
    split = _json(server.cli("alias", "hello", "canary", version, "--weight", f"{second}=0.25",
                             "--json"))
    assert (split["additional_version"], split["additional_weight"]) == (second, 0.25)
    for command in (["ls"], ["show", "hello"], ["publish", "hello"],
                    ["alias", "hello", "canary", second, "--weight", f"{version}=0.5"]):
        assert server.cli(*command).stdout.strip()  # tables and lines print


def test_logs_and_records(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    request_id = _json(server.cli("invoke", "hello", "--json"))["request_id"]
    text = server.cli("logs", "hello").stdout
    assert f"START RequestId: {request_id}" in text and f"REPORT RequestId: {request_id}" in text
    one = server.cli("logs", "hello", "--request-id", request_id).stdout
    assert one.count("START RequestId:") == 1 and request_id in one
    records = _json(server.cli("records", "hello", "--json"))
    assert records[0]["request_id"] == request_id and records[0]["status"] == "success"
    assert request_id in server.cli("records", "hello").stdout


def test_errors_are_one_red_line_and_change_nothing(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"))
    before = _json(server.cli("records", "hello", "--json", "--limit", "1000"))
    cases = [
        (["invoke", "nosuch"], "ResourceNotFoundException: Function not found: nosuch"),
        (["invoke", "hello:99"], "ResourceNotFoundException"),
        (["invoke", "hello", "--payload", "{not json"], "--payload is not valid JSON"),
        (["invoke", "hello", "--payload", "@/nonexistent.json"], "InvalidParameterValueException"),
        (["deploy", str(EXAMPLES / "hello"), "--name", "bad name!"], "invalid function name"),
        (["deploy", str(EXAMPLES / "hello"), "--handler", "nodots"], "invalid handler"),
        (["deploy", str(EXAMPLES / "hello"), "--memory", "1"], "memory_mb=1 is out of range"),
        (["deploy", str(EXAMPLES / "hello"), "--env", "NOEQUALS"], "expected KEY=VALUE"),
        (["show", "nosuch"], "Function not found: nosuch"),
        (["rm", "nosuch"], "Function not found"),
    ]
    for args, message in cases:
        done = server.cli(*args, check=False)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    after = _json(server.cli("records", "hello", "--json", "--limit", "1000"))
    assert after == before
    assert _json(server.cli("show", "hello", "--json"))["memory_mb"] == 128


def test_rm_deletes_the_function(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"), "--name", "doomed")
    assert "Deleted doomed" in server.cli("rm", "doomed").stdout
    assert server.cli("show", "doomed", check=False).returncode == 1


def test_no_server_prints_how_to_start_one_and_exits_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["ls"], ["invoke", "hello", "--payload", "{}"], ["logs", "hello"]):
        done = subprocess.run([*FAASBOX, *args], env=cli_env(url, tmp_path), cwd=REPO,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, (args, done.stderr)
        assert "faasbox up" in done.stderr and url in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    done = subprocess.run([*FAASBOX, "--endpoint", url, "ls"], capture_output=True, text=True,
                          env=cli_env("http://127.0.0.1:1", tmp_path), timeout=30)
    assert done.returncode == 2 and url in done.stderr  # --endpoint wins over the variable


def test_up_on_a_busy_port_says_so(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    done = server.cli("up", "--port", port, "--home", str(server.home.parent / "other"),
                      check=False)
    assert done.returncode == 1 and "cannot listen on 127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_doctor_runs_without_a_server(tmp_path: Path) -> None:
    env = cli_env(f"http://127.0.0.1:{free_port()}", tmp_path / "home")
    done = subprocess.run([*FAASBOX, "doctor", "--json"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"python", "isolation", "memory_enforcement", "memory_enforcement_reason",
            "capacity_mb", "home"} <= set(report)
    table = subprocess.run([*FAASBOX, "doctor"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert table.returncode == 0 and "Isolation" in table.stdout
