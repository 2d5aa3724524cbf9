"""The ``namespace`` level as an unprivileged user builds it (with a user namespace),
with the standard library alone:

    python3 -I -S tests/security/namespace_check.py HOME SECRET

Run it as a user other than root (tests/security/test_unprivileged.py does, with
``setpriv``). Builds a node at the namespace level on ``HOME`` (a folder that user
owns) and checks that a sandbox sees its own pid namespace and hostname, cannot read
``SECRET`` (a file outside what it is given) nor the node's home, cannot write outside
its ``/tmp``, and runs as root of its user namespace only: the host user it maps to is
the caller. Prints one JSON report; exits 1 when a check fails.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from faasbox.config import Settings
from faasbox.layout import Layout
from faasbox.runtime.node import Node, isolation_level
from faasbox.runtime.spec import SandboxSpec

PROBE = """
import ctypes, os, socket

def handler(event, context):
    def can_write(path):
        try:
            with open(path, "w") as f:
                f.write("x")
            return True
        except OSError:
            return False
    return {
        "uid": os.getuid(),
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "hostname": socket.gethostname(),
        "secret_visible": os.path.exists(event["secret"]),
        "home_files": sorted(os.listdir(event["home"])) if os.path.isdir(event["home"]) else [],
        "write_etc": can_write("/etc/faasbox-probe"),
        "write_code": can_write(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "x.py")),
        "write_tmp": can_write("/tmp/probe"),
        "cap_eff": [l.split()[1] for l in open("/proc/self/status")
                    if l.startswith("CapEff:")][0],
        # MS_REMOUNT (32): / read-write again, as root of its user namespace would
        "remount_rw": ctypes.CDLL(None, use_errno=True).mount(None, b"/", None, 32, None) == 0,
    }
"""


def main() -> int:
    home, secret = Path(sys.argv[1]), sys.argv[2]
    code = Path(tempfile.mkdtemp(dir=home.parent))
    (code / "app.py").write_text(PROBE)
    settings = Settings(home=home, isolation="namespace", memory_enforcement="rss-watch",
                        capacity_mb=2048, keep_alive_s=30)
    report: dict[str, object] = {"host_uid": os.getuid(), "level": isolation_level(settings)}
    spec = SandboxSpec(function="probe", version="$LATEST", revision="r1",
                       handler="app.handler", code_dir=code, layer_dir=None, memory_mb=128,
                       timeout_s=10.0)
    with Node(settings, Layout(settings.home)) as node:
        outcome = node.invoke(spec, json.dumps({"secret": secret, "home": str(home)}).encode(),
                              request_id="r", invoked_function_arn="arn:probe")
        seen = json.loads(outcome.payload)
    report["seen"] = seen
    checks = {
        "built as an unprivileged user": report["host_uid"] != 0,
        "namespace level": report["level"] == "namespace",
        "own pid namespace": seen.get("procs") == [1],
        "own hostname": seen.get("hostname") == "faasbox",
        "secret out of sight": seen.get("secret_visible") is False,
        # of the home, only the folder that leads to the sandbox's own working folder
        "home out of sight": seen.get("home_files") in ([], ["sandboxes"]),
        "read-only root": seen.get("write_etc") is False,
        "read-only code": seen.get("write_code") is False,
        "private /tmp": seen.get("write_tmp") is True,
        "no capabilities": seen.get("cap_eff") == "0000000000000000",
        "root stays read-only": seen.get("remount_rw") is False,
    }
    report["checks"] = checks
    print(json.dumps(report, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
