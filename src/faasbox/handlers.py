"""What function code running in a faasbox sandbox may use besides the stdlib.

Sandboxes start without site-packages, so the control plane's libraries are out of
reach; the platform appends ``<home>/runtime-lib`` (a link to this package) to every
sandbox's ``sys.path``, last, so that the stdlib-only modules of faasbox can be
imported -- this one and the folder object store::

    from faasbox.handlers import objects

    def handler(event, context):
        info, data = objects().get("incoming", "report.txt")
        objects().put("results", "report.json", b'{"pages": 3}')

Writes through ``objects()`` are the platform's own: with the folder store they go into
the same index as the control plane's, so bucket notifications fire for them too.
``queues()`` reaches the platform's queues over its HTTP API (``FAASBOX_ENDPOINT``), as
a Lambda function reaches SQS: it needs a running ``faasbox up``.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse
from typing import Any

from faasbox.errors import BY_CODE, FaasboxError, RemoteError, ServiceUnavailableError
from faasbox.stores.objects import ObjectStore

_lock = threading.Lock()
_opened: dict[int, ObjectStore] = {}


def objects() -> ObjectStore:
    """This platform's object store (opened once per process, then reused across
    invocations of a warm sandbox).

    ``FAASBOX_OBJECT_STORE=folder`` (the default) opens the folder store at
    ``FAASBOX_OBJECTS_DIR`` directly: no HTTP round trip per object. ``s3`` opens the
    S3 adapter at ``FAASBOX_S3_ENDPOINT_URL``; it needs ``boto3`` in the function's
    requirements, and writes made this way are not seen by bucket notifications (only
    the control plane's own journal feeds those). Raises ServiceUnavailableError outside
    a sandbox when the variables are missing.
    """
    pid = os.getpid()
    store = _opened.get(pid)
    if store is not None:
        return store
    with _lock:
        store = _opened.get(pid)
        if store is None:
            store = _open()
            _opened.clear()  # a forked child must not reuse its parent's connections
            _opened[pid] = store
        return store


def _open() -> ObjectStore:
    kind = os.environ.get("FAASBOX_OBJECT_STORE", "folder")
    if kind == "folder":
        root = os.environ.get("FAASBOX_OBJECTS_DIR")
        if not root and os.environ.get("FAASBOX_ISOLATION") == "namespace":
            raise ServiceUnavailableError(
                "objects(): a namespace sandbox cannot see the platform's folder object "
                "store (it sees nothing of the platform's home); run the function at the "
                "process isolation level, or use an S3 object store"
            )
        if not root:
            raise ServiceUnavailableError(
                "FAASBOX_OBJECTS_DIR is not set: objects() works inside a faasbox sandbox "
                "(or set it to the platform's objects folder)"
            )
        from faasbox.stores.folder import FolderStore

        # The control plane sweeps orphan blobs; a sandbox opening the store must not.
        return FolderStore(root, sweep=False)
    if kind == "s3":
        import tempfile

        from faasbox.stores.s3 import S3Store

        return S3Store(
            os.path.join(tempfile.gettempdir(), "faasbox-s3-journal"),
            endpoint_url=os.environ.get("FAASBOX_S3_ENDPOINT_URL") or None,
            region=os.environ.get("FAASBOX_S3_REGION", "us-east-1"),
            bucket_prefix=os.environ.get("FAASBOX_S3_BUCKET_PREFIX", ""),
        )
    raise ServiceUnavailableError(f"FAASBOX_OBJECT_STORE={kind!r}: expected folder or s3")


def queues() -> QueueClient:
    """A client for this platform's queues, over ``FAASBOX_ENDPOINT`` (one kept-alive
    connection per process). Raises ServiceUnavailableError when the variable is
    missing (outside a sandbox of a running server)."""
    endpoint = os.environ.get("FAASBOX_ENDPOINT")
    if not endpoint:
        raise ServiceUnavailableError("FAASBOX_ENDPOINT is not set: queues() needs the "
                                      "platform's server")
    pid = os.getpid()
    with _lock:
        client = _queue_clients.get(pid)
        if client is None or client.endpoint != endpoint:
            _queue_clients.clear()
            client = _queue_clients[pid] = QueueClient(endpoint)
        return client


_queue_clients: dict[int, QueueClient] = {}


class QueueClient:
    """The few queue calls function code needs, over the HTTP API (stdlib only).
    Messages are dicts as the API gives them (``message_id``, ``receipt_handle``,
    ``body``, ``attributes``...). Errors raise the faasbox error the server answered."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        parts = urllib.parse.urlsplit(endpoint)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def send(self, queue: str, body: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/queues/{_q(queue)}/messages", {"body": body})

    def receive(self, queue: str, *, max_messages: int = 10, wait_s: int = 0,
                visibility_timeout_s: int | None = None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"max_messages": max_messages, "wait_s": wait_s}
        if visibility_timeout_s is not None:
            request["visibility_timeout_s"] = visibility_timeout_s
        found: list[dict[str, Any]] = self._call(
            "POST", f"/v1/queues/{_q(queue)}/receive", request)["messages"]
        return found

    def delete_batch(self, queue: str, receipt_handles: list[str]) -> dict[str, Any]:
        entries = [{"id": str(i), "receipt_handle": h} for i, h in enumerate(receipt_handles)]
        return self._call("POST", f"/v1/queues/{_q(queue)}/messages/delete-batch",
                          {"entries": entries})

    def _call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode()
        with self._lock:
            for attempt in (1, 2):  # a kept-alive connection the server closed: once more
                conn = self._conn or http.client.HTTPConnection(self._host, self._port,
                                                                timeout=60)
                try:
                    conn.request(method, path, data, {"content-type": "application/json"})
                    response = conn.getresponse()
                    payload = response.read()
                except (ConnectionError, http.client.HTTPException, OSError):
                    conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
                    continue
                self._conn = conn
                break
        answer = json.loads(payload) if payload else {}
        if response.status >= 400:
            code = str(answer.get("errorType", f"HTTP{response.status}"))
            message = str(answer.get("errorMessage", payload[:200]))
            cls = BY_CODE.get(code)
            error: FaasboxError = cls(message) if cls else RemoteError(code, message,
                                                                     response.status)
            raise error
        return answer


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")
