"""Adversarial functions against the ``namespace`` isolation level, each on a real
platform with real sandboxes: what they try, and the specific outcome.

These need Linux namespaces, which CI has (it runs as root). Elsewhere -- not Linux, or
not root where unprivileged user namespaces are switched off -- the level cannot be
built, and these tests are skipped with the reason ``faasbox doctor`` gives; under CI
(``CI`` set) they never skip: a missing level is a failure there.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from tests.conftest import write_function

from faasbox.runtime.node import unavailable

WHY = unavailable("namespace")
pytestmark = pytest.mark.skipif(
    WHY is not None and not os.environ.get("CI"),
    reason=f"the namespace level is not available on this host: {WHY}",
)

#: One handler that tries what the event asks and reports what happened.
PROBE = """
    import ctypes, errno, json, os, signal

    def attempt(action):
        try:
            return {"ok": True, "value": action()}
        except OSError as exc:
            return {"ok": False, "errno": errno.errorcode.get(exc.errno, exc.errno)}

    def write(path, size=1):
        with open(path, "wb") as f:
            f.write(b"x" * size)
        return size

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return line.split()[1]

    def handler(event, context):
        do = event["do"]
        if do == "look":
            return {
                "pid": os.getpid(), "ppid": os.getppid(), "uid": os.getuid(),
                "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                "paths": {p: os.path.exists(p) for p in event.get("paths", [])},
                "lists": {p: sorted(os.listdir(p)) if os.path.isdir(p) else None
                          for p in event.get("lists", [])},
                "tmp": sorted(os.listdir("/tmp")),
                "code": os.environ["LAMBDA_TASK_ROOT"],
                "cap_eff": status("CapEff"), "no_new_privs": status("NoNewPrivs"),
            }
        if do == "kill":
            return {str(pid): attempt(lambda pid=pid: os.kill(pid, signal.SIGKILL))
                    for pid in event["pids"]}
        if do == "write":
            return {path: attempt(lambda path=path: write(path)) for path in event["paths"]}
        if do == "fill":
            return attempt(lambda: write("/tmp/big", event["bytes"]))
        if do == "leave":
            write(event["path"])
            return sorted(os.listdir("/tmp"))
        if do == "escalate":
            import subprocess
            libc = ctypes.CDLL(None, use_errno=True)
            mounted = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
            traced = libc.ptrace(16, event["pid"], None, None)  # PTRACE_ATTACH
            traced_errno = errno.errorcode.get(ctypes.get_errno()) if traced != 0 else "attached"
            # a setuid-root program: with no_new_privs and nosuid it runs as the caller
            su = subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "none", "/tmp"],
                                capture_output=True, text=True)
            return {"setuid0": attempt(lambda: os.setuid(0)),
                    "mount": "refused" if mounted != 0 else "mounted",
                    "chroot": attempt(lambda: os.chroot("/tmp")),
                    "ptrace": traced_errno,
                    "setuid_program": [su.returncode, su.stderr.strip()[-80:]]}
        raise ValueError(do)
"""


@pytest.fixture
def platform(make_platform):
    return make_platform(isolation="namespace", sandbox_tmp_mb=8)


def deploy(client, tmp_path: Path, name: str) -> str:
    folder = write_function(tmp_path / name, PROBE)
    client.deploy(name, folder, handler="app.handler")
    return name


def call(client, name: str, event: dict):
    result = client.invoke(name, event)
    assert not result.function_error, result.payload
    return result.json()


def test_the_node_reports_the_namespace_level(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "probe")
    call(client, "probe", {"do": "look"})
    assert platform.node.stats()["isolation"] == "namespace"


def test_a_sandbox_sees_no_host_process_and_can_signal_none(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "probe")
    seen = call(client, "probe", {"do": "look"})
    assert (seen["pid"], seen["ppid"], seen["procs"]) == (1, 0, [1])
    zygote = platform.node.stats()["zygote_pid"]
    shots = call(client, "probe", {"do": "kill", "pids": [os.getpid(), zygote]})
    assert shots == {str(os.getpid()): {"ok": False, "errno": "ESRCH"},
                     str(zygote): {"ok": False, "errno": "ESRCH"}}
    assert platform.node.stats()["zygote_pid"] == zygote  # untouched, still serving
    assert call(client, "probe", {"do": "look"})["pid"] == 1


def test_another_functions_code_and_tmp_and_the_home_are_out_of_sight(
        platform, tmp_path) -> None:
    client = platform.client()
    folder = write_function(tmp_path / "alice", PROBE + "\n    # alice's own code\n")
    client.deploy("alice", folder, handler="app.handler")
    deploy(client, tmp_path, "mallory")
    secret = f"alice-secret-{uuid.uuid4().hex}"
    assert secret in call(client, "alice", {"do": "leave", "path": f"/tmp/{secret}"})
    alice_code = call(client, "alice", {"do": "look"})["code"]
    mallory_code = call(client, "mallory", {"do": "look"})["code"]
    assert alice_code != mallory_code
    home = platform.settings.home.resolve()
    targets = [alice_code, f"{alice_code}/app.py", str(home / "state.db"),
               str(home / "objects"), str(home / "logs"), str(home / "master.key"),
               str(home / "credentials"), str(home / "audit.log")]
    seen = call(client, "mallory", {"do": "look", "paths": targets,
                                    "lists": [str(home), str(home / "packages")]})
    assert seen["paths"] == {path: False for path in targets}
    assert secret not in seen["tmp"]
    assert not Path("/tmp", secret).exists()  # not the host's /tmp either
    # of the home, only the empty folders that lead to mallory's own binds show
    assert set(seen["lists"][str(home)]) <= {"packages", "layers", "runtime-lib", "sandboxes"}
    assert seen["lists"][str(home / "packages")] == [Path(mallory_code).name]


def test_two_sandboxes_of_one_function_have_their_own_tmp(platform, tmp_path) -> None:
    import concurrent.futures

    client = platform.client()
    folder = write_function(tmp_path / "slow", """
        import os, time

        def handler(event, context):
            with open("/tmp/mine", "w") as f:
                f.write(context.aws_request_id)
            time.sleep(0.5)
            return [open("/tmp/mine").read() == context.aws_request_id, os.listdir("/tmp")]
    """)
    client.deploy("slow", folder, handler="app.handler")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: client.invoke("slow", {}).json(), range(2)))
    assert [own for own, _ in results] == [True, True]
    assert len({sb["id"] for sb in client.sandboxes()}) == 2


def test_writes_outside_tmp_are_refused_and_tmp_is_capped(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "probe")
    code = call(client, "probe", {"do": "look"})["code"]
    refused = call(client, "probe", {"do": "write", "paths": [
        "/escape", "/usr/escape", "/etc/escape", f"{code}/app.py", f"{code}/new.py"]})
    assert {path: result["ok"] for path, result in refused.items()} == {
        path: False for path in refused}
    assert {result["errno"] for result in refused.values()} <= {"EROFS", "EACCES"}
    assert call(client, "probe", {"do": "fill", "bytes": 4 << 20})["ok"] is True
    assert call(client, "probe", {"do": "fill", "bytes": 12 << 20}) == {
        "ok": False, "errno": "ENOSPC"}  # sandbox_tmp_mb=8
    deploy(client, tmp_path, "bystander")
    assert call(client, "bystander", {"do": "look"})["pid"] == 1  # others still served


def test_a_sandbox_runs_unprivileged_and_cannot_raise_itself(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "probe")
    seen = call(client, "probe", {"do": "look"})
    assert seen["cap_eff"] == "0000000000000000" and seen["no_new_privs"] == "1"
    if os.getuid() == 0:
        assert seen["uid"] == 65534  # nobody, not root
    zygote = platform.node.stats()["zygote_pid"]
    tried = call(client, "probe", {"do": "escalate", "pid": zygote})
    setuid_program = tried.pop("setuid_program")
    assert tried == {"setuid0": {"ok": False, "errno": "EPERM"}, "mount": "refused",
                     "chroot": {"ok": False, "errno": "EPERM"}, "ptrace": "ESRCH"}
    assert setuid_program[0] != 0, setuid_program  # mount(8) found itself unprivileged


NETWORK_PROBE = """
    import socket

    def handler(event, context):
        try:
            socket.create_connection(("127.0.0.1", event["port"]), timeout=2).close()
            reached = "reached"
        except OSError as exc:
            reached = type(exc).__name__
        return {"reached": reached, "interfaces": [n for _, n in socket.if_nameindex()]}
"""


def test_network_none_leaves_no_way_out_and_host_keeps_it(platform, tmp_path) -> None:
    import socket

    client = platform.client()
    folder = write_function(tmp_path / "net", NETWORK_PROBE)
    client.deploy("cut-off", folder, handler="app.handler", network="none")
    client.deploy("online", folder, handler="app.handler")
    assert client.get_function("cut-off")["network"] == "none"
    with socket.socket() as server:  # a service on the host's loopback
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        cut_off = call(client, "cut-off", {"port": port})
        online = call(client, "online", {"port": port})
    assert cut_off["reached"] != "reached" and cut_off["interfaces"] == ["lo"]
    assert online["reached"] == "reached"
