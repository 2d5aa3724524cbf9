"""``faasbox dev``: edit, save, and the next invocation runs the new code, while the
other functions' sandboxes stay warm."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import FAASBOX, REPO, Server, cli_env

from faasbox.errors import NotFoundError
from faasbox.remote import RemoteClient

WARM_SOURCE = (
    "import uuid\n"
    "TOKEN = uuid.uuid4().hex  # one per sandbox: the same token means the same sandbox\n"
    "def handler(event, context):\n"
    "    return {'token': TOKEN}\n"
)
DEV_SOURCE = (
    "def handler(event, context):\n"
    "    print('dev says', {answer!r})\n"
    "    return {{'answer': {answer!r}}}\n"
)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def dev_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "devfn"
    folder.mkdir()
    (folder / "app.py").write_text(DEV_SOURCE.format(answer="v1"))
    return folder


@pytest.fixture
def dev_process(server: Server, dev_folder: Path, tmp_path: Path) -> Iterator[
    tuple[subprocess.Popen[bytes], Path]
]:
    output = tmp_path / "dev.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [*FAASBOX, "dev", str(dev_folder), "--name", "devfn", "--handler", "app.handler"],
            stdout=sink, stderr=subprocess.STDOUT, env=cli_env(server.url, server.home),
            cwd=REPO,
        )
    try:
        yield process, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_logs_follow_prints_new_invocations(
    server: Server, remote: RemoteClient, tmp_path: Path
) -> None:
    folder = tmp_path / "chatty"
    folder.mkdir()
    (folder / "app.py").write_text(DEV_SOURCE.format(answer="followed"))
    remote.deploy("chatty", folder, handler="app.handler")
    old = remote.invoke("chatty").request_id
    output = tmp_path / "follow.out"
    with output.open("wb") as sink:
        process = subprocess.Popen([*FAASBOX, "logs", "chatty", "--follow", "--limit", "1"],
                                   stdout=sink, stderr=subprocess.STDOUT, cwd=REPO,
                                   env=cli_env(server.url, server.home))
    try:
        _wait(lambda: old in output.read_text(), 10, "the existing log")
        new = remote.invoke("chatty").request_id
        _wait(lambda: f"REPORT RequestId: {new}" in output.read_text(), 5, "the new log")
        assert output.read_text().count(f"START RequestId: {new}") == 1
        assert output.read_text().count(f"START RequestId: {old}") == 1
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def _answer(remote: RemoteClient) -> str | None:
    try:
        return remote.invoke("devfn").json()["answer"]
    except NotFoundError:
        return None


def test_dev_redeploys_on_save_and_keeps_others_warm(
    server: Server, remote: RemoteClient, dev_folder: Path, dev_process, tmp_path: Path
) -> None:
    warm = tmp_path / "warm"
    warm.mkdir()
    (warm / "app.py").write_text(WARM_SOURCE)
    remote.deploy("warm", warm, handler="app.handler", timeout_s=10)
    token = remote.invoke("warm").json()["token"]

    process, output = dev_process
    assert _wait(lambda: _answer(remote), 20, "the first deploy") == "v1"
    assert "Watching" in output.read_text()
    _wait(lambda: "dev says v1" in output.read_text(), 15, "the dev log to show the call")

    (dev_folder / "app.py").write_text(DEV_SOURCE.format(answer="v2"))
    _wait(lambda: _answer(remote) == "v2", 15, "the redeploy after a save")
    text = _wait(lambda: "dev says v2" in output.read_text() and output.read_text(), 15,
                 "the new log")
    assert "Redeployed devfn" in text and "REPORT RequestId" in text

    again = remote.invoke("warm")
    assert again.json()["token"] == token  # the same sandbox served it: stayed warm
    (record,) = remote.records(request_id=again.request_id)
    assert record.init_duration_ms is None

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert "Traceback" not in output.read_text()
