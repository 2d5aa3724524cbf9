"""The namespace level built by a user other than root: the sandbox is root of a user
namespace of its own (mapped to that user alone) with no capability, and sees what a
sandbox built by root sees. The checks run in ``namespace_check.py`` (standard library
only) as ``nobody``, switched to by ``setpriv``.

Switching users needs root, and the level needs unprivileged user namespaces: CI has
both (it runs as root). Elsewhere skipped, saying which is missing; under CI (``CI``
set) never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NOBODY = 65534
#: A Python ``nobody`` can run (the venv's may live under /root); the runtime needs no
#: more than the standard library.
PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "switching to another user needs root"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                            "--clear-groups", "unshare", "--user", "--map-root-user",
                            "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unprivileged user namespaces are off: {probe.stderr.strip()}"
    return None


WHY = _why_not()
pytestmark = pytest.mark.skipif(WHY is not None and not os.environ.get("CI"),
                                reason=f"cannot build the level unprivileged here: {WHY}")


def test_an_unprivileged_platform_builds_namespace_sandboxes() -> None:
    # pytest's own temporary folders are root's alone: nobody needs one it can reach
    workspace = Path(tempfile.mkdtemp(prefix="faasbox-nobody-"))
    try:
        os.chown(workspace, NOBODY, NOBODY)
        secret = workspace / "secret.txt"
        secret.write_text("not for sandboxes")
        secret.chmod(0o644)  # readable by nobody on the host: only the sandbox hides it
        # the checkout may sit where nobody cannot read (under /root): copy what runs
        script = workspace / "tests" / "security" / "namespace_check.py"
        script.parent.mkdir(parents=True)
        shutil.copy(HERE / "namespace_check.py", script)
        shutil.copytree(HERE.parents[1] / "src" / "faasbox", workspace / "src" / "faasbox",
                        ignore=shutil.ignore_patterns("__pycache__"))
        done = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", PYTHON,
             "-I", "-S", str(script), str(workspace / "home"), str(secret)],
            capture_output=True, text=True, timeout=120, cwd="/")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["checks"] == {name: True for name in report["checks"]}, report
    assert report["seen"]["uid"] == 0 and report["host_uid"] == NOBODY
