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
the same index as the control plane's, so bucket notifications fire for them too. At the
``process`` isolation level ``objects()`` opens the folder store directly (fast, and
that level is no boundary anyway); at ``namespace`` and ``cgroup`` the sandbox cannot see
it and ``objects()`` goes over the HTTP API. ``queues()`` and ``invoke()`` always do
(``FAASBOX_ENDPOINT``), as a Lambda function reaches SQS: they need a running
``faasbox up``. Calls over the API are signed with the function's execution role
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), so they may
do only what the role's policies allow.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse
from typing import Any

from faasbox import stdlib_sigv4
from faasbox.errors import (
    BY_CODE,
    FaasboxError,
    RemoteError,
    ServiceUnavailableError,
    not_found,
)
from faasbox.stores.objects import ObjectStore

_lock = threading.Lock()
_opened: dict[int, ObjectStore] = {}


def objects() -> ObjectStore:
    """This platform's object store (opened once per process, then reused across
    invocations of a warm sandbox).

    ``FAASBOX_OBJECT_STORE=folder`` (the default) opens the folder store at
    ``FAASBOX_OBJECTS_DIR`` directly: no HTTP round trip per object. ``s3`` opens the
    S3 adapter at ``FAASBOX_S3_ENDPOINT_URL`` with the S3 credentials the function's
    environment gives as ``FAASBOX_S3_ACCESS_KEY_ID`` / ``FAASBOX_S3_SECRET_ACCESS_KEY``
    (``AWS_*`` hold its faasbox role's); it needs ``boto3`` in the function's
    requirements, and writes made this way are not seen by bucket notifications (only
    the control plane's own journal feeds those). Raises ServiceUnavailableError outside
    a sandbox when the variables are missing.
    """
    if (os.environ.get("FAASBOX_OBJECT_STORE", "folder") == "folder"
            and not os.environ.get("FAASBOX_OBJECTS_DIR")
            and os.environ.get("FAASBOX_ISOLATION") in ("namespace", "cgroup")):
        # the sandbox sees nothing of the platform's home: objects go over the API,
        # signed with the function's role (so only what the role allows)
        from faasbox.stores.api import ApiObjectStore

        return ApiObjectStore(_api())
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

        # AWS_* are the function's faasbox role; S3's own come from these, when set
        key_id = os.environ.get("FAASBOX_S3_ACCESS_KEY_ID")
        secret = os.environ.get("FAASBOX_S3_SECRET_ACCESS_KEY")
        return S3Store(
            os.path.join(tempfile.gettempdir(), "faasbox-s3-journal"),
            endpoint_url=os.environ.get("FAASBOX_S3_ENDPOINT_URL") or None,
            region=os.environ.get("FAASBOX_S3_REGION", "us-east-1"),
            bucket_prefix=os.environ.get("FAASBOX_S3_BUCKET_PREFIX", ""),
            credentials=(key_id, secret, os.environ.get("FAASBOX_S3_SESSION_TOKEN"))
            if key_id and secret else None,
        )
    raise ServiceUnavailableError(f"FAASBOX_OBJECT_STORE={kind!r}: expected folder or s3")


def queues() -> QueueClient:
    """A client for this platform's queues, over ``FAASBOX_ENDPOINT``, signed with the
    function's role credentials. Raises ServiceUnavailableError outside a sandbox of a
    running server."""
    return QueueClient(_api())


def invoke(function: str, payload: Any = None, *, qualifier: str | None = None) -> Any:
    """Invoke another function and wait for its result (the decoded JSON it returned);
    a function error raises FaasboxError with its message. Allowed when the role
    allows ``functions:Invoke`` on ``function:NAME``."""
    path = f"/v1/functions/{_q(function)}/invoke"
    if qualifier:
        path += "?qualifier=" + _q(qualifier)
    _, headers, body = _api().request("POST", path, json.dumps(payload).encode())
    result = json.loads(body) if body else None
    if headers.get("x-amz-function-error"):
        error = result if isinstance(result, dict) else {}
        raise FaasboxError(f"{function} failed: {error.get('errorType', 'Error')}: "
                           f"{error.get('errorMessage', body[:200])}")
    return result


_apis: dict[int, Api] = {}


def _api() -> Api:
    endpoint = os.environ.get("FAASBOX_ENDPOINT")
    if not endpoint:
        raise ServiceUnavailableError("FAASBOX_ENDPOINT is not set: calling the platform "
                                      "needs its server")
    pid = os.getpid()
    with _lock:
        api = _apis.get(pid)
        if api is None or api.endpoint != endpoint:
            _apis.clear()  # a forked child must not share its parent's connection
            api = _apis[pid] = Api(endpoint)
        return api


class Api:
    """Signed calls to the platform's HTTP API (stdlib only), with the credentials of
    the function's role from the environment, read at each call: the platform renews
    them in a warm sandbox before they expire. One kept-alive connection."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        parts = urllib.parse.urlsplit(endpoint)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); an error answer raises the faasbox error
        the server answered."""
        sent = {"content-type": "application/json", **(headers or {})}
        key_id = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key_id and secret:
            sent = stdlib_sigv4.sign(method, self.endpoint + path, sent, body, key_id, secret,
                                     session_token=os.environ.get("AWS_SESSION_TOKEN"))
        with self._lock:
            for attempt in (1, 2):  # a kept-alive connection the server closed: once more
                conn = self._conn or http.client.HTTPConnection(self._host, self._port,
                                                                timeout=60)
                try:
                    conn.request(method, path, body, sent)
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
        answer = {k.lower(): v for k, v in response.getheaders()}
        if response.status >= 400:
            try:
                data = json.loads(payload) if payload else {}
            except ValueError:
                data = {}
            code = str(data.get("errorType", f"HTTP{response.status}"))
            message = str(data.get("errorMessage", payload[:200]))
            if response.status == 404:
                raise not_found(message)
            cls = BY_CODE.get(code)
            error: FaasboxError = cls(message) if cls else RemoteError(code, message,
                                                                     response.status)
            raise error
        return response.status, answer, payload

    def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        payload = self.request(method, path, json.dumps(body).encode())[2]
        return json.loads(payload) if payload else {}


class QueueClient:
    """The few queue calls function code needs. Messages are dicts as the API gives them
    (``message_id``, ``receipt_handle``, ``body``, ``attributes``...)."""

    def __init__(self, api: Api) -> None:
        self._api = api

    def send(self, queue: str, body: str) -> dict[str, Any]:
        return dict(self._api.call("POST", f"/v1/queues/{_q(queue)}/messages", {"body": body}))

    def receive(self, queue: str, *, max_messages: int = 10, wait_s: int = 0,
                visibility_timeout_s: int | None = None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"max_messages": max_messages, "wait_s": wait_s}
        if visibility_timeout_s is not None:
            request["visibility_timeout_s"] = visibility_timeout_s
        found: list[dict[str, Any]] = self._api.call(
            "POST", f"/v1/queues/{_q(queue)}/receive", request)["messages"]
        return found

    def delete_batch(self, queue: str, receipt_handles: list[str]) -> dict[str, Any]:
        entries = [{"id": str(i), "receipt_handle": h} for i, h in enumerate(receipt_handles)]
        return dict(self._api.call("POST", f"/v1/queues/{_q(queue)}/messages/delete-batch",
                                   {"entries": entries}))


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")
