"""The runtime with real processes: pools, warm reuse, admission, init, lifecycle."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faasbox.config import Settings
from faasbox.errors import FaasboxError, TooManyRequestsError
from faasbox.layout import Layout
from faasbox.model import Status
from faasbox.runtime.memory import RssWatch
from faasbox.runtime.node import Node, doctor
from faasbox.runtime.process import Janitor, Slot
from faasbox.runtime.spec import Outcome, SandboxSpec

APP = """
import json, logging, os, sys, tempfile, time

logger = logging.getLogger()
logger.setLevel(logging.INFO)
print("init of app")

def handler(event, context):
    event = event or {}
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("wait_for"):
        while not os.path.exists(event["wait_for"]):
            time.sleep(0.01)
    if event.get("say"):
        print("stdout:", event["say"])
        sys.stderr.write("stderr: " + event["say"] + "\\n")
        logger.info("log: %s", event["say"])
    if event.get("fail"):
        raise ValueError(event["fail"])
    if event.get("unserializable"):
        return {1, 2}
    with open("data.txt") as f:
        data = f.read().strip()
    return {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "tmp": tempfile.gettempdir(),
        "data": data,
        "env": dict(os.environ),
        "sys_path": sys.path,
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "identity": context.identity,
            "client_context": context.client_context,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }
"""


def write_code(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def make_spec(code_dir: Path, function: str = "fn", **changes: Any) -> SandboxSpec:
    values: dict[str, Any] = {
        "function": function, "version": "$LATEST", "revision": f"{function}-r1",
        "handler": "app.handler", "code_dir": code_dir, "layer_dir": None,
        "memory_mb": 128, "timeout_s": 3.0,
    }
    values.update(changes)
    return SandboxSpec(**values)


def call(node: Node, spec: SandboxSpec, event: Any = None, request_id: str = "req-1") -> Outcome:
    return node.invoke(spec, json.dumps(event).encode(), request_id=request_id,
                       invoked_function_arn=f"arn:faasbox:lambda:local:000000000000:function:"
                                            f"{spec.function}")


def body(outcome: Outcome) -> Any:
    return json.loads(outcome.payload)


def gone(pid: int, timeout_s: float = 3.0) -> bool:
    """True once ``pid`` no longer exists (or is a zombie nobody will run again)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):  # gone, maybe while read
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_code(tmp_path / "code", {"app.py": APP, "data.txt": "from the package\n"})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", isolation="process",
                        keep_alive_s=30.0, capacity_mb=4096)


@pytest.fixture
def node(settings: Settings) -> Iterator[Node]:
    with Node(settings, Layout(settings.home)) as node:
        yield node


def test_warm_reuse_keeps_the_sandbox_and_reports_init_once(node: Node, app: Path) -> None:
    spec = make_spec(app)
    first = call(node, spec, {}, "req-1")
    second = call(node, spec, {}, "req-2")
    assert first.status is Status.SUCCESS and second.status is Status.SUCCESS
    assert body(first)["pid"] == body(second)["pid"] == first.sandbox_pid
    assert first.sandbox_id == second.sandbox_id
    assert first.init_duration_ms is not None and first.init_duration_ms > 0 and first.cold
    assert second.init_duration_ms is None and not second.cold
    assert first.output.startswith("init of app\n")
    assert "init of app" not in second.output
    assert first.max_memory_used_mb >= 1 and second.max_memory_used_mb >= 1
    [sandbox] = node.stats()["sandboxes"]
    assert sandbox["invocations"] == 2 and sandbox["state"] == "idle"


def test_distinct_functions_get_distinct_sandboxes(node: Node, app: Path) -> None:
    one = call(node, make_spec(app, "one"), {})
    two = call(node, make_spec(app, "two"), {})
    again = call(node, make_spec(app, "one"), {})
    assert one.sandbox_pid != two.sandbox_pid
    assert again.sandbox_pid == one.sandbox_pid
    stats = node.stats()
    assert sorted(sb["function"] for sb in stats["sandboxes"]) == ["one", "two"]
    assert stats["used_mb"] == 256


def test_scales_to_zero_after_keep_alive(tmp_path: Path, app: Path) -> None:
    settings = Settings(home=tmp_path / "home", isolation="process",
                        keep_alive_s=0.3, capacity_mb=1024)
    with Node(settings, Layout(settings.home)) as node:
        outcome = call(node, make_spec(app), {})
        assert node.stats()["sandboxes"]
        assert gone(outcome.sandbox_pid, timeout_s=5)
        folder = Layout(settings.home).sandbox(outcome.sandbox_id)
        deadline = time.monotonic() + 3
        while (node.stats()["sandboxes"] or folder.exists()) and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = node.stats()
        assert stats["sandboxes"] == [] and stats["used_mb"] == 0
        assert not folder.exists()
        assert call(node, make_spec(app), {}).cold  # a new call starts a new sandbox


def test_busy_sandbox_is_not_reaped_by_keep_alive(tmp_path: Path, app: Path) -> None:
    settings = Settings(home=tmp_path / "home", isolation="process",
                        keep_alive_s=0.1, capacity_mb=1024)
    with Node(settings, Layout(settings.home)) as node:
        first = call(node, make_spec(app), {"sleep": 0.5})
        assert first.status is Status.SUCCESS
        assert node.stats()["sandboxes"][0]["pid"] == first.sandbox_pid
        assert gone(first.sandbox_pid)  # once idle, it goes


def test_large_payloads_both_ways(node: Node, tmp_path: Path) -> None:
    code = write_code(tmp_path / "code", {"app.py": "def handler(e, c): return e[::-1]\n"})
    event = "".join(chr(0x41 + i % 26) for i in range(5_000_000))
    outcome = call(node, make_spec(code), event)
    assert outcome.status is Status.SUCCESS and body(outcome) == event[::-1]


def test_context_and_environment(node: Node, app: Path) -> None:
    spec = make_spec(app, "ctx", version="7", memory_mb=256, environment={"GREETING": "hi"})
    outcome = call(node, spec, {}, "req-ctx")
    result = body(outcome)
    context, env = result["context"], result["env"]
    assert context == {
        "function_name": "ctx",
        "function_version": "7",
        "invoked_function_arn": "arn:faasbox:lambda:local:000000000000:function:ctx",
        "memory_limit_in_mb": 256,
        "aws_request_id": "req-ctx",
        "log_group_name": "/aws/lambda/ctx",
        "log_stream_name": env["AWS_LAMBDA_LOG_STREAM_NAME"],
        "identity": None,
        "client_context": None,
        "remaining_ms": context["remaining_ms"],
    }
    assert 2000 < context["remaining_ms"] <= 3000
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"].endswith(f"/[7]{outcome.sandbox_id}")
    assert env["GREETING"] == "hi"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "ctx"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "7"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(app)
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/ctx"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "local"
    assert env["AWS_EXECUTION_ENV"] == "faasbox_python3.11"
    assert env["FAASBOX_ENDPOINT"] == "http://127.0.0.1:8642"
    assert env["TZ"] == ":UTC"
    assert env["HOME"] == env["TMPDIR"] == result["tmp"]
    assert "FAASBOX_HOME" not in env and "VIRTUAL_ENV" not in env  # nothing leaks in
    assert result["sys_path"][0] == str(app)
    assert not any("site-packages" in p for p in result["sys_path"])


def test_each_sandbox_has_its_own_cwd_and_tmp(node: Node, app: Path, tmp_path: Path) -> None:
    spec = make_spec(app)
    release = tmp_path / "release"
    holder: list[Outcome] = []
    busy = threading.Thread(target=lambda: holder.append(call(node, spec, {"wait_for":
                                                                          str(release)})))
    busy.start()
    try:
        deadline = time.monotonic() + 5
        while not node.stats()["sandboxes"] and time.monotonic() < deadline:
            time.sleep(0.01)
        other = body(call(node, spec, {}))  # the first sandbox is busy: a second starts
    finally:
        release.touch()
        busy.join()
    first = body(holder[0])
    assert first["pid"] != other["pid"]
    assert first["cwd"] != other["cwd"] and first["tmp"] != other["tmp"]
    for result in (first, other):
        sandbox_dir = Path(result["cwd"]).parent
        assert sandbox_dir.parent == Layout(node.settings.home).sandboxes
        assert Path(result["tmp"]).parent == sandbox_dir
        assert result["data"] == "from the package"  # code files readable from the cwd


def test_output_is_captured_per_invocation(node: Node, app: Path) -> None:
    spec = make_spec(app)
    call(node, spec, {})
    one = call(node, spec, {"say": "one"}, "req-one")
    two = call(node, spec, {"say": "two"}, "req-two")
    assert "stdout: one\n" in one.output and "stderr: one\n" in one.output
    assert "two" not in one.output and "one" not in two.output
    [log_line] = [line for line in two.output.splitlines() if "log: two" in line]
    level, stamp, request_id, message = log_line.split("\t")
    assert (level, request_id, message) == ("[INFO]", "req-two", "log: two")
    assert stamp.endswith("Z") and "T" in stamp


def test_handler_exception_is_returned_as_lambda_error(node: Node, app: Path) -> None:
    spec = make_spec(app)
    outcome = call(node, spec, {"fail": "boom"})
    assert outcome.status is Status.ERROR
    assert outcome.error_type == "ValueError" and outcome.error_message == "boom"
    error = body(outcome)
    assert error["errorMessage"] == "boom" and error["errorType"] == "ValueError"
    assert any("raise ValueError(event[\"fail\"])" in frame for frame in error["stackTrace"])
    assert all("worker.py" not in frame for frame in error["stackTrace"])
    assert "[ERROR] ValueError: boom" in outcome.output
    assert call(node, spec, {}).sandbox_pid == outcome.sandbox_pid  # a handler error is fine


def test_unserializable_result_is_a_marshal_error(node: Node, app: Path) -> None:
    outcome = call(node, make_spec(app), {"unserializable": True})
    assert outcome.status is Status.ERROR
    assert outcome.error_type == "Runtime.MarshalError"
    assert body(outcome)["errorMessage"].startswith("Unable to marshal response: ")
    assert "set is not JSON serializable" in body(outcome)["errorMessage"]


@pytest.mark.parametrize(("files", "handler", "error_type", "message"), [
    ({"app.py": "import not_installed_anywhere\n"}, "app.handler", "Runtime.ImportModuleError",
     "Unable to import module 'app': No module named 'not_installed_anywhere'"),
    ({"app.py": "x = 1\n"}, "missing.handler", "Runtime.ImportModuleError",
     "Unable to import module 'missing': No module named 'missing'"),
    ({"app.py": "def other(e, c): pass\n"}, "app.handler", "Runtime.HandlerNotFound",
     "Handler 'handler' missing on module 'app'"),
    ({"app.py": "def handler(e, c)\n    pass\n"}, "app.handler", "Runtime.UserCodeSyntaxError",
     "Syntax error in module 'app'"),
    ({"app.py": "raise RuntimeError('bad config')\n"}, "app.handler", "RuntimeError",
     "bad config"),
])
def test_init_errors(node: Node, tmp_path: Path, files: dict[str, str], handler: str,
                     error_type: str, message: str) -> None:
    spec = make_spec(write_code(tmp_path / "bad", files), handler=handler)
    first = call(node, spec, {})
    assert first.status is Status.ERROR
    assert first.error_type == error_type == body(first)["errorType"]
    assert body(first)["errorMessage"].startswith(message)
    assert first.init_duration_ms is not None
    assert f"[ERROR] {error_type}" in first.output
    second = call(node, spec, {})
    assert second.error_type == error_type
    assert second.sandbox_pid != first.sandbox_pid  # discarded, never reused
    assert gone(first.sandbox_pid)
    assert node.stats()["sandboxes"] == [] and node.stats()["used_mb"] == 0


def test_init_timeout(tmp_path: Path) -> None:
    code = write_code(tmp_path / "code", {"app.py": """
        import time
        print("initialising", flush=True)
        time.sleep(30)
        def handler(event, context):
            return 1
    """})
    settings = Settings(home=tmp_path / "home", isolation="process",
                        init_timeout_s=0.5, capacity_mb=1024)
    with Node(settings, Layout(settings.home)) as node:
        started = time.monotonic()
        outcome = call(node, make_spec(code), {})
        assert time.monotonic() - started < 3
        assert outcome.status is Status.TIMEOUT
        assert outcome.error_type == "Runtime.InitTimeout"
        assert "Init phase timed out after 0.50 seconds (init_timeout_s)" in (
            outcome.error_message or "")
        assert "initialising" in outcome.output
        assert gone(outcome.sandbox_pid)
        assert node.stats()["used_mb"] == 0


def test_dotted_package_handler(node: Node, tmp_path: Path) -> None:
    code = write_code(tmp_path / "code", {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "from . import helper\ndef handler(e, c): return helper.VALUE\n",
        "pkg/sub/helper.py": "VALUE = {'from': 'pkg.sub.mod'}\n",
    })
    outcome = call(node, make_spec(code, handler="pkg.sub.mod.handler"), {})
    assert outcome.status is Status.SUCCESS
    assert body(outcome) == {"from": "pkg.sub.mod"}


def test_user_modules_named_like_the_runtime_are_imported(node: Node, tmp_path: Path) -> None:
    code = write_code(tmp_path / "code", {
        "worker.py": "import protocol, rehearsal\n"
                     "def handler(e, c): return ['mine', protocol.X, rehearsal.X]\n",
        "protocol.py": "X = 'mine too'\n",
        "rehearsal.py": "X = 'and mine'\n",  # the module every spare imports once
    })
    outcome = call(node, make_spec(code, handler="worker.handler"), {})
    assert body(outcome) == ["mine", "mine too", "and mine"]


def _zygote_children(node: Node) -> set[int]:
    zygote = node.stats()["zygote_pid"]
    with open(f"/proc/{zygote}/task/{zygote}/children") as f:
        return {int(pid) for pid in f.read().split()}


def test_cold_starts_use_spares_forked_ahead_and_survive_their_loss(node: Node, app: Path
                                                                    ) -> None:
    first = call(node, make_spec(app, "one"), {})
    deadline = time.monotonic() + 5
    while len(_zygote_children(node)) < 3:  # the sandbox and the spares, refilled
        assert time.monotonic() < deadline
        time.sleep(0.01)
    spares = _zygote_children(node) - {first.sandbox_pid}
    second = call(node, make_spec(app, "two"), {})
    assert second.cold and second.sandbox_pid in spares  # forked before it was asked for
    killed = _zygote_children(node) - {first.sandbox_pid, second.sandbox_pid}
    for pid in killed:
        os.kill(pid, signal.SIGKILL)  # spares that die unused are replaced on demand
    assert all(gone(pid) for pid in killed)
    third = call(node, make_spec(app, "three"), {})
    assert third.status is Status.SUCCESS and third.cold
    assert third.sandbox_pid not in spares


def test_janitor_works_later_and_never_while_a_sandbox_starts(tmp_path: Path) -> None:
    made: list[Slot] = []

    def make_slot() -> Slot:
        directory = tmp_path / f"slot{len(made)}"
        directory.mkdir()
        made.append(Slot(f"s{len(made)}", directory, os.open(os.devnull, os.O_RDONLY),
                         RssWatch("test").prepare("s", 128)))
        return made[-1]

    janitor = Janitor(make_slot, target=2, slot_delay_s=0.05, clean_up_delay_s=0.05)
    done: list[str] = []
    with janitor.starting():
        assert janitor.take() is None  # none made yet: the caller makes its own
        janitor.defer(lambda: done.append("cleaned"))
        time.sleep(0.2)
        assert done == [] and made == []  # held while a sandbox starts
    deadline = time.monotonic() + 5
    while (not done or len(made) < 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done == ["cleaned"] and len(made) == 2
    slot = janitor.take()
    assert slot is made[0]
    slot.release()
    janitor.defer(lambda: done.append("at close"))
    janitor.close()
    assert done == ["cleaned", "at close"]  # close runs what is still waiting
    assert not any(s.directory.exists() for s in made)  # and releases the ready slots
    janitor.defer(lambda: done.append("after close"))
    assert done[-1] == "after close"


def test_a_burst_of_cold_starts(node: Node, app: Path) -> None:
    outcomes: dict[int, Outcome] = {}

    def one(i: int) -> None:
        outcomes[i] = call(node, make_spec(app, f"fn{i}", memory_mb=128 + 64 * (i % 3)), {})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(o.status is Status.SUCCESS and o.cold for o in outcomes.values())
    assert len({o.sandbox_pid for o in outcomes.values()}) == 10
    assert node.stats()["used_mb"] == sum(128 + 64 * (i % 3) for i in range(10))


def _hold_busy(node: Node, spec: SandboxSpec, release: Path) -> threading.Thread:
    thread = threading.Thread(target=call, args=(node, spec, {"wait_for": str(release)}))
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(sb["state"] == "busy" for sb in node.stats()["sandboxes"]):
            return thread
        time.sleep(0.01)
    raise AssertionError("the call never became busy")


def test_reserved_concurrency_throttles_at_once(node: Node, app: Path, tmp_path: Path) -> None:
    spec = make_spec(app, reserved_concurrency=1)
    release = tmp_path / "release"
    busy = _hold_busy(node, spec, release)
    try:
        started = time.monotonic()
        with pytest.raises(TooManyRequestsError, match="reserved concurrency of 1"):
            call(node, spec, {})
        assert time.monotonic() - started < 0.5
        assert call(node, make_spec(app, "other"), {}).status is Status.SUCCESS
    finally:
        release.touch()
        busy.join()
    assert call(node, spec, {}).status is Status.SUCCESS  # free again once the call ended


def test_reserved_concurrency_zero_always_throttles(node: Node, app: Path) -> None:
    with pytest.raises(TooManyRequestsError):
        call(node, make_spec(app, reserved_concurrency=0), {})
    assert node.stats()["sandboxes"] == []


def test_capacity_throttles_and_evicts_idle_sandboxes(tmp_path: Path, app: Path) -> None:
    settings = Settings(home=tmp_path / "home", isolation="process",
                        capacity_mb=256, keep_alive_s=30)
    release = tmp_path / "release"
    with Node(settings, Layout(settings.home)) as node:
        idle = call(node, make_spec(app, "idle"), {})
        busy = _hold_busy(node, make_spec(app, "busy"), release)
        try:
            assert node.stats()["used_mb"] == 256
            third = call(node, make_spec(app, "third"), {})  # evicts "idle"
            assert third.status is Status.SUCCESS and gone(idle.sandbox_pid)
            functions = sorted(sb["function"] for sb in node.stats()["sandboxes"])
            assert functions == ["busy", "third"]
            with pytest.raises(TooManyRequestsError, match="capacity of 256 MB"):
                call(node, make_spec(app, "big", memory_mb=512), {})
            with pytest.raises(TooManyRequestsError):  # the idle one cannot make room
                call(node, make_spec(app, "fourth", memory_mb=256), {})
            assert [sb["function"] for sb in node.stats()["sandboxes"]].count("third") == 1
        finally:
            release.touch()
            busy.join()


def test_retire_kills_idle_and_lets_busy_finish(node: Node, app: Path, tmp_path: Path) -> None:
    old = make_spec(app, revision="old")
    kept_pid = call(node, make_spec(app, revision="kept"), {}).sandbox_pid
    release = tmp_path / "release"
    results: list[Outcome] = []
    busy = threading.Thread(target=lambda: results.append(
        call(node, old, {"wait_for": str(release)})))
    busy.start()
    deadline = time.monotonic() + 5
    while not any(sb["state"] == "busy" for sb in node.stats()["sandboxes"]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    busy_pid = next(sb["pid"] for sb in node.stats()["sandboxes"] if sb["state"] == "busy")
    idle = call(node, old, {})  # a second sandbox of the old revision, then idle
    assert idle.sandbox_pid != busy_pid
    node.retire("fn", frozenset({"kept"}))
    assert gone(idle.sandbox_pid)
    assert {sb["pid"] for sb in node.stats()["sandboxes"]} == {kept_pid, busy_pid}
    release.touch()
    busy.join()
    assert results[0].status is Status.SUCCESS  # the busy call finished normally
    assert results[0].sandbox_pid == busy_pid
    assert gone(busy_pid)  # ... and its sandbox went instead of staying warm
    assert [sb["pid"] for sb in node.stats()["sandboxes"]] == [kept_pid]
    assert call(node, old, {}).sandbox_pid not in (busy_pid, idle.sandbox_pid)
    node.retire("fn")
    assert node.stats()["sandboxes"] == [] and gone(kept_pid)


def test_zygote_is_restarted_after_it_died(node: Node, app: Path) -> None:
    warm = call(node, make_spec(app, "warm"), {})
    zygote = node.stats()["zygote_pid"]
    assert zygote
    os.kill(zygote, signal.SIGKILL)
    assert gone(zygote)
    cold = call(node, make_spec(app, "cold"), {})
    assert cold.status is Status.SUCCESS and cold.cold
    assert node.stats()["zygote_pid"] not in (None, zygote)
    assert call(node, make_spec(app, "warm"), {}).sandbox_pid == warm.sandbox_pid


def test_close_leaves_no_processes(tmp_path: Path, app: Path) -> None:
    settings = Settings(home=tmp_path / "home", isolation="process",
                        capacity_mb=1024)
    node = Node(settings, Layout(settings.home))
    for name in ("a", "b", "c"):
        call(node, make_spec(app, name), {})
    stats = node.stats()
    pids = [sb["pid"] for sb in stats["sandboxes"]] + [stats["zygote_pid"]]
    assert len(pids) == 4
    node.close()
    node.close()  # idempotent
    assert all(gone(pid) for pid in pids)
    assert list(Layout(settings.home).sandboxes.iterdir()) == []
    with pytest.raises(FaasboxError, match="closed"):
        call(node, make_spec(app, "a"), {})


def test_doctor_reports_isolation_and_memory_enforcement(tmp_path: Path) -> None:
    report = doctor(Settings(home=tmp_path, capacity_mb=2048))
    # auto: the best level this host allows, and every better one says why not
    levels = ["process", "namespace", "cgroup"]
    chosen = levels.index(report["isolation"])
    assert report["isolation_setting"] == "auto"
    assert report["isolation_levels"][report["isolation"]] == "available"
    assert all(report["isolation_levels"][level] != "available"
               for level in levels[chosen + 1:])
    assert report["memory_enforcement"] in ("cgroup-v1", "cgroup-v2", "rss-watch")
    assert report["memory_enforcement_reason"]
    assert report["capacity_mb"] == 2048 and report["home"] == str(tmp_path)
    assert report["python"].startswith("3.")
    forced = doctor(Settings(home=tmp_path, isolation="process",
                        memory_enforcement="rss-watch"))
    assert forced["memory_enforcement"] == "rss-watch"


def test_a_call_that_resolved_a_retired_revision_runs_once_and_leaves_nothing(
        node: Node, app: Path) -> None:
    # The caller resolved "old" just before a deploy made "new" the only live revision.
    node.retire("fn", frozenset({"new"}))
    late = call(node, make_spec(app, revision="old"), {})
    assert late.status is Status.SUCCESS
    assert gone(late.sandbox_pid) and node.stats()["sandboxes"] == []
    new = call(node, make_spec(app, revision="new"), {})
    assert [sb["pid"] for sb in node.stats()["sandboxes"]] == [new.sandbox_pid]  # kept warm
    # ... and after a delete, a call that resolved before it does not keep a sandbox.
    node.retire("fn")
    assert gone(new.sandbox_pid)
    after_delete = call(node, make_spec(app, revision="new"), {})
    assert after_delete.status is Status.SUCCESS
    assert gone(after_delete.sandbox_pid) and node.stats()["sandboxes"] == []


def test_a_call_that_ran_ahead_of_its_revision_going_live_keeps_its_sandbox(
        node: Node, app: Path, tmp_path: Path) -> None:
    # A deploy stored revision "b" and a call resolved it before the node heard of it.
    node.retire("fn", frozenset({"a"}))
    release = tmp_path / "release"
    busy = _hold_busy(node, make_spec(app, revision="b"), release)
    pid = node.stats()["sandboxes"][0]["pid"]
    node.retire("fn", frozenset({"a", "b"}))  # ... now it did
    release.touch()
    busy.join()
    assert [sb["pid"] for sb in node.stats()["sandboxes"]] == [pid]  # kept warm


def test_a_deleted_function_is_forgotten_once_nothing_of_it_remains(tmp_path: Path,
                                                                    app: Path) -> None:
    settings = Settings(home=tmp_path / "home", isolation="process",
                        keep_alive_s=0.2, capacity_mb=1024)
    with Node(settings, Layout(settings.home)) as node:
        node.retire("kept", frozenset({"kept-r1"}))
        node.retire("fn")
        assert call(node, make_spec(app), {}).status is Status.SUCCESS
        deadline = time.monotonic() + 5
        while "fn" in node._live_revisions:
            assert time.monotonic() < deadline, node._live_revisions
            time.sleep(0.02)
        assert set(node._live_revisions) == {"kept"}  # a live function is remembered


def test_a_sandbox_that_died_while_idle_is_not_handed_out(node: Node, app: Path,
                                                          tmp_path: Path) -> None:
    spec = make_spec(app)
    release = tmp_path / "release"
    busy = _hold_busy(node, spec, release)
    other = call(node, spec, {})  # a second sandbox, idle from now
    release.touch()
    busy.join()
    idle = [sb["pid"] for sb in sorted(node.stats()["sandboxes"], key=lambda sb: sb["idle_s"])]
    assert len(idle) == 2 and other.sandbox_pid in idle
    os.kill(idle[0], signal.SIGKILL)  # the one the next call would reuse first
    assert gone(idle[0])
    warm = call(node, spec, {})  # the dead one is dropped, the other one serves
    assert warm.status is Status.SUCCESS, warm
    assert warm.sandbox_pid == idle[1] and not warm.cold
    os.kill(warm.sandbox_pid, signal.SIGKILL)
    assert gone(warm.sandbox_pid)
    cold = call(node, spec, {})  # none left alive: a cold start
    assert cold.status is Status.SUCCESS, cold
    assert cold.cold and cold.sandbox_pid not in idle
    assert [sb["pid"] for sb in node.stats()["sandboxes"]] == [cold.sandbox_pid]
    assert node.stats()["used_mb"] == 128


def test_a_throttled_cold_start_leaves_no_empty_pool(tmp_path: Path, app: Path) -> None:
    settings = Settings(home=tmp_path / "home", isolation="process",
                        capacity_mb=128, keep_alive_s=30)
    release = tmp_path / "release"
    with Node(settings, Layout(settings.home)) as node:
        busy = _hold_busy(node, make_spec(app, "busy"), release)
        try:
            for i in range(3):
                with pytest.raises(TooManyRequestsError, match="capacity"):
                    call(node, make_spec(app, f"throttled-{i}"), {})
            assert list(node._pools) == [("busy", "busy-r1")]
        finally:
            release.touch()
            busy.join()


FORKER = """
import os, time

def handler(event, context):
    pids, errors = [], []
    for _ in range(event["n"]):
        try:
            pid = os.fork()
        except OSError as exc:
            errors.append(str(exc))
            continue
        if pid == 0:
            time.sleep(0.2)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return {"forked": len(pids), "errors": errors}
"""

NON_ROOT_NODE = """
import json, sys
from pathlib import Path
from faasbox.config import Settings
from faasbox.layout import Layout
from faasbox.runtime.node import Node
from faasbox.runtime.spec import SandboxSpec

home = Path(sys.argv[1])
settings = Settings(home=home / "home", isolation="process",
                        max_processes=8, memory_enforcement="rss-watch")
spec = SandboxSpec(function="fn", version="$LATEST", revision="r1", handler="app.handler",
                   code_dir=home / "code", layer_dir=None, memory_mb=128, timeout_s=10.0)
with Node(settings, Layout(settings.home)) as node:
    outcome = node.invoke(spec, b'{"n": 4}', request_id="r", invoked_function_arn="arn")
print(json.dumps({"status": outcome.status.value, "payload": json.loads(outcome.payload)}))
"""


def test_max_processes_counts_on_top_of_what_the_user_already_runs() -> None:
    # RLIMIT_NPROC counts all tasks of the user: the control plane's own threads, the
    # zygote and the spares already pass max_processes=8, yet the handler may fork 4.
    # As root (not limited at all) the node runs as nobody to exercise the limit.
    import shutil
    import subprocess
    import sys
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="faasbox-nproc-"))
    try:
        write_code(home / "code", {"app.py": FORKER})
        user, python, env = None, sys.executable, dict(os.environ)
        if os.geteuid() == 0:
            user = 65534
            for path in (home, home / "code", home / "code" / "app.py"):
                os.chown(path, user, user)
            # This interpreter may sit in root's home; nobody needs one it can run.
            python = _interpreter_for(user, env)
        run = subprocess.run([python, "-c", NON_ROOT_NODE, str(home)], user=user,
                             group=user, extra_groups=[] if user else None, env=env,
                             capture_output=True, text=True, timeout=60, cwd=home)
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.splitlines()[-1])
        assert result == {"status": "success", "payload": {"forked": 4, "errors": []}}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _interpreter_for(user: int, env: dict[str, str]) -> str:
    """An interpreter of this Python version that ``user`` can run with faasbox and its
    dependencies on PYTHONPATH (set in ``env``)."""
    import subprocess
    import sys
    import sysconfig

    import faasbox

    src = str(Path(faasbox.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, sysconfig.get_paths()["purelib"]])
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for python in (sys.executable, os.path.realpath(sys.executable),
                   f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        try:
            probe = subprocess.run([python, "-c", "import faasbox.runtime.node"], user=user,
                                   group=user, extra_groups=[], env=env, cwd="/",
                                   capture_output=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0:
            return python
    raise AssertionError(f"no Python {version} that uid {user} may run (to test RLIMIT_NPROC)")
