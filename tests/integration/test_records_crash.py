"""A SIGKILLed control plane loses no invocation record of a call that returned."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import write_function

from faasbox.model import Status

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import faasbox

    client = faasbox.local(home=sys.argv[1], keep_alive_s=60)
    client.deploy("echo", sys.argv[2], handler="app.handler")
    ids = [client.invoke("echo", {"i": i}).request_id for i in range(int(sys.argv[3]))]
    print(json.dumps(ids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush: the writer is mid-window
    """
)


def test_records_of_returned_calls_survive_sigkill(tmp_path: Path, make_platform) -> None:
    code = write_function(
        tmp_path / "echo", "def handler(event, context):\n    print(event)\n    return event\n"
    )
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), str(code), "40"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ids = json.loads(proc.stdout)
    assert len(ids) == 40

    client = make_platform(home=home).client()
    records = {r.request_id: r for r in client.records("echo", limit=1000)}
    assert set(ids) <= set(records)
    assert all(records[i].status is Status.SUCCESS for i in ids)
    last = client.logs("echo", request_id=ids[-1])
    assert f"START RequestId: {ids[-1]}" in last and "{'i': 39}" in last
    assert (home / "records.journal").stat().st_size == 0  # recovered, then emptied


def test_reads_see_every_call_made_before_them(client, tmp_path: Path) -> None:
    code = write_function(tmp_path / "f", "def handler(event, context):\n    return 1\n")
    client.deploy("f", code, handler="app.handler")
    ids = [client.invoke("f").request_id for _ in range(25)]
    assert [r.request_id for r in client.records("f", limit=25)] == ids[::-1]
