"""The HTTP app in-process (starlette's TestClient over a real platform): fast checks of
the thin edges that need no second process."""

from __future__ import annotations

import base64
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from tests.conftest import admin_credentials, sign_with
from tests.e2e.conftest import EXAMPLES

from faasbox.config import Limits, Settings
from faasbox.platform import Platform
from faasbox.server.app import create_app, deploy_examples
from faasbox.server.invoke import InvocationSlots
from faasbox.server.limits import depth
from faasbox.server.manifest import Manifest, find

with warnings.catch_warnings():  # starlette's notice about a future httpx; not ours
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

LIMIT = 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    limits = Limits(sync_payload_bytes=LIMIT)
    settings = Settings.from_env({}, isolation="process", limits=limits,
                                 home=tmp_path_factory.mktemp("app") / "home")
    with Platform(settings) as platform, TestClient(
        create_app(platform.client(), limits=limits), raise_server_exceptions=False
    ) as client:
        yield sign_with(client, admin_credentials(platform))


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


GATE_SOURCE = """\
import os, time
def handler(event, context):
    if not event.get("block"):
        return "quick"
    open(os.path.join(event["dir"], context.aws_request_id), "w").close()
    release = os.path.join(event["dir"], "release")
    while not os.path.exists(release):
        time.sleep(0.01)
    return "released"
"""


def _wait_for(predicate, what: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_full_invocation_slots_answer_429_at_once_and_other_routes_answer(
    tmp_path: Path,
) -> None:
    """Invocations have slots of their own: the (N+1)th concurrent call is refused at
    once (not queued behind the others) and listing functions still answers."""
    settings = Settings.from_env({}, isolation="process", home=tmp_path / "home")
    gate = tmp_path / "gate"
    gate.mkdir()
    code = tmp_path / "code"
    code.mkdir()
    (code / "gate.py").write_text(GATE_SOURCE)
    with Platform(settings) as platform:
        client = platform.client()
        client.deploy("gate", code, handler="gate.handler", timeout_s=120)
        app = create_app(client, invocation_slots=2)
        slots: InvocationSlots = app.state.invocation_slots
        assert slots.size == 2
        with TestClient(app, raise_server_exceptions=False) as api:
            sign_with(api, admin_credentials(platform))
            answers: list[tuple[int, str]] = []

            def blocked_call() -> None:
                answer = api.post("/v1/functions/gate/invoke",
                                  json={"block": True, "dir": str(gate)})
                answers.append((answer.status_code, answer.text))

            callers = [threading.Thread(target=blocked_call) for _ in range(2)]
            try:
                for caller in callers:
                    caller.start()
                _wait_for(lambda: len(list(gate.iterdir())) == 2, "two running calls")
                assert slots.in_use == 2
                extra = api.post("/v1/functions/gate/invoke", json={"block": False})
                assert extra.status_code == 429, extra.text
                assert extra.json()["errorType"] == "TooManyRequestsException"
                assert "2 concurrent invocations are in use" in extra.json()["errorMessage"]
                listed = api.get("/v1/functions")
                assert [fn["function"] for fn in listed.json()["functions"]] == ["gate"]
                assert api.get("/v1/functions/gate/logs").status_code == 200
            finally:
                (gate / "release").touch()
                for caller in callers:
                    caller.join(timeout=120)
            assert answers == [(200, '"released"')] * 2
            assert slots.in_use == 0
            again = api.post("/v1/functions/gate/invoke", json={"block": False})
            assert again.status_code == 200 and again.json() == "quick"


def test_invocation_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InvocationSlots(0)


def nested(levels: int) -> object:
    """``levels`` levels of JSON: a list of lists... around an object."""
    value: object = {"leaf": 1}
    for _ in range(levels - 1):
        value = [value]
    return value


def test_api_bodies_nested_past_the_limit_are_refused_and_payloads_are_passed_on(
        api: TestClient) -> None:
    assert depth(nested(5)) == 5 and depth({"a": 1}) == 1 and depth(3) == 0
    limit = Limits().json_depth
    deep = {"Statement": [{"Effect": "Allow", "Action": "queues:*", "Resource": "*",
                           "Sid": nested(limit)}]}
    refused = api.put("/v1/policies/deep", json={"document": deep})
    assert refused.status_code == 400
    assert refused.json()["errorType"] == "InvalidRequestContentException"
    assert f"over the {limit}-level limit" in refused.json()["errorMessage"]
    assert api.get("/v1/policies/deep").status_code == 404  # nothing was made
    assert api.put("/v1/queues/nest-q", json={"delay_s": 0}).status_code == 200
    # a function's payload is its own: passed on however deep (echo takes a v2 event)
    event = {"rawPath": "/deep", "body": "x", "extra": nested(limit + 20)}
    answer = api.post("/v1/functions/echo/invoke", json=event)
    assert answer.status_code == 200 and answer.json()["statusCode"] == 200


def test_every_route_has_an_action_or_is_public(api: TestClient) -> None:
    """Deny by default: a route without a rule answers 403 to everyone, so each one the
    API has must name its action (or be one of the few public ones)."""
    import re

    from faasbox.server.auth import ANYONE, OPTIONAL_PREFIX, PUBLIC, RULES

    seen = {(method.upper(), path)
            for path, operations in api.app.openapi()["paths"].items()  # type: ignore[attr-defined]
            for method in operations
            if method != "head" and path not in PUBLIC and not path.startswith(OPTIONAL_PREFIX)}
    # the schema writes {key:path} as {key}
    listed = {(method, re.sub(r"\{(\w+):\w+\}", r"{\1}", path))
              for method, path in set(RULES) | set(ANYONE)}
    assert seen and seen <= listed, sorted(seen - listed)
    assert listed <= seen, sorted(listed - seen)  # no rule for a route that is gone
