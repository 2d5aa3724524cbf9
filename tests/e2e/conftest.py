"""End-to-end fixtures: a real ``faasbox up`` server in a subprocess, the real CLI.

Each test module that asks for ``server`` gets one server of its own, on a free
loopback port with a temporary home; it is stopped (SIGINT, then SIGKILL) in teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from faasbox.auth.credentials import Credentials, from_home
from faasbox.remote import RemoteClient
from faasbox.remote.signing import SigV4

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
_SCRIPT = Path(sys.executable).with_name("faasbox")
FAASBOX = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "faasbox.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(endpoint: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASBOX_")}
    env.update(FAASBOX_ENDPOINT=endpoint, FAASBOX_HOME=str(home), NO_COLOR="1", COLUMNS="200",
               FAASBOX_ISOLATION=os.environ["FAASBOX_TEST_ISOLATION"],  # tests/conftest.py
               FAASBOX_CREDENTIALS_FILE=os.environ["FAASBOX_CREDENTIALS_FILE"])
    return env


@dataclass
class Server:
    """A running ``faasbox up`` and how to drive it."""

    url: str
    home: Path
    process: subprocess.Popen[bytes]
    output: Path

    def cli(
        self, *args: str, check: bool | None = True, timeout: float = 30, cwd: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        """Run ``faasbox ARGS`` against this server; ``check`` asserts exit code 0."""
        done = subprocess.run(
            [*FAASBOX, *args], env=cli_env(self.url, self.home), capture_output=True,
            text=True, timeout=timeout, cwd=cwd,
        )
        if check:
            assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
        return done

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    @property
    def credentials(self) -> Credentials:
        """The admin key the server's first start wrote into its home."""
        return from_home(self.home)

    def client(self, timeout_s: float = 30, **kwargs: Any) -> RemoteClient:
        """An SDK client signing with the admin key."""
        return RemoteClient(self.url, timeout_s=timeout_s, credentials=self.credentials,
                            **kwargs)

    def http(self, timeout: float = 30) -> httpx.Client:
        """A plain HTTP client that signs every request with the admin key."""
        return httpx.Client(base_url=self.url, timeout=timeout,
                            auth=SigV4(self.credentials))


def start_server(home: Path, *extra: str, endpoint_env: bool = True,
                 env_extra: dict[str, str] | None = None) -> Server:
    """``faasbox up`` on a free port; ``endpoint_env=False`` leaves FAASBOX_ENDPOINT out
    of its environment (the server derives its endpoint from its host and port);
    ``env_extra`` adds settings (``FAASBOX_KEEP_ALIVE_S``...)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    output = home.with_suffix(".out")
    env = cli_env(url, home)
    env.update(env_extra or {})
    if not endpoint_env:
        del env["FAASBOX_ENDPOINT"]
    with output.open("ab") as sink:  # a restart on the same home appends
        process = subprocess.Popen(
            [*FAASBOX, "up", "--port", str(port), "--home", str(home), *extra],
            stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )
    server = Server(url=url, home=home, process=process, output=output)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"faasbox up exited {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop_server(server)
    raise RuntimeError(f"faasbox up did not answer in 30 s:\n{server.log()}")


def stop_server(server: Server) -> int:
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("e2e") / "home")
    try:
        yield running
    finally:
        code = stop_server(running)
        assert code == 0, f"faasbox up exited {code}:\n{running.log()}"
        assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="module")
def remote(server: Server) -> Iterator[RemoteClient]:
    client = server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client
