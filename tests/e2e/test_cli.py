"""The ``faasbox`` CLI as a user drives it, against a real server."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import (
    EXAMPLES,
    FAASBOX,
    REPO,
    Server,
    cli_env,
    free_port,
    start_server,
    stop_server,
)


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
    assert info["network"] == "host"
    cut = _json(server.cli("deploy", str(code), "--name", "cut", "--handler", "main.run",
                           "--network", "none", "--json"))
    assert cut["network"] == "none"
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
    del env["FAASBOX_ISOLATION"]  # auto
    done = subprocess.run([*FAASBOX, "doctor", "--json"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"python", "isolation", "memory_enforcement", "memory_enforcement_reason",
            "capacity_mb", "home", "isolation_levels"} <= set(report)
    levels = ["process", "namespace", "cgroup"]
    assert report["isolation_setting"] == "auto"  # the best level available, no better one
    assert report["isolation_levels"][report["isolation"]] == "available"
    assert all(report["isolation_levels"][level] != "available"
               for level in levels[levels.index(report["isolation"]) + 1:])
    assert set(report["isolation_levels"]) == set(levels)
    assert report["isolation_levels"]["process"] == "available"
    table = subprocess.run([*FAASBOX, "doctor"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert table.returncode == 0 and "Isolation" in table.stdout
    assert "level namespace" in table.stdout and "level cgroup" in table.stdout
    forced = subprocess.run([*FAASBOX, "doctor", "--json"], env={
        **env, "FAASBOX_ISOLATION": "cgroup", "FAASBOX_MEMORY_ENFORCEMENT": "rss-watch"},
        capture_output=True, text=True, timeout=30)
    refused = json.loads(forced.stdout)  # the level wanted, and why it cannot be had
    assert refused["isolation"] == "unavailable"
    assert "memory is enforced by rss-watch, not a cgroup" in refused["isolation_reason"]


ENDPOINT_SOURCE = (
    "import os\n"
    "def handler(event, context):\n"
    "    return os.environ['FAASBOX_ENDPOINT']\n"
)


def test_functions_see_the_servers_own_endpoint(tmp_path: Path) -> None:
    """`faasbox up --port N` without FAASBOX_ENDPOINT: sandboxes get the URL it serves."""
    running = start_server(tmp_path / "home", endpoint_env=False)
    try:
        code = tmp_path / "code"
        code.mkdir()
        (code / "ep.py").write_text(ENDPOINT_SOURCE)
        running.cli("deploy", str(code), "--name", "ep", "--handler", "ep.handler")
        done = running.cli("invoke", "ep")
        assert json.loads(done.stdout) == running.url
    finally:
        assert stop_server(running) == 0, running.log()


def test_up_on_port_0_gives_functions_the_port_it_picked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env("", home)
    del env["FAASBOX_ENDPOINT"]
    output = tmp_path / "up.out"
    with output.open("wb") as sink:
        process = subprocess.Popen([*FAASBOX, "up", "--port", "0", "--home", str(home)],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    running = Server(url="", home=home, process=process, output=output)
    try:
        deadline = time.monotonic() + 30
        while (found := re.search(r"serving (http://\S+)", running.log())) is None:
            assert process.poll() is None and time.monotonic() < deadline, running.log()
            time.sleep(0.05)
        running.url = found.group(1)
        assert not running.url.endswith(":0")
        code = tmp_path / "code"
        code.mkdir()
        (code / "ep.py").write_text(ENDPOINT_SOURCE)
        running.cli("deploy", str(code), "--name", "ep", "--handler", "ep.handler")
        assert json.loads(running.cli("invoke", "ep").stdout) == running.url
    finally:
        assert stop_server(running) == 0, running.log()


def test_show_lists_each_versions_own_description(server: Server) -> None:
    server.cli("deploy", str(EXAMPLES / "hello"), "--name", "described",
               "--description", "config-text")
    version = _json(server.cli("publish", "described", "--description", "version-text",
                               "--json"))["version"]
    shown = server.cli("show", "described").stdout
    fields, _, versions = shown.partition("Versions")
    assert "config-text" in fields
    row = next(line for line in versions.splitlines() if line.strip().startswith(version))
    assert "version-text" in row and "config-text" not in row, versions


def test_cli_deploy_refuses_a_symlink_leaving_the_folder(server: Server, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("top secret")
    code = tmp_path / "code"
    code.mkdir()
    (code / "ep.py").write_text(ENDPOINT_SOURCE)
    (code / "same.py").symlink_to("ep.py")
    server.cli("deploy", str(code), "--name", "linkcli", "--handler", "same.handler")
    before = _json(server.cli("show", "linkcli", "--json"))
    (code / "leak.txt").symlink_to("../outside/secret.txt")
    done = server.cli("deploy", str(code), "--name", "linkcli", check=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "InvalidPackageException: unsafe package entry 'leak.txt'" in done.stderr
    assert "points outside the package" in done.stderr and "Traceback" not in done.stderr
    assert _json(server.cli("show", "linkcli", "--json")) == before
