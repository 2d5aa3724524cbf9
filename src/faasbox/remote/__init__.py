"""The SDK over HTTP: :class:`RemoteClient` talks to a ``faasbox up`` server.

It implements every :class:`faasbox.sdk.Client` method with one pooled ``httpx.Client``
and raises the same :mod:`faasbox.errors` class the server raised, so code written
against ``faasbox.local()`` behaves the same against ``faasbox.connect(url)``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import stat
import zipfile
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import quote, urlsplit

import httpx
import orjson

from faasbox import errors
from faasbox.auth.credentials import Credentials
from faasbox.auth.credentials import resolve as resolve_credentials
from faasbox.auth.credentials import user_file as user_credentials_file
from faasbox.config import Limits
from faasbox.model import InvocationRecord, InvokeResult
from faasbox.registry.packages import Stage, fill_from_folder
from faasbox.remote.signing import SigV4
from faasbox.sdk import Client

#: Long enough for the longest function timeout (900 s) and a dependency build.
DEFAULT_TIMEOUT_S = 960.0
START_HINT = "start one with `faasbox up` or `make run`, or set FAASBOX_ENDPOINT"

_JSON = {"content-type": "application/json"}
_JSON_TAIL = {"content-type": "application/json", "x-amz-log-type": "Tail"}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _settings_home() -> Path | None:
    from faasbox.config import Settings

    try:
        return Settings.from_env().home
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _fn(name: str) -> str:
    return "/v1/functions/" + quote(name, safe="")


class RemoteClient(Client):
    """A :class:`~faasbox.sdk.Client` for the server at ``url``.

    ``timeout_s`` bounds each call (connecting takes at most 5 s of it). With
    ``log_tail`` every invoke asks for the log's tail (``InvokeResult.log``, the last
    4 KB, as Lambda's ``LogType=Tail``); otherwise ``log`` is empty and
    :meth:`logs` with the request id gives the whole framed log.

    Every request is signed (SigV4) with ``credentials``, by default those
    :func:`faasbox.auth.credentials.resolve` finds (environment, the home's admin key,
    ``~/.faasbox/credentials``); with none found requests go unsigned and the server
    answers 403.
    """

    def __init__(
        self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S, *, log_tail: bool = False,
        credentials: Credentials | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.InvalidParameterError(
                f"endpoint {url!r} is not an http(s) URL such as http://127.0.0.1:8642"
            )
        host = parts.hostname
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        self._invoke_headers = _JSON_TAIL if log_tail else _JSON
        if credentials is None:
            credentials = resolve_credentials(_settings_home(), os.environ, self.url)
        self.credentials = credentials
        self._http = httpx.Client(
            base_url=self.url,
            auth=SigV4(credentials) if credentials is not None else None,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            trust_env=not loopback,  # a proxy from the environment never serves loopback
        )
        from faasbox.remote.alarms import RemoteAlarms
        from faasbox.remote.metrics import RemoteMetrics
        from faasbox.remote.objects import RemoteObjects
        from faasbox.remote.queues import RemoteQueues
        from faasbox.remote.schedules import RemoteSchedules
        from faasbox.remote.triggers import RemoteTriggers

        self.queues = RemoteQueues(self)
        self.objects = RemoteObjects(self)
        self.triggers = RemoteTriggers(self)
        self.schedules = RemoteSchedules(self)
        self.alarms = RemoteAlarms(self)
        self.metrics = RemoteMetrics(self)

    # -- transport -------------------------------------------------------------------

    def _look_for_credentials(self) -> None:
        """Found none at construction: look again (a server started meanwhile may have
        written its admin key since)."""
        found = resolve_credentials(_settings_home(), os.environ, self.url)
        if found is not None:
            self.credentials = found
            self._http.auth = SigV4(found)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self.credentials is None:
            self._look_for_credentials()
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise errors.ServerUnavailableError(
                f"no faasbox server answers at {self.url}: {START_HINT}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise errors.RemoteError(
                "ClientTimeout", f"{self.url} did not answer {method} {path} in time", 504
            ) from exc
        except httpx.TransportError as exc:
            raise errors.ServerUnavailableError(
                f"lost the connection to {self.url} ({exc}): {START_HINT}"
            ) from exc
        if response.status_code >= 400:
            if response.status_code == 403 and self.credentials is None:
                raise errors.ForbiddenError(
                    f"{_message(response)} (no credentials found: set FAASBOX_ACCESS_KEY_ID "
                    "and FAASBOX_SECRET_ACCESS_KEY, or FAASBOX_HOME to the server's home; "
                    f"its first `faasbox up` also wrote {user_credentials_file()})")
            _raise_for(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP call (httpx keyword arguments); an error answer raises the faasbox
        error the server raised. For the resource clients of :mod:`faasbox.remote`."""
        return self._request(method, path, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and decode the JSON answer."""
        return self._request(method, path, **kwargs).json()

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed answer (read it with ``iter_bytes``); errors raise as ``request``."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                yield response
        except httpx.ConnectError as exc:
            raise errors.ServerUnavailableError(
                f"no faasbox server answers at {self.url}: {START_HINT}"
            ) from exc

    # -- functions -------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        path: str | Path | None = None,
        *,
        zip_bytes: bytes | None = None,
        handler: str | None = None,
        memory_mb: int | None = None,
        timeout_s: int | None = None,
        environment: Mapping[str, str] | None = None,
        description: str | None = None,
        reserved_concurrency: int | None = None,
        requirements: str | None = None,
        publish: bool = False,
        network: str | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        if path is not None and zip_bytes is not None:
            raise errors.InvalidParameterError("give either path or zip_bytes, not both")
        if path is not None:
            zip_bytes = package(path)
        body: dict[str, Any] = {"publish": publish}
        if zip_bytes is not None:
            body["zip_base64"] = base64.b64encode(zip_bytes).decode()
        for key, value in (
            ("handler", handler),
            ("memory_mb", memory_mb),
            ("timeout_s", timeout_s),
            ("environment", dict(environment) if environment is not None else None),
            ("description", description),
            ("reserved_concurrency", reserved_concurrency),
            ("network", network),
            ("role", role),
            ("requirements", requirements),
        ):
            if value is not None:
                body[key] = value
        result: dict[str, Any] = self._json("POST", _fn(name), json=body)
        return result

    def update_config(self, name: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._json("PATCH", _fn(name) + "/config", json=changes)
        return result

    def publish(self, name: str, description: str = "") -> dict[str, Any]:
        body = {"description": description}
        result: dict[str, Any] = self._json("POST", _fn(name) + "/versions", json=body)
        return result

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        additional_version: str | None = None,
        additional_weight: float = 0.0,
    ) -> dict[str, Any]:
        body = {
            "version": str(version),
            "additional_version": additional_version,
            "additional_weight": additional_weight,
        }
        path = f"{_fn(name)}/aliases/{quote(alias, safe='')}"
        result: dict[str, Any] = self._json("PUT", path, json=body)
        return result

    def delete_alias(self, name: str, alias: str) -> None:
        self._request("DELETE", f"{_fn(name)}/aliases/{quote(alias, safe='')}")

    def list_functions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/v1/functions")["functions"]
        return result

    def get_function(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        params = {"qualifier": qualifier} if qualifier is not None else None
        result: dict[str, Any] = self._json("GET", _fn(name), params=params)
        return result

    def delete_function(self, name: str) -> None:
        self._request("DELETE", _fn(name))

    # -- invoke ----------------------------------------------------------------------

    def invoke(
        self, name: str, payload: Any = None, *, qualifier: str | None = None,
        raw: bytes | None = None,
    ) -> InvokeResult:
        if raw is None:
            raw = _dumps(payload)
        response = self._request(
            "POST",
            _fn(name) + "/invoke",
            content=raw,
            params={"qualifier": qualifier} if qualifier is not None else None,
            headers=self._invoke_headers,
        )
        headers = response.headers
        tail = headers.get("x-amz-log-result")
        return InvokeResult(
            request_id=headers.get("x-amzn-requestid", ""),
            payload=response.content,
            executed_version=headers.get("x-amz-executed-version", ""),
            function_error=headers.get("x-amz-function-error"),
            log=base64.b64decode(tail).decode(errors="replace") if tail else "",
        )

    # -- async invoke and function URLs (owner: async/URL work) ---------------------

    @staticmethod
    def _qualifier_param(qualifier: str | None) -> dict[str, str] | None:
        return {"qualifier": qualifier} if qualifier is not None else None

    def invoke_async(
        self, name: str, payload: Any = None, *, qualifier: str | None = None,
        raw: bytes | None = None,
    ) -> str:
        if raw is None:
            raw = _dumps(payload)
        response = self._request(
            "POST",
            _fn(name) + "/invoke",
            content=raw,
            params=self._qualifier_param(qualifier),
            headers={"content-type": "application/json", "x-amz-invocation-type": "Event"},
        )
        return response.headers.get("x-amzn-requestid", "")

    def put_async_config(
        self,
        name: str,
        *,
        qualifier: str | None = None,
        max_retries: int | None = None,
        max_event_age_s: int | None = None,
        on_success: str | None = None,
        on_failure: str | None = None,
    ) -> dict[str, Any]:
        body = {
            key: value
            for key, value in (
                ("max_retries", max_retries),
                ("max_event_age_s", max_event_age_s),
                ("on_success", on_success),
                ("on_failure", on_failure),
            )
            if value is not None
        }
        result: dict[str, Any] = self._json(
            "PUT", _fn(name) + "/async-config", json=body, params=self._qualifier_param(qualifier)
        )
        return result

    def get_async_config(self, name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "GET", _fn(name) + "/async-config", params=self._qualifier_param(qualifier)
        )
        return result

    def delete_async_config(self, name: str, *, qualifier: str | None = None) -> None:
        self._request(
            "DELETE", _fn(name) + "/async-config", params=self._qualifier_param(qualifier)
        )

    def set_function_url(
        self, name: str, *, qualifier: str | None = None, auth: str = "none"
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "PUT", _fn(name) + "/url", json={"auth": auth}, params=self._qualifier_param(qualifier)
        )
        return result

    def get_function_url(self, name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "GET", _fn(name) + "/url", params=self._qualifier_param(qualifier)
        )
        return result

    def delete_function_url(self, name: str, *, qualifier: str | None = None) -> None:
        self._request("DELETE", _fn(name) + "/url", params=self._qualifier_param(qualifier))

    def list_function_urls(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/v1/function-urls")["urls"]
        return result

    # -- observe ---------------------------------------------------------------------

    def logs(
        self, name: str, *, request_id: str | None = None, since: float | None = None,
        limit: int = 100,
    ) -> str:
        params: dict[str, Any] = {"limit": limit}
        if request_id is not None:
            params["request_id"] = request_id
        if since is not None:
            params["since"] = since
        return self._request("GET", _fn(name) + "/logs", params=params).text

    def records(
        self, name: str | None = None, *, request_id: str | None = None, limit: int = 100,
    ) -> list[InvocationRecord]:
        params: dict[str, Any] = {"limit": limit}
        if name is not None:
            params["function"] = name
        if request_id is not None:
            params["request_id"] = request_id
        data = self._json("GET", "/v1/records", params=params)
        return [InvocationRecord.from_dict(item) for item in data["records"]]

    def sandboxes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/v1/sandboxes")["sandboxes"]
        return result

    def health(self) -> bool:
        """True when the server answers ``/healthz``; raises ServerUnavailableError."""
        return bool(self._json("GET", "/healthz").get("status") == "ok")

    def close(self) -> None:
        self._http.close()


def _dumps(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise errors.InvalidParameterError(f"payload is not JSON-serializable: {exc}") from exc


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["errorMessage"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def _raise_for(response: httpx.Response) -> NoReturn:
    """Raise the faasbox error an error answer stands for."""
    status = response.status_code
    try:
        data = response.json()
        code, message = str(data["errorType"]), str(data["errorMessage"])
    except (ValueError, KeyError, TypeError):
        code, message = f"HTTP{status}", response.text[:500] or response.reason_phrase
    if status == 404:
        raise errors.not_found(message)
    cls = errors.BY_CODE.get(code)
    if cls is not None:
        raise cls(message)
    raise errors.RemoteError(code, message, status)


def package(path: str | Path) -> bytes:
    """The deployment package at ``path``: a zip file's bytes, or a folder zipped in
    memory (without ``__pycache__`` and ``.pyc``; same files give the same bytes).

    A folder is read by the same walker as a local deploy
    (:mod:`faasbox.registry.packages`), so it is held to the same rules: a symlink is
    stored as a zip symlink entry with its in-package relative target (the server's
    extraction judges it again), never followed; one that leads out of the folder, and
    any special file, is refused with :class:`InvalidPackageError` naming the entry
    before anything is sent."""
    root = Path(path)
    if root.is_file():
        return root.read_bytes()
    if not root.is_dir():
        raise errors.InvalidParameterError(f"{path}: no such folder or zip file")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        try:
            fill_from_folder(_ZipSink(archive), root)
        except OSError as exc:
            raise errors.InvalidPackageError(
                f"cannot read package folder entry {exc.filename!r}: {exc.strerror or exc}"
            ) from exc
    return buffer.getvalue()


class _ZipSink(Stage):
    """The package walker's sink that writes zip entries instead of files on disk.

    Limits are left to the server, which knows its own."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        super().__init__(root="", limits=Limits())
        self.archive = archive

    def _put(self, name: str, mode: int, data: bytes) -> None:
        info = zipfile.ZipInfo(name, _ZIP_EPOCH)
        info.external_attr = mode << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.archive.writestr(info, data)

    def add_dir(self, parts: tuple[str, ...], label: str) -> None:
        self._put("/".join(parts) + "/", stat.S_IFDIR | 0o755, b"")

    def add_file(
        self, parts: tuple[str, ...], src: IO[bytes], executable: bool, label: str,
        max_bytes: int | None = None,
    ) -> None:
        self._put("/".join(parts), stat.S_IFREG | (0o755 if executable else 0o644), src.read())

    def add_link(self, parts: tuple[str, ...], target: str, label: str) -> None:
        self._put("/".join(parts), stat.S_IFLNK | 0o777, os.fsencode(target))
