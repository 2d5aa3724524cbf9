"""The in-process platform end to end: deploy, invoke, versions, aliases, records, logs."""

from __future__ import annotations

import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import write_function

from faasbox.config import Limits
from faasbox.errors import (
    AliasNotFoundError,
    ConflictError,
    DependencyBuildError,
    FaasboxError,
    FunctionNotFoundError,
    InvalidPackageError,
    InvalidParameterError,
    PayloadTooLargeError,
    TooManyRequestsError,
    VersionNotFoundError,
)
from faasbox.model import Status

HELLO = """
    import os
    print("init", os.environ["AWS_LAMBDA_FUNCTION_NAME"])
    def handler(event, context):
        print("hello from", context.function_name)
        return {"message": f"Hello, {(event or {}).get('name', 'world')}!",
                "version": context.function_version}
"""


def deploy_hello(client, tmp_path: Path, name: str = "hello", **kw):
    folder = write_function(tmp_path / name, HELLO)
    return client.deploy(name, folder, handler="app.handler", **kw)


def test_deploy_and_invoke_returns_result_record_and_framed_logs(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    first = client.invoke("hello", {"name": "Ada"})
    second = client.invoke("hello", {"name": "Bob"})
    assert first.json() == {"message": "Hello, Ada!", "version": "$LATEST"}
    assert second.json()["message"] == "Hello, Bob!"
    assert first.function_error is None and first.executed_version == "$LATEST"
    records = {r.request_id: r for r in client.records("hello")}
    cold, warm = records[first.request_id], records[second.request_id]
    assert cold.status is Status.SUCCESS and cold.init_duration_ms is not None
    assert warm.init_duration_ms is None
    log = client.logs("hello", request_id=first.request_id)
    assert log.startswith(f"START RequestId: {first.request_id} Version: $LATEST\n")
    assert "hello from hello" in log and "init hello" in log
    assert f"END RequestId: {first.request_id}" in log
    assert "Init Duration:" in log and "Max Memory Used:" in log
    assert "Init Duration" not in client.logs("hello", request_id=second.request_id)
    both = client.logs("hello")
    assert both.index(first.request_id) < both.index(second.request_id)


def test_deploy_from_zip_with_dotted_handler(client, tmp_path) -> None:
    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/mod.py", "def handler(event, context):\n    return event * 2\n")
    client.deploy("zipped", archive, handler="pkg.mod.handler")
    assert client.invoke("zipped", 21).json() == 42


def test_handler_error_is_a_function_error_with_lambdas_shape(client, tmp_path) -> None:
    folder = write_function(
        tmp_path / "bad", "def handler(event, context):\n    raise KeyError('missing')\n"
    )
    client.deploy("bad", folder, handler="app.handler")
    result = client.invoke("bad")
    body = result.json()
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "KeyError" and "missing" in body["errorMessage"]
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert client.records("bad")[0].status is Status.ERROR


def test_timeout_is_recorded_with_output_printed_before_the_kill(client, tmp_path) -> None:
    folder = write_function(
        tmp_path / "slow",
        "import time\ndef handler(event, context):\n"
        "    print('working', flush=True)\n    time.sleep(30)\n",
    )
    client.deploy("slow", folder, handler="app.handler", timeout_s=1)
    result = client.invoke("slow")
    assert result.json()["errorType"] == "Sandbox.Timedout"
    assert result.json()["errorMessage"] == "Task timed out after 1.00 seconds"
    record = client.records("slow")[0]
    assert record.status is Status.TIMEOUT
    assert "working" in client.logs("slow", request_id=record.request_id)


def test_versions_are_immutable_and_publishing_unchanged_reuses(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    v1 = client.publish("hello")
    assert client.publish("hello")["version"] == v1["version"] == "1"
    folder = write_function(
        tmp_path / "hello2", "def handler(event, context):\n    return 'two'\n"
    )
    client.deploy("hello", folder)  # handler kept from $LATEST
    v2 = client.publish("hello", description="second")
    assert v2["version"] == "2" and v2["version_description"] == "second"
    assert client.invoke("hello:1").json()["version"] == "1"
    assert client.invoke("hello", qualifier="2").json() == "two"
    assert client.invoke("hello").json() == "two"
    info = client.get_function("hello")
    assert [v["version"] for v in info["versions"]] == ["1", "2"]


def test_weighted_alias_routes_by_weight(client, tmp_path) -> None:
    for text in ("one", "two"):
        folder = write_function(
            tmp_path / text, f"def handler(event, context):\n    return '{text}'\n"
        )
        client.deploy("w", folder, handler="app.handler")
        client.publish("w")
    client.set_alias("w", "live", "1", additional_version="2", additional_weight=0.3)
    counts = Counter(client.invoke("w:live").json() for _ in range(600))
    # binomial(600, 0.3): mean 180, sd ~11.2; +-5 sd never fails by chance in practice
    assert 124 <= counts["two"] <= 236, counts
    assert client.get_function("w", "live")["version"] == "1"


def test_unknown_function_version_and_alias_are_not_found(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    with pytest.raises(FunctionNotFoundError):
        client.invoke("nope")
    with pytest.raises(VersionNotFoundError):
        client.invoke("hello:9")
    with pytest.raises(AliasNotFoundError):
        client.invoke("hello:prod")
    with pytest.raises(VersionNotFoundError):
        client.set_alias("hello", "prod", "3")
    with pytest.raises(AliasNotFoundError):
        client.get_function("hello", "prod")


def test_bad_payloads_are_refused_before_running(make_platform, tmp_path) -> None:
    client = make_platform(limits=Limits(sync_payload_bytes=1000)).client()
    deploy_hello(client, tmp_path)
    with pytest.raises(InvalidParameterError, match="not valid JSON"):
        client.invoke("hello", raw=b"{nope")
    with pytest.raises(PayloadTooLargeError, match="over the 1000-byte limit"):
        client.invoke("hello", "x" * 2000)
    assert client.records("hello") == []


def test_bad_input_changes_nothing(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    before = client.get_function("hello")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.py", "x = 1\n")
    with pytest.raises(InvalidPackageError, match=r"escape\.py"):
        client.deploy("hello", evil)
    with pytest.raises(InvalidParameterError):
        client.deploy("hello", memory_mb=64)
    with pytest.raises(InvalidParameterError):
        client.update_config("hello", handler="not a handler")
    with pytest.raises(InvalidParameterError):
        client.deploy("bad name!", tmp_path / "hello", handler="app.handler")
    with pytest.raises(InvalidParameterError, match="handler is required"):
        client.deploy("nohandler", tmp_path / "hello")
    assert client.get_function("hello") == before
    assert [f["function"] for f in client.list_functions()] == ["hello"]
    assert client.invoke("hello").function_error is None


def test_failed_dependency_build_keeps_previous_version_serving(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    before = client.get_function("hello")
    with pytest.raises(DependencyBuildError, match="faasbox-no-such-package"):
        client.deploy(
            "hello",
            tmp_path / "hello",
            requirements="--no-index\nfaasbox-no-such-package==1.0\n",
        )
    assert client.get_function("hello") == before
    assert client.invoke("hello").json()["message"] == "Hello, world!"


def test_concurrent_config_updates_leave_one_whole_winner(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    sizes = [128 + 64 * i for i in range(8)]

    def update(size: int) -> None:
        client.update_config("hello", memory_mb=size, description=f"size {size}")

    threads = [threading.Thread(target=update, args=(s,)) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = client.get_function("hello")
    assert final["memory_mb"] in sizes
    assert final["description"] == f"size {final['memory_mb']}"  # never half of two writes


def test_delete_with_a_busy_sandbox_lets_it_finish_then_it_goes(client, tmp_path) -> None:
    folder = write_function(
        tmp_path / "busy",
        "import time\ndef handler(event, context):\n    time.sleep(1.0)\n    return 'done'\n",
    )
    client.deploy("busy", folder, handler="app.handler", timeout_s=10)
    results = []
    caller = threading.Thread(target=lambda: results.append(client.invoke("busy")))
    caller.start()
    node = client.platform.node
    deadline = time.time() + 10
    while not any(s["state"] == "busy" for s in node.stats()["sandboxes"]):
        assert time.time() < deadline
        time.sleep(0.01)
    client.delete_function("busy")
    with pytest.raises(FunctionNotFoundError):
        client.invoke("busy")
    caller.join()
    assert results[0].json() == "done"
    deadline = time.time() + 5
    while node.stats()["sandboxes"]:
        assert time.time() < deadline, node.stats()
        time.sleep(0.05)
    assert client.records("busy")[0].status is Status.SUCCESS


def test_update_of_latest_never_reuses_old_sandboxes(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    client.invoke("hello")
    client.update_config("hello", environment={"GREETING": "hi"})
    folder = write_function(
        tmp_path / "env",
        "import os\ndef handler(event, context):\n    return os.environ.get('GREETING')\n",
    )
    client.deploy("hello", folder)
    assert client.invoke("hello").json() == "hi"


def test_functions_with_the_same_code_and_configuration_never_share_a_sandbox(
        client, tmp_path) -> None:
    """Same code, same configuration: the same revision, but warm reuse never crosses
    functions (each call sees its own function's name, in its own sandbox)."""
    folder = write_function(tmp_path / "same", """
        import os

        def handler(event, context):
            return [context.function_name, os.getpid()]
    """)
    for name in ("twin-a", "twin-b", "twin-c"):
        client.deploy(name, folder, handler="app.handler")
    seen = {name: client.invoke(name, {}).json() for name in ("twin-a", "twin-b", "twin-c")}
    assert [value[0] for value in seen.values()] == ["twin-a", "twin-b", "twin-c"]
    assert len({value[1] for value in seen.values()}) == 3
    assert {sb["function"] for sb in client.sandboxes()} == {"twin-a", "twin-b", "twin-c"}
    assert client.invoke("twin-b", {}).json() == seen["twin-b"]  # warm: its own sandbox


def test_one_control_plane_per_home(make_platform) -> None:
    make_platform()
    with pytest.raises(ConflictError, match="in use by pid"):
        make_platform()


def test_a_slow_deploy_keeps_a_config_change_made_meanwhile(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    errors: list[BaseException] = []

    def slow_deploy() -> None:  # pip runs (~1 s) before the deploy's write
        try:
            client.deploy("hello", tmp_path / "hello", requirements="--no-index\n")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    deployer = threading.Thread(target=slow_deploy)
    deployer.start()
    time.sleep(0.2)
    client.update_config("hello", memory_mb=512)
    deployer.join()
    assert errors == []
    final = client.get_function("hello")
    assert final["memory_mb"] == 512 and final["layer_sha256"] is not None


def test_explicit_requirements_stay_across_code_updates(client, tmp_path) -> None:
    deploy_hello(client, tmp_path, requirements="--no-index\n")
    layer = client.get_function("hello")["layer_sha256"]
    assert layer is not None
    client.deploy("hello", write_function(tmp_path / "v2", HELLO))  # no requirements.txt
    assert client.get_function("hello")["layer_sha256"] == layer
    with_own = write_function(tmp_path / "v3", HELLO)
    (with_own / "requirements.txt").write_text("--no-index\n--prefer-binary\n")
    client.deploy("hello", with_own)
    own = client.get_function("hello")
    assert own["layer_sha256"] not in (None, layer) and own["requirements_source"] == "package"
    client.deploy("hello", write_function(tmp_path / "v4", HELLO))
    assert client.get_function("hello")["layer_sha256"] is None  # went with its package
    assert client.invoke("hello").function_error is None


def test_version_numbers_are_canonical(client, tmp_path) -> None:
    deploy_hello(client, tmp_path)
    client.publish("hello")
    for bad in ("0", "01"):
        with pytest.raises(VersionNotFoundError):
            client.invoke(f"hello:{bad}")
        with pytest.raises(InvalidParameterError):
            client.set_alias("hello", "live", bad)


def test_throttled_and_failed_calls_are_recorded_with_the_reason(make_platform, tmp_path):
    client = make_platform().client()
    deploy_hello(client, tmp_path, reserved_concurrency=0)
    with pytest.raises(TooManyRequestsError):
        client.invoke("hello")
    (record,) = client.records("hello")
    assert record.status is Status.THROTTLED
    assert "reserved concurrency of 0" in (record.error_message or "")


def test_close_records_the_calls_it_cut_short(make_platform, tmp_path) -> None:
    platform = make_platform(home=tmp_path / "h1")
    client = platform.client()
    folder = write_function(
        tmp_path / "long", "import time\ndef handler(event, context):\n    time.sleep(30)\n"
    )
    client.deploy("long", folder, handler="app.handler", timeout_s=60)
    results = []
    caller = threading.Thread(target=lambda: results.append(client.invoke("long")))
    caller.start()
    deadline = time.time() + 10
    while not any(s["state"] == "busy" for s in platform.node.stats()["sandboxes"]):
        assert time.time() < deadline
        time.sleep(0.01)
    platform.close()
    caller.join(10)
    assert results and results[0].function_error == "Unhandled"
    again = make_platform(home=tmp_path / "h1").client()
    (record,) = again.records("long")
    assert record.request_id == results[0].request_id
    assert record.status in (Status.CRASH, Status.ERROR)


def test_network_is_host_or_none_and_none_needs_namespaces(client, tmp_path) -> None:
    folder = write_function(tmp_path / "net", "def handler(event, context):\n    return 1\n")
    with pytest.raises(InvalidParameterError, match="network='wifi': use one of host, none"):
        client.deploy("net", folder, handler="app.handler", network="wifi")
    with pytest.raises(FunctionNotFoundError):
        client.get_function("net")  # nothing was created
    client.deploy("net", folder, handler="app.handler")
    assert client.get_function("net")["network"] == "host"
    revision = client.get_function("net")["revision"]
    client.update_config("net", network="none")
    assert client.get_function("net")["network"] == "none"
    assert client.get_function("net")["revision"] != revision  # never the old sandboxes
    # this platform runs at the process level: no way to take the network away
    with pytest.raises(FaasboxError, match="needs the namespace or cgroup isolation level"):
        client.invoke("net", {})
    assert client.records("net")[0].status is Status.CRASH


def test_below_the_cgroup_level_no_cpu_time_is_claimed(client, tmp_path) -> None:
    folder = write_function(tmp_path / "plain", "def handler(event, context):\n    return 1\n")
    client.deploy("plain", folder, handler="app.handler")
    result = client.invoke("plain", {})
    [record] = client.records("plain")
    assert record.cpu_time_ms is None and "CPU Time" not in result.log
    assert record.to_dict()["cpu_time_ms"] is None


def test_an_in_process_platform_runs_at_the_process_level_unless_asked(tmp_path) -> None:
    """faasbox.local() serves no HTTP API, which namespace sandboxes call back through:
    it stays at the process level unless told otherwise."""
    import faasbox

    client = faasbox.local(home=str(tmp_path / "a"))
    try:
        assert client.platform.settings.isolation == "process"  # type: ignore[attr-defined]
    finally:
        client.close()
    asked = faasbox.local(home=str(tmp_path / "b"), isolation="auto")
    try:
        assert asked.platform.settings.isolation == "auto"  # type: ignore[attr-defined]
    finally:
        asked.close()
