"""Function URLs: the app in-process over a real platform (real sandboxes, real SQLite)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import admin_credentials, sign_with, write_function

from faasbox.errors import (
    AliasNotFoundError,
    FunctionNotFoundError,
    FunctionUrlNotFoundError,
    InvalidParameterError,
)
from faasbox.server.app import create_app

WEB = """
    import base64
    def handler(event, context):
        path = event["rawPath"]
        if path == "/text":
            return "hi"
        if path == "/full":
            return {"statusCode": 201, "headers": {"x-one": "1", "content-type": "text/plain"},
                    "cookies": ["a=1", "b=2; Path=/"], "body": "created"}
        if path == "/binary":
            return {"statusCode": 200, "headers": {"content-type": "image/png"},
                    "body": base64.b64encode(b"\\x89PNG\\x00\\xff").decode(),
                    "isBase64Encoded": True}
        if path == "/bad-status":
            return {"statusCode": "teapot"}
        if path == "/boom":
            raise ValueError("no")
        return event  # a plain value: answered 200 application/json as it is
"""


@pytest.fixture
def setup(make_platform, tmp_path: Path) -> Iterator[tuple]:
    platform = make_platform()
    client = platform.client()
    client.deploy("web", write_function(tmp_path / "web", WEB), handler="app.handler")
    client.set_function_url("web")
    with TestClient(create_app(client)) as http:
        yield platform, client, sign_with(http, admin_credentials(platform))


def test_get_with_query_headers_and_cookies_becomes_a_v2_event(setup) -> None:
    _, _, http = setup
    answer = http.get(
        "/fn/web/items/a%20b?x=1&x=2&empty=&y=z",
        headers=[("X-Multi", "one"), ("X-Multi", "two"), ("Cookie", "s=1; t=2"),
                 ("User-Agent", "tester/1")],
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-amzn-requestid"]
    event = answer.json()
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/items/a%20b"
    assert event["rawQueryString"] == "x=1&x=2&empty=&y=z"
    assert event["queryStringParameters"] == {"x": "1,2", "empty": "", "y": "z"}
    assert event["headers"]["x-multi"] == "one,two"
    assert event["headers"]["user-agent"] == "tester/1"
    assert "cookie" not in event["headers"] and event["cookies"] == ["s=1", "t=2"]
    assert "body" not in event and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {"method": "GET", "path": "/items/a%20b", "protocol": "HTTP/1.1",
                               "sourceIp": "testclient", "userAgent": "tester/1"}
    assert context["accountId"] == "anonymous" and context["apiId"] == "web"
    assert context["stage"] == "$default" and context["domainName"] == "testserver"
    assert isinstance(context["timeEpoch"], int) and context["time"].endswith("+0000")
    assert http.get("/fn/web").json()["rawPath"] == "/"


def test_post_bodies_text_json_binary_and_non_utf8(setup) -> None:
    _, _, http = setup
    posted = http.post("/fn/web/json", json={"a": 1}).json()
    assert posted["requestContext"]["http"]["method"] == "POST"
    assert posted["body"] == '{"a":1}' and posted["isBase64Encoded"] is False
    raw = b"\x00\x01\xfe\xff"
    binary = http.put("/fn/web/b", content=raw,
                      headers={"content-type": "application/octet-stream"}).json()
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == raw
    latin = http.post("/fn/web/t", content="é".encode("latin-1"),
                      headers={"content-type": "text/plain"}).json()
    assert latin["isBase64Encoded"] is True  # not UTF-8: base64, never mangled
    assert base64.b64decode(latin["body"]) == "é".encode("latin-1")
    text = http.patch("/fn/web/t", content="héllo".encode(),
                      headers={"content-type": "text/plain; charset=utf-8"}).json()
    assert text["body"] == "héllo" and text["isBase64Encoded"] is False


def test_structured_plain_and_binary_responses(setup) -> None:
    _, _, http = setup
    assert http.get("/fn/web/text").content == b'"hi"'
    full = http.get("/fn/web/full")
    assert full.status_code == 201 and full.text == "created"
    assert full.headers["x-one"] == "1" and full.headers["content-type"] == "text/plain"
    assert full.headers.get_list("set-cookie") == ["a=1", "b=2; Path=/"]
    binary = http.get("/fn/web/binary")
    assert binary.content == b"\x89PNG\x00\xff"
    assert binary.headers["content-type"] == "image/png"


def test_function_errors_and_malformed_answers_are_502(setup) -> None:
    _, client, http = setup
    boom = http.get("/fn/web/boom")
    assert boom.status_code == 502 and boom.json() == {"message": "Internal Server Error"}
    [record] = client.records(request_id=boom.headers["x-amzn-requestid"])
    assert record.error_type == "ValueError"
    bad = http.get("/fn/web/bad-status")
    assert bad.status_code == 502 and "statusCode 'teapot'" in bad.json()["message"]


def test_unknown_function_or_no_url_is_404_and_throttle_is_429(setup, tmp_path) -> None:
    _, client, http = setup
    missing = http.get("/fn/nope")
    assert missing.status_code == 404
    assert missing.json()["errorMessage"] == "FunctionUrl not found: nope"
    client.deploy("hidden", write_function(tmp_path / "hidden", WEB), handler="app.handler")
    assert http.post("/fn/hidden/x").status_code == 404
    client.update_config("web", reserved_concurrency=0)
    assert http.get("/fn/web").status_code == 429
    client.delete_function_url("web")
    assert http.get("/fn/web").status_code == 404


def test_alias_urls_route_to_the_alias_only(setup, tmp_path) -> None:
    _, client, http = setup
    client.publish("web")
    client.set_alias("web", "live", "1")
    assert http.get("/fn/web:live/x").status_code == 404  # the alias has no URL yet
    config = client.set_function_url("web", qualifier="live")
    assert config["url"].endswith("/fn/web:live") and config["qualifier"] == "live"
    client.deploy("web", write_function(tmp_path / "v2", "def handler(e, c):\n    return 2\n"))
    assert http.get("/fn/web:live/x").json()["rawPath"] == "/x"  # version 1 serves it
    assert http.get("/fn/web/x").json() == 2  # $LATEST serves the unqualified URL


def test_platform_auth_needs_a_signature_allowed_to_invoke_the_url(setup) -> None:
    platform, client, http = setup
    client.set_function_url("web", auth="platform")
    admin = http.auth
    http.auth = None
    unauthenticated = http.get("/fn/web")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "AWS4-HMAC-SHA256"
    bearer = http.get("/fn/web", headers={"Authorization": "Bearer not-it"})
    assert bearer.status_code == 401  # another scheme is no signature
    forged = http.get("/fn/web", headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=FBKX/20261127/local/faasbox/aws4_request"})
    assert forged.status_code == 403 and "not a AWS4-HMAC-SHA256" in forged.text
    # signed by a key whose policies allow other things only: 403, saying which action
    platform.auth.policies.put("queues-only", {"Statement": [
        {"Effect": "Allow", "Action": "queues:*", "Resource": "*"}]})
    sign_with(http, admin_credentials(platform, "queues-only"))
    denied = http.get("/fn/web")
    assert denied.status_code == 403
    assert "not allowed to functions:InvokeFunctionUrl on function:web" in denied.text
    http.auth = admin
    right = http.get("/fn/web")
    assert right.status_code == 200
    assert right.json()["requestContext"]["accountId"] == "000000000000"
    client.set_function_url("web", auth="none")
    http.auth = None
    assert http.get("/fn/web").status_code == 200  # auth none: anyone
    # ... and the function may do its own auth with its own Authorization scheme
    own = http.get("/fn/web", headers={"Authorization": "Bearer app-token"})
    assert own.status_code == 200
    assert own.json()["headers"]["authorization"] == "Bearer app-token"
    http.auth = admin


def test_url_config_validation_and_listing(setup) -> None:
    platform, client, _ = setup
    with pytest.raises(InvalidParameterError, match="auth='open' must be one of none, platform"):
        client.set_function_url("web", auth="open")
    with pytest.raises(FunctionNotFoundError):
        client.set_function_url("nope")
    with pytest.raises(AliasNotFoundError):
        client.set_function_url("web", qualifier="live")
    with pytest.raises(FunctionUrlNotFoundError):
        client.get_function_url("web:live")
    with pytest.raises(FunctionUrlNotFoundError):
        client.delete_function_url("web:live")
    assert client.get_function_url("web")["auth"] == "none"  # unchanged by the failures
    endpoint = platform.settings.endpoint
    assert client.list_function_urls() == [
        {"function": "web", "qualifier": None, "auth": "none", "url": f"{endpoint}/fn/web"}
    ]
