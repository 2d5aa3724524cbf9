"""Function URLs: ``ANY /fn/{name}[:{qualifier}][/{path}]``, and their config routes.

A request to a function's URL becomes an API Gateway HTTP API (payload format 2.0)
event; the handler's answer becomes the HTTP response: a dict with ``statusCode`` gives
the status, ``headers``, ``cookies`` and ``body`` (base64 when ``isBase64Encoded``);
any other JSON value is answered 200 ``application/json`` as it is. A function error or
a malformed answer is 502, a throttle 429, a function without a URL 404. Invocations
take the same invocation slots as ``/v1/functions/{name}/invoke``.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from faasbox.errors import ForbiddenError, ServiceUnavailableError, UnauthorizedError
from faasbox.model import ACCOUNT_ID, InvokeResult
from faasbox.registry.functions import split_qualified
from faasbox.sdk import Client
from faasbox.server.auth import authority_of, principal_of
from faasbox.server.deps import ClientDep
from faasbox.server.errors import error_response
from faasbox.server.invoke import InvocationSlots, read_body

if TYPE_CHECKING:
    from faasbox.registry.urls import FunctionUrls

router = APIRouter(tags=["function urls"])

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
#: Content types whose bodies reach the handler as text; others are base64.
_TEXT_TYPES = frozenset({
    "application/javascript", "application/x-www-form-urlencoded", "application/graphql",
    "application/yaml", "application/x-yaml",
})


class UrlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: One of ``AUTH_MODES``: "none" or "platform".
    auth: str = "none"


# -- config routes ----------------------------------------------------------------------


@router.put("/v1/functions/{name}/url", tags=["function urls"])
def set_url(
    name: str, client: ClientDep, body: UrlBody | None = None, qualifier: str | None = None
) -> dict[str, Any]:
    """Give the function (or ``name:qualifier``) a URL, or change its auth."""
    return client.set_function_url(name, qualifier=qualifier, auth=(body or UrlBody()).auth)


@router.get("/v1/functions/{name}/url")
def get_url(name: str, client: ClientDep, qualifier: str | None = None) -> dict[str, Any]:
    """The function's URL config (404 when it has none)."""
    return client.get_function_url(name, qualifier=qualifier)


@router.delete("/v1/functions/{name}/url", status_code=204)
def delete_url(name: str, client: ClientDep, qualifier: str | None = None) -> Response:
    """Remove the function's URL."""
    client.delete_function_url(name, qualifier=qualifier)
    return Response(status_code=204)


@router.get("/v1/function-urls")
def list_urls(client: ClientDep) -> dict[str, list[dict[str, Any]]]:
    """Every URL config, sorted by function and qualifier."""
    return {"urls": client.list_function_urls()}


# -- the URLs themselves ------------------------------------------------------------------


@router.api_route("/fn/{target}", methods=METHODS)
@router.api_route("/fn/{target}/{path:path}", methods=METHODS)
async def call(target: str, request: Request, path: str = "") -> Response:
    """Run the function with the request as an HTTP API v2 event; answer its response."""
    client: Client = request.app.state.client
    urls = _function_urls(client)
    name, qualifier = split_qualified(target)
    config = await anyio.to_thread.run_sync(urls.get, name, qualifier)
    if config["auth"] == "platform":  # before the body is read: a stranger's upload is refused
        principal = principal_of(request)
        if principal is None:
            response = error_response(
                UnauthorizedError.code, "this function URL needs a request signed with "
                "AWS Signature Version 4 (service faasbox, region local), e.g. curl "
                "--aws-sigv4 aws:amz:local:faasbox --user KEY_ID:SECRET", 401)
            response.headers["WWW-Authenticate"] = "AWS4-HMAC-SHA256"
            return response
        try:
            authority_of(request).authorize(principal, "functions:InvokeFunctionUrl",
                                            "function:" + name)
        except ForbiddenError as exc:
            request.scope.setdefault("state", {})["denial"] = exc.message
            raise
    state = request.scope.setdefault("state", {})
    state["action"], state["resource"] = "functions:InvokeFunctionUrl", "function:" + name
    body = await read_body(request, request.app.state.limits.sync_payload_bytes)
    event = orjson.dumps(http_event(request, body, name, config["auth"]))
    slots: InvocationSlots = request.app.state.invocation_slots
    result = await slots.run(partial(client.invoke, name, raw=event, qualifier=qualifier))
    return http_response(result)


def _function_urls(client: Client) -> FunctionUrls:
    """The URL configs behind ``client``: only a server running the platform has them."""
    from faasbox.platform import LocalClient

    if not isinstance(client, LocalClient):
        raise ServiceUnavailableError("function URLs are served by the platform's own server")
    return client.platform.function_urls


def http_event(request: Request, body: bytes, name: str, auth: str) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event of ``request``."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    after = raw.decode("latin-1").split("/", 3)  # "", "fn", "<target>", "<rest>"
    raw_path = "/" + (after[3] if len(after) > 3 else "")
    query = request.scope.get("query_string", b"").decode("latin-1")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in request.headers.raw:
        header, text = key.decode("latin-1").lower(), value.decode("latin-1")
        if header == "cookie":
            cookies.extend(c.strip() for c in text.split(";") if c.strip())
        else:
            headers[header] = f"{headers[header]},{text}" if header in headers else text
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    now = time.time()
    host = headers.get("host", "")
    client_host = request.client.host if request.client else ""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID if auth == "platform" else "anonymous",
            "apiId": name,
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                "sourceIp": client_host,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        decoded = _as_text(body, headers.get("content-type", ""))
        if decoded is None:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = decoded
    return event


def _as_text(body: bytes, content_type: str) -> str | None:
    """The body as text when its type is textual and it is UTF-8; else None (base64)."""
    kind = content_type.split(";")[0].strip().lower()
    textual = (not kind or kind.startswith("text/") or kind in _TEXT_TYPES
               or kind.endswith(("/json", "+json", "/xml", "+xml")))
    if not textual:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def http_response(result: InvokeResult) -> Response:
    """The HTTP answer for a handler's result (payload format 2.0)."""
    request_id = {"X-Amzn-RequestId": result.request_id}
    if result.function_error:
        return JSONResponse({"message": "Internal Server Error"}, 502, headers=request_id)
    try:
        value = orjson.loads(result.payload)
    except orjson.JSONDecodeError:
        return _bad_gateway("the function's response is not JSON", request_id)
    if not isinstance(value, dict) or "statusCode" not in value:
        return Response(result.payload, 200, media_type="application/json", headers=request_id)
    status = value["statusCode"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return _bad_gateway(f"statusCode {status!r} is not an HTTP status", request_id)
    headers = value.get("headers") or {}
    cookies = value.get("cookies") or []
    if not isinstance(headers, dict) or not all(
        isinstance(v, str | int | float | bool) for v in headers.values()
    ):
        return _bad_gateway("headers must be an object of strings", request_id)
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        return _bad_gateway("cookies must be a list of strings", request_id)
    body = value.get("body")
    if body is None:
        content = b""
    elif not isinstance(body, str):
        content = orjson.dumps(body)  # lenient: an object body is sent as its JSON
    elif value.get("isBase64Encoded") is True:
        try:
            content = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return _bad_gateway("body is not valid base64", request_id)
    else:
        content = body.encode()
    response = Response(content, status)
    for key, item in headers.items():
        text = str(item).lower() if isinstance(item, bool) else str(item)
        response.headers[str(key)] = text
    if "content-type" not in response.headers:
        response.headers["content-type"] = "application/json"
    for cookie in cookies:
        response.headers.append("set-cookie", cookie)
    response.headers.update(request_id)
    return response


def _bad_gateway(problem: str, headers: dict[str, str]) -> JSONResponse:
    message = f"Internal Server Error: the function's response is malformed ({problem})"
    return JSONResponse({"message": message}, 502, headers=headers)
