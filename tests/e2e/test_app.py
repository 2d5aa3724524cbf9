"""The HTTP app in-process (starlette's TestClient over a real platform): fast checks of
the thin edges that need no second process."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from tests.e2e.conftest import EXAMPLES

from faasbox.config import Limits, Settings
from faasbox.platform import Platform
from faasbox.server.app import create_app, deploy_examples
from faasbox.server.manifest import Manifest, find

with warnings.catch_warnings():  # starlette's notice about a future httpx; not ours
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

LIMIT = 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    limits = Limits(sync_payload_bytes=LIMIT)
    settings = Settings.from_env({}, home=tmp_path_factory.mktemp("app") / "home",
                                 limits=limits)
    with Platform(settings) as platform, TestClient(
        create_app(platform.client(), limits=limits), raise_server_exceptions=False
    ) as client:
        yield client


def test_examples_have_manifests_and_deploy(api: TestClient) -> None:
    found = {m.name: m for m in find(EXAMPLES)}
    assert {"hello", "echo", "slow", "fail"} <= set(found)
    assert found["hello"].settings["handler"] == "app.handler"
    client = api.app.state.client  # type: ignore[attr-defined]
    assert set(deploy_examples(client, EXAMPLES)) >= {"hello", "echo", "slow", "fail"}
    names = [fn["function"] for fn in api.get("/v1/functions").json()["functions"]]
    assert {"hello", "echo", "slow", "fail"} <= set(names)


def test_example_functions_answer(api: TestClient) -> None:
    deploy_examples(api.app.state.client, EXAMPLES)  # type: ignore[attr-defined]
    hello = api.post("/v1/functions/hello/invoke", json={"name": "world"})
    assert hello.json() == {"message": "Hello, world!"}
    event = {"rawPath": "/items", "requestContext": {"http": {"method": "POST"}},
             "body": base64.b64encode(b"hi").decode(), "isBase64Encoded": True}
    echo = api.post("/v1/functions/echo/invoke", json=event).json()
    assert echo["statusCode"] == 200 and '"method": "POST"' in echo["body"]
    assert '"body": "hi"' in echo["body"]
    slow = api.post("/v1/functions/slow/invoke", json={"seconds": 0.01}).json()
    assert slow["slept_s"] == 0.01
    fail = api.post("/v1/functions/fail/invoke", json={})
    assert fail.status_code == 200 and fail.headers["X-Amz-Function-Error"] == "Unhandled"


def test_payload_limit_declared_and_streamed(api: TestClient) -> None:
    deploy_examples(api.app.state.client, EXAMPLES)  # type: ignore[attr-defined]
    big = b'"' + b"x" * LIMIT + b'"'
    declared = api.post("/v1/functions/hello/invoke", content=big)
    assert declared.status_code == 413
    assert declared.json()["errorType"] == "RequestTooLargeException"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(4):
            yield b"x" * (LIMIT // 2)

    streamed = api.post("/v1/functions/hello/invoke", content=chunks())
    assert streamed.status_code == 413
    assert api.post("/v1/functions/hello/invoke", content=b'"' + b"x" * 100 + b'"').is_success


def test_validation_errors_become_400_invalid_parameter(api: TestClient) -> None:
    for answer in (
        api.post("/v1/functions/x", content=b"[1, 2]",
                 headers={"content-type": "application/json"}),
        api.post("/v1/functions/x", content=b"{bad", headers={"content-type": "application/json"}),
        api.put("/v1/functions/hello/aliases/a", json={"version": "1", "additional_weight": 2}),
        api.get("/v1/records", params={"limit": 0}),
    ):
        assert answer.status_code == 400, answer.text
        assert answer.json()["errorType"] == "InvalidParameterValueException"
        assert answer.headers["X-Amzn-ErrorType"] == "InvalidParameterValueException"


def test_unknown_routes_and_methods_keep_the_error_shape(api: TestClient) -> None:
    missing = api.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["errorType"] == "ResourceNotFoundException"
    wrong = api.put("/v1/functions")
    assert wrong.status_code == 405 and set(wrong.json()) == {"errorType", "errorMessage"}


def test_manifest_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "faasbox.json").write_text("{oops")
    with pytest.raises(ValueError, match="not a valid JSON manifest"):
        Manifest.load(tmp_path)
    assert Manifest.load(tmp_path / "missing") is None
