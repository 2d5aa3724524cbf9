"""The FastAPI app, and ``serve``: the process behind ``faasbox up``."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from fastapi import Depends, FastAPI

import faasbox
from faasbox.auth.authority import Authority
from faasbox.config import Limits, Settings
from faasbox.errors import ConflictError
from faasbox.sdk import Client
from faasbox.server import (
    access,
    alarms,
    errors,
    functions,
    invoke,
    logs,
    manifest,
    metrics,
    node,
    objects,
    queues,
    schedules,
    triggers,
    urls,
)
from faasbox.server.auth import Authenticate, authorize
from faasbox.server.limits import HeaderLimit, JsonDepth

if TYPE_CHECKING:
    from faasbox.platform import Platform


def create_app(
    client: Client, *, authority: Authority | None = None, limits: Limits | None = None,
    invocation_slots: int = invoke.DEFAULT_INVOCATION_SLOTS,
    receive_slots: int = queues.DEFAULT_RECEIVE_SLOTS,
) -> FastAPI:
    """The HTTP API over ``client`` (docs/api.md). The caller owns and closes the client.

    Every call but ``/healthz`` and the docs is signed (SigV4), authorized by the
    signer's policies and audited by ``authority`` (the platform's, by default).

    At most ``invocation_slots`` invocations and ``receive_slots`` queue long polls run
    at once; one more is answered 429 at once. They have threads of their own, so other
    routes keep answering.
    """
    app = FastAPI(
        title="faasbox",
        version=faasbox.__version__,
        summary="Self-hosted serverless functions for Python, with AWS Lambda semantics.",
    )
    app.state.client = client
    if authority is None:
        authority = client.platform.auth  # type: ignore[attr-defined]
    app.state.authority = authority
    app.state.limits = limits or Limits()
    app.state.invocation_slots = invoke.InvocationSlots(invocation_slots)
    app.state.receive_slots = queues.ReceiveSlots(receive_slots)
    errors.install(app)
    limits = app.state.limits
    app.add_middleware(JsonDepth, limit=limits.json_depth, max_bytes=limits.sync_payload_bytes)
    app.add_middleware(Authenticate, authority=authority,
                       buffered_bytes=app.state.limits.sync_payload_bytes)
    app.add_middleware(HeaderLimit, limit=app.state.limits.header_bytes)  # outermost

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the server answers."""
        return {"status": "ok"}

    for module in (functions, invoke, logs, queues, objects, triggers, schedules, metrics,
                   alarms, urls, node, access):
        app.include_router(module.router, dependencies=[Depends(authorize)])
    return app


def deploy_examples(client: Client, root: Path | None = None) -> list[str]:
    """Deploy every function folder (with a manifest) under ``examples/``; their names."""
    folder = root if root is not None else manifest.examples_dir()
    names = []
    for found in manifest.find(folder):
        client.deploy(found.name, found.folder, **found.settings)
        names.append(found.name)
    return names


def invocation_slots(settings: Settings) -> int:
    """Concurrent invocations a server runs: as many sandboxes of the smallest memory
    size as the node's capacity holds (the platform throttles past that anyway), at
    least the default, at most 1024 threads."""
    fits = settings.capacity_mb // max(settings.limits.memory_min_mb, 1)
    return min(max(fits, invoke.DEFAULT_INVOCATION_SLOTS), 1024)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then;
    # without it Nagle meets delayed ACKs and every answer waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConflictError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            " (is another `faasbox up` running? pick another --port)"
        ) from exc
    sock.listen(2048)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM without re-raising the signal after
    its graceful shutdown (``serve`` still has the platform to close), and calling
    ``before_shutdown`` first: requests that wait on the platform (long polls) end
    at once instead of being cancelled when the graceful timeout runs out."""

    def __init__(self, config: uvicorn.Config, before_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._before_shutdown()
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(settings: Settings, examples: bool = False) -> None:
    """Run the platform and its HTTP API until SIGINT/SIGTERM, then close the platform.

    The socket is bound first, so a busy port is reported before anything starts.
    Functions see ``settings.endpoint`` as FAASBOX_ENDPOINT: unless set, it is derived
    from the host and the port bound (``--port 9000`` gives http://127.0.0.1:9000).
    """
    from faasbox.platform import Platform

    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    if port != settings.port and settings.endpoint == replace(settings, endpoint="").endpoint:
        # --port 0 picked a free port: functions reach this server there (FAASBOX_ENDPOINT)
        settings = replace(settings, port=port, endpoint="")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # while starting: stop cleanly
    platform: Platform | None = None
    try:
        platform = Platform(settings)
        platform.node.warm_up()  # a server is there to be called: have the zygote ready
        client = platform.client()
        deployed = deploy_examples(client) if examples else []
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        print(f"faasbox {faasbox.__version__} serving {url} (API docs: {url}/docs)", flush=True)
        print(f"home: {settings.home.resolve()}", flush=True)
        made = platform.auth.ensure_admin(settings.home, url)
        if made is not None:
            key, home_file, user_file, profile = made
            print(f"admin access key {key.key_id} created: the CLI and SDK sign with it from "
                  f"{home_file} (mode 0600) or {user_file} [{profile}]", flush=True)
        if deployed:
            print(f"examples deployed: {', '.join(deployed)}", flush=True)
        if "hello" in deployed:
            if url != Settings().endpoint:
                print(f"  export FAASBOX_ENDPOINT={url}", flush=True)
            print("""  faasbox invoke hello --payload '{"name": "world"}'""", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        config = uvicorn.Config(
            create_app(client, limits=settings.limits,
                       invocation_slots=invocation_slots(settings)),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        # Closing the queues wakes every long poll, which then answers empty.
        _Server(config, before_shutdown=platform.queues.close).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if platform is not None:
            platform.close()
        signal.signal(signal.SIGTERM, previous)
        print("faasbox stopped.", file=sys.stderr, flush=True)
