"""The HTTP API (docs/api.md) and the remote SDK client, against a real server."""

from __future__ import annotations

import base64
import io
import os
import socket
import stat
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import EXAMPLES, Server, free_port

from faasbox import errors, stdlib_sigv4
from faasbox.remote import RemoteClient, package

TOKEN_SOURCE = (
    "import uuid\n"
    "TOKEN = uuid.uuid4().hex\n"
    "def handler(event, context):\n"
    "    print('token', TOKEN)\n"
    "    return {'token': TOKEN, 'event': event}\n"
)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture(scope="module", autouse=True)
def deployed(remote: RemoteClient) -> None:
    remote.deploy("hello", EXAMPLES / "hello", handler="app.handler")
    remote.deploy("fail", EXAMPLES / "fail", handler="app.handler")
    remote.publish("hello")
    remote.set_alias("hello", "live", "1")


def test_health_and_openapi(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert "/v1/functions/{name}/invoke" in http.get("/openapi.json").json()["paths"]
    assert http.get("/docs").status_code == 200


def test_deploy_a_zip_over_http_and_invoke_raw(http: httpx.Client) -> None:
    body = {"zip_base64": base64.b64encode(_zip({"tok.py": TOKEN_SOURCE})).decode(),
            "handler": "tok.handler", "memory_mb": 192, "environment": {"A": "1"}}
    info = http.post("/v1/functions/zipped", json=body)
    assert info.status_code == 200, info.text
    assert (info.json()["memory_mb"], info.json()["environment"]) == (192, {"A": "1"})
    answer = http.post("/v1/functions/zipped/invoke", content=b'{"k": [1, "two"]}',
                       headers={"X-Amz-Log-Type": "Tail"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["event"] == {"k": [1, "two"]}
    assert answer.headers["X-Amz-Executed-Version"] == "$LATEST"
    request_id = answer.headers["X-Amzn-RequestId"]
    assert "X-Amz-Function-Error" not in answer.headers
    tail = base64.b64decode(answer.headers["X-Amz-Log-Result"]).decode()
    assert f"START RequestId: {request_id}" in tail and "REPORT RequestId" in tail
    empty = http.post("/v1/functions/zipped/invoke")  # an empty body is the event null
    assert empty.json()["event"] is None and "X-Amz-Log-Result" not in empty.headers


def test_config_only_update_and_patch(http: httpx.Client, remote: RemoteClient) -> None:
    remote.deploy("cfg", EXAMPLES / "hello", handler="app.handler")
    assert http.post("/v1/functions/cfg", json={"timeout_s": 9}).json()["timeout_s"] == 9
    patched = http.patch("/v1/functions/cfg/config", json={"memory_mb": 512})
    assert patched.status_code == 200 and patched.json()["memory_mb"] == 512
    assert remote.update_config("cfg", description="d")["description"] == "d"
    cleared = http.patch("/v1/functions/cfg/config", json={"requirements": ""})
    assert cleared.status_code == 200 and cleared.json()["requirements_source"] is None
    assert remote.invoke("cfg", {"name": "cfg"}).json() == {"message": "Hello, cfg!"}
    assert http.delete("/v1/functions/cfg").status_code == 204
    with pytest.raises(errors.FunctionNotFoundError):
        remote.get_function("cfg")


def test_remote_client_deploys_folders_and_zips(remote: RemoteClient, tmp_path: Path) -> None:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "tok.py").write_text(TOKEN_SOURCE)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "tok.cpython-311.pyc").write_bytes(b"junk")
    assert zipfile.ZipFile(io.BytesIO(package(folder))).namelist() == ["tok.py"]
    assert package(folder) == package(folder)  # same files, same bytes
    first = remote.deploy("tok", folder, handler="tok.handler")
    archive = tmp_path / "fn.zip"
    archive.write_bytes(_zip({"tok.py": TOKEN_SOURCE}))
    again = remote.deploy("tok", archive)
    assert again["handler"] == "tok.handler" and first["function"] == "tok"
    result = remote.invoke("tok", {"x": 1})
    assert result.json()["event"] == {"x": 1} and result.function_error is None
    assert result.executed_version == "$LATEST" and result.request_id
    published = remote.deploy("tok", zip_bytes=_zip({"tok.py": TOKEN_SOURCE}), publish=True)
    assert published["version"].isdigit()
    assert remote.invoke("tok", qualifier=published["version"]).executed_version == \
        published["version"]


def test_remote_client_results_logs_and_records(remote: RemoteClient) -> None:
    ok = remote.invoke("hello:live", {"name": "sdk"})
    assert ok.json() == {"message": "Hello, sdk!"} and ok.executed_version == "1"
    failed = remote.invoke("fail", raw=b'{"amount": 3}')
    assert failed.function_error == "Unhandled"
    assert failed.json()["errorType"] == "PaymentDeclined"
    text = remote.logs("fail", request_id=failed.request_id)
    assert f"START RequestId: {failed.request_id}" in text and "END RequestId" in text
    assert "REPORT RequestId" in text and "charging 3" in text
    (record,) = remote.records(request_id=failed.request_id)
    assert (record.function, record.status.value, record.error_type) == (
        "fail", "error", "PaymentDeclined")
    assert [r.request_id for r in remote.records("hello", limit=1)] == [ok.request_id]
    assert remote.logs("hello", since=time.time() + 3600) == ""
    with RemoteClient(remote.url, log_tail=True, credentials=remote.credentials) as tailing:
        assert "Saying hello to tail" in tailing.invoke("hello", {"name": "tail"}).log


# -- errors: status, shape, and nothing changed -------------------------------------

BIG = 6 * 1024 * 1024 + 1

ERROR_CASES = [
    ("GET", "/v1/functions/nosuch", None, 404, "ResourceNotFoundException"),
    ("POST", "/v1/functions/nosuch/invoke", b"{}", 404, "ResourceNotFoundException"),
    ("POST", "/v1/functions/hello:99/invoke", b"{}", 404, "ResourceNotFoundException"),
    ("POST", "/v1/functions/hello/invoke?qualifier=nope", b"{}", 404,
     "ResourceNotFoundException"),
    ("GET", "/v1/functions/hello?qualifier=42", None, 404, "ResourceNotFoundException"),
    ("PUT", "/v1/functions/hello/aliases/live", {"version": "99"}, 404,
     "ResourceNotFoundException"),
    ("DELETE", "/v1/functions/hello/aliases/nope", None, 404, "ResourceNotFoundException"),
    ("GET", "/v1/nothing-here", None, 404, "ResourceNotFoundException"),
    ("POST", "/v1/functions/bad%20name!/invoke", b"{}", 400, "InvalidParameterValueException"),
    ("POST", "/v1/functions/bad%20name!", {"handler": "app.handler"}, 400,
     "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello", {"handler": "nodots"}, 400,
     "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello", {"memory_mb": 1}, 400, "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello", {"timeout_s": 901}, 400, "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello", {"memory": 256}, 400, "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello", {"memory_mb": "lots"}, 400,
     "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello", {"zip_base64": "***"}, 400,
     "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello", {"zip_base64": base64.b64encode(b"not a zip").decode()},
     400, "InvalidPackageException"),
    ("POST", "/v1/functions/newfn", {"memory_mb": 256}, 404, "ResourceNotFoundException"),
    ("PATCH", "/v1/functions/hello/config", {"environment": {"AWS_REGION": "x"}}, 400,
     "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello/invoke", b"{not json", 400, "InvalidParameterValueException"),
    ("POST", "/v1/functions/hello/invoke", b"x" * BIG, 413, "RequestTooLargeException"),
    ("GET", "/v1/functions/hello/logs?limit=0", None, 400, "InvalidParameterValueException"),
    ("GET", "/v1/records?limit=abc", None, 400, "InvalidParameterValueException"),
]


def _snapshot(remote: RemoteClient) -> tuple:
    functions = remote.list_functions()
    details = [remote.get_function(fn["function"]) for fn in functions]
    records = [r.request_id for r in remote.records(limit=10_000)]
    return functions, details, records


def test_error_answers_have_status_shape_and_change_nothing(
    http: httpx.Client, remote: RemoteClient
) -> None:
    before = _snapshot(remote)
    for method, path, body, status, code in ERROR_CASES:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        answer = http.request(method, path, **(kwargs if body is not None else {}))
        assert answer.status_code == status, (method, path, answer.text[:300])
        data = answer.json()
        assert set(data) == {"errorType", "errorMessage"}, data
        assert data["errorType"] == code and data["errorMessage"], (path, data)
        assert answer.headers["X-Amzn-ErrorType"] == code
    assert _snapshot(remote) == before


PATH = "/v1/functions/hello/invoke"


def test_oversized_payload_refused_by_declared_length(server: Server) -> None:
    # A Content-Length over the limit is answered before the body is read.
    host, port = server.url.removeprefix("http://").split(":")
    signed = stdlib_sigv4.sign("POST", f"http://x{PATH}", {"content-type": "application/json"},
                               b"{}", server.credentials.key_id, server.credentials.secret)
    headers = "".join(f"{name}: {value}\r\n" for name, value in signed.items()).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers
            + b"Content-Length: 7000000\r\n\r\n{}"
        )
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413") and "RequestTooLargeException" in head


def test_remote_client_raises_the_servers_error_classes(remote: RemoteClient) -> None:
    with pytest.raises(errors.FunctionNotFoundError) as missing:
        remote.invoke("nosuch")
    assert (missing.value.kind, missing.value.name) == ("Function", "nosuch")
    with pytest.raises(errors.VersionNotFoundError):
        remote.invoke("hello", qualifier="99")
    with pytest.raises(errors.AliasNotFoundError):
        remote.invoke("hello:nope")
    with pytest.raises(errors.AliasNotFoundError):
        remote.delete_alias("hello", "nope")
    with pytest.raises(errors.NotFoundError):
        remote.get_function("x")
    with pytest.raises(errors.InvalidParameterError):
        remote.deploy("hello", handler="nodots")
    with pytest.raises(errors.InvalidPackageError):
        remote.deploy("hello", zip_bytes=b"not a zip")
    with pytest.raises(errors.InvalidParameterError):
        remote.invoke("hello", raw=b"{nope")
    with pytest.raises(errors.InvalidParameterError):
        remote.invoke("hello", {1, 2})  # not JSON-serializable: refused before sending
    with pytest.raises(errors.PayloadTooLargeError):
        remote.invoke("hello", raw=b'"' + b"x" * BIG + b'"')
    with pytest.raises(errors.InvalidParameterError):
        remote.deploy("hello", "/nonexistent/folder")


def test_throttled_invoke_is_429(remote: RemoteClient, http: httpx.Client) -> None:
    remote.deploy("zero", EXAMPLES / "hello", handler="app.handler", reserved_concurrency=0)
    answer = http.post("/v1/functions/zero/invoke", content=b"{}")
    assert answer.status_code == 429 and answer.json()["errorType"] == "TooManyRequestsException"
    with pytest.raises(errors.TooManyRequestsError):
        remote.invoke("zero")


def test_unreachable_server_raises_server_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with RemoteClient(url) as client, pytest.raises(errors.ServerUnavailableError) as info:
        client.list_functions()
    assert "faasbox up" in str(info.value) and url in str(info.value)


LINKED_SOURCE = (
    "from pathlib import Path\n"
    "import alias\n"
    "def handler(event, context):\n"
    "    return {'via_alias': alias.__name__, 'data': Path('data/a.txt').read_text(),\n"
    "            'linked': Path(alias.__file__).is_symlink()}\n"
)


def _linked_folder(tmp_path: Path) -> Path:
    """A function folder with symlinks that stay inside it, next to a secret outside."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("top secret")
    folder = tmp_path / "fn"
    (folder / "real").mkdir(parents=True)
    (folder / "real" / "a.txt").write_text("inside")
    (folder / "app.py").write_text(LINKED_SOURCE)
    (folder / "alias.py").symlink_to("app.py")
    (folder / "data").symlink_to("real", target_is_directory=True)
    return folder


def test_remote_deploy_keeps_inside_symlinks_as_links(
    remote: RemoteClient, tmp_path: Path
) -> None:
    folder = _linked_folder(tmp_path)
    entries = {i.filename: i for i in zipfile.ZipFile(io.BytesIO(package(folder))).infolist()}
    for name, target in (("alias.py", b"app.py"), ("data", b"real")):
        assert stat.S_ISLNK(entries[name].external_attr >> 16), name
        assert zipfile.ZipFile(io.BytesIO(package(folder))).read(name) == target
    remote.deploy("linked", folder, handler="app.handler")
    answer = remote.invoke("linked").json()
    assert answer == {"via_alias": "alias", "data": "inside", "linked": True}


@pytest.mark.parametrize(
    "entry, target",
    [("leak.txt", "../outside/secret.txt"), ("leakdir", "../outside"),
     ("dangling", "../nowhere"), ("absolute", "/etc/passwd")],
)
def test_remote_deploy_refuses_a_symlink_leaving_the_folder(
    remote: RemoteClient, tmp_path: Path, entry: str, target: str
) -> None:
    folder = _linked_folder(tmp_path)
    remote.deploy("leaky", folder, handler="app.handler")
    before = _snapshot(remote)
    (folder / entry).symlink_to(target)
    with pytest.raises(errors.InvalidPackageError) as refused:
        remote.deploy("leaky", folder, handler="app.handler")
    assert f"unsafe package entry {entry!r}" in str(refused.value)
    assert "points outside the package" in str(refused.value)
    assert "top secret" not in str(refused.value)
    with pytest.raises(errors.InvalidPackageError):
        remote.deploy("leaky-new", folder, handler="app.handler")
    assert _snapshot(remote) == before


def test_remote_deploy_refuses_special_files(remote: RemoteClient, tmp_path: Path) -> None:
    folder = _linked_folder(tmp_path)
    os.mkfifo(folder / "pipe")
    with pytest.raises(errors.InvalidPackageError, match="'pipe': not a regular file"):
        remote.deploy("fifo", folder, handler="app.handler")
    with pytest.raises(errors.FunctionNotFoundError):
        remote.get_function("fifo")


def test_server_judges_symlink_entries_of_an_uploaded_zip(
    http: httpx.Client, remote: RemoteClient
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(e, c):\n    return 1\n")
        link = zipfile.ZipInfo("escape")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "../../outside")
    body = {"zip_base64": base64.b64encode(buffer.getvalue()).decode(), "handler": "app.handler"}
    answer = http.post("/v1/functions/zipescape", json=body)
    assert answer.status_code == 400 and answer.json()["errorType"] == "InvalidPackageException"
    assert "'escape'" in answer.json()["errorMessage"]
    with pytest.raises(errors.FunctionNotFoundError):
        remote.get_function("zipescape")


def test_publish_answers_201_for_a_new_version_and_200_for_an_unchanged_latest(
    http: httpx.Client, remote: RemoteClient
) -> None:
    remote.deploy("pub", EXAMPLES / "hello", handler="app.handler")
    first = http.post("/v1/functions/pub/versions", json={"description": "one"})
    assert first.status_code == 201, first.text
    again = http.post("/v1/functions/pub/versions", json={"description": "two"})
    assert again.status_code == 200, again.text
    assert again.json()["version"] == first.json()["version"]
    assert again.json()["version_description"] == "one"
    remote.update_config("pub", memory_mb=256)
    second = http.post("/v1/functions/pub/versions")
    assert second.status_code == 201 and second.json()["version"] != first.json()["version"]
    assert http.post("/v1/functions/nosuch/versions").status_code == 404
