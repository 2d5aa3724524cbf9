"""Every API call authenticated, authorized and audited.

:class:`Authenticate` (ASGI) checks each request's SigV4 signature before routing and
hashes the body as it streams in (a body that is not the signed one fails the request
before the route commits anything); :func:`authorize` (a dependency of every router)
asks the principal's policies for the route's action on the resource its path names
(:data:`RULES`: a route with no rule is refused: deny by default); every call ends as
one audit line. Public: ``/healthz`` and the API docs. Function URLs check their own
auth type (``none`` or ``platform``) in their route.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faasbox.auth.audit import entry
from faasbox.auth.authority import Authority, Principal
from faasbox.auth.sigv4 import check_payload
from faasbox.errors import ForbiddenError
from faasbox.server.bodies import read_all, replay
from faasbox.server.errors import error_response

PUBLIC = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: Paths whose route decides whether a signature is needed (function URLs).
OPTIONAL_PREFIX = "/fn/"


def _base(name: str) -> str:
    return name.partition(":")[0]


def _function(p: dict[str, Any]) -> str:
    return "function:" + _base(p["name"])


def _queue(p: dict[str, Any]) -> str:
    return "queue:" + p["name"]


def _bucket(p: dict[str, Any]) -> str:
    return "bucket:" + p["bucket"]


def _object(p: dict[str, Any]) -> str:
    return f"object:{p['bucket']}/{p['key']}"


def _named(kind: str, param: str = "name") -> Callable[[dict[str, Any]], str]:
    return lambda p: f"{kind}:{p[param]}"


def _every(kind: str) -> Callable[[dict[str, Any]], str]:
    return lambda p: f"{kind}:*"


_ALL: Callable[[dict[str, Any]], str] = lambda p: "*"  # noqa: E731
Rule = tuple[str, Callable[[dict[str, Any]], str]]

#: (method, route path) -> (action, resource from the path's parameters).
RULES: dict[tuple[str, str], Rule] = {
    # functions
    ("GET", "/v1/functions"): ("functions:ListFunctions", _every("function")),
    ("POST", "/v1/functions/{name}"): ("functions:Deploy", _function),
    ("GET", "/v1/functions/{name}"): ("functions:GetFunction", _function),
    ("PATCH", "/v1/functions/{name}/config"): ("functions:UpdateConfiguration", _function),
    ("DELETE", "/v1/functions/{name}"): ("functions:DeleteFunction", _function),
    ("POST", "/v1/functions/{name}/versions"): ("functions:PublishVersion", _function),
    ("PUT", "/v1/functions/{name}/aliases/{alias}"): ("functions:PutAlias", _function),
    ("DELETE", "/v1/functions/{name}/aliases/{alias}"): ("functions:DeleteAlias", _function),
    ("POST", "/v1/functions/{name}/invoke"): ("functions:Invoke", _function),
    ("PUT", "/v1/functions/{name}/async-config"): ("functions:PutAsyncConfig", _function),
    ("GET", "/v1/functions/{name}/async-config"): ("functions:GetAsyncConfig", _function),
    ("DELETE", "/v1/functions/{name}/async-config"): ("functions:DeleteAsyncConfig",
                                                       _function),
    ("GET", "/v1/functions/{name}/logs"): ("functions:GetLogs", _function),
    ("GET", "/v1/records"): ("functions:ListRecords", _every("function")),
    ("PUT", "/v1/functions/{name}/url"): ("functions:PutUrl", _function),
    ("GET", "/v1/functions/{name}/url"): ("functions:GetUrl", _function),
    ("DELETE", "/v1/functions/{name}/url"): ("functions:DeleteUrl", _function),
    ("GET", "/v1/function-urls"): ("functions:ListUrls", _every("function")),
    ("GET", "/v1/sandboxes"): ("node:ListSandboxes", _ALL),
    # objects
    ("GET", "/v1/buckets"): ("objects:ListBuckets", _every("bucket")),
    ("PUT", "/v1/buckets/{bucket}"): ("objects:CreateBucket", _bucket),
    ("DELETE", "/v1/buckets/{bucket}"): ("objects:DeleteBucket", _bucket),
    ("GET", "/v1/buckets/{bucket}/objects"): ("objects:ListObjects", _bucket),
    ("POST", "/v1/buckets/{bucket}/copy"): ("objects:CopyObject", _bucket),
    ("PUT", "/v1/buckets/{bucket}/objects/{key:path}"): ("objects:PutObject", _object),
    ("GET", "/v1/buckets/{bucket}/objects/{key:path}"): ("objects:GetObject", _object),
    ("DELETE", "/v1/buckets/{bucket}/objects/{key:path}"): ("objects:DeleteObject", _object),
    ("GET", "/v1/buckets/{bucket}/notifications"): ("objects:GetNotifications", _bucket),
    ("POST", "/v1/buckets/{bucket}/notifications"): ("objects:PutNotification", _bucket),
    ("DELETE", "/v1/buckets/{bucket}/notifications/{notification_id}"): (
        "objects:DeleteNotification", _bucket),
    # queues
    ("GET", "/v1/queues"): ("queues:ListQueues", _every("queue")),
    ("PUT", "/v1/queues/{name}"): ("queues:CreateQueue", _queue),
    ("GET", "/v1/queues/{name}"): ("queues:GetQueueAttributes", _queue),
    ("PATCH", "/v1/queues/{name}"): ("queues:SetQueueAttributes", _queue),
    ("DELETE", "/v1/queues/{name}"): ("queues:DeleteQueue", _queue),
    ("POST", "/v1/queues/{name}/purge"): ("queues:PurgeQueue", _queue),
    ("POST", "/v1/queues/{name}/messages"): ("queues:SendMessage", _queue),
    ("POST", "/v1/queues/{name}/messages/batch"): ("queues:SendMessage", _queue),
    ("POST", "/v1/queues/{name}/receive"): ("queues:ReceiveMessage", _queue),
    ("DELETE", "/v1/queues/{name}/messages/{receipt_handle:path}"): ("queues:DeleteMessage",
                                                                    _queue),
    ("POST", "/v1/queues/{name}/messages/delete-batch"): ("queues:DeleteMessage", _queue),
    ("PUT", "/v1/queues/{name}/messages/{receipt_handle:path}/visibility"): (
        "queues:ChangeMessageVisibility", _queue),
    ("POST", "/v1/queues/{name}/redrive"): ("queues:Redrive", _queue),
    # triggers, schedules, alarms, metrics
    ("POST", "/v1/triggers"): ("triggers:CreateTrigger", _every("trigger")),
    ("GET", "/v1/triggers"): ("triggers:ListTriggers", _every("trigger")),
    ("GET", "/v1/triggers/{id}"): ("triggers:GetTrigger", _named("trigger", "id")),
    ("PATCH", "/v1/triggers/{id}"): ("triggers:UpdateTrigger", _named("trigger", "id")),
    ("POST", "/v1/triggers/{id}/enable"): ("triggers:EnableTrigger", _named("trigger", "id")),
    ("POST", "/v1/triggers/{id}/disable"): ("triggers:DisableTrigger",
                                            _named("trigger", "id")),
    ("DELETE", "/v1/triggers/{id}"): ("triggers:DeleteTrigger", _named("trigger", "id")),
    ("POST", "/v1/schedules"): ("schedules:CreateSchedule", _every("schedule")),
    ("GET", "/v1/schedules"): ("schedules:ListSchedules", _every("schedule")),
    ("GET", "/v1/schedules/{name}"): ("schedules:GetSchedule", _named("schedule")),
    ("PATCH", "/v1/schedules/{name}"): ("schedules:UpdateSchedule", _named("schedule")),
    ("DELETE", "/v1/schedules/{name}"): ("schedules:DeleteSchedule", _named("schedule")),
    ("POST", "/v1/schedules/{name}/enable"): ("schedules:EnableSchedule", _named("schedule")),
    ("POST", "/v1/schedules/{name}/disable"): ("schedules:DisableSchedule",
                                               _named("schedule")),
    ("GET", "/v1/alarms"): ("alarms:ListAlarms", _every("alarm")),
    ("POST", "/v1/alarms/evaluate"): ("alarms:EvaluateAlarms", _every("alarm")),
    ("PUT", "/v1/alarms/{name}"): ("alarms:PutAlarm", _named("alarm")),
    ("GET", "/v1/alarms/{name}"): ("alarms:GetAlarm", _named("alarm")),
    ("DELETE", "/v1/alarms/{name}"): ("alarms:DeleteAlarm", _named("alarm")),
    ("GET", "/v1/alarms/{name}/history"): ("alarms:GetAlarmHistory", _named("alarm")),
    ("GET", "/metrics"): ("metrics:GetMetrics", _ALL),
    ("GET", "/v1/metrics"): ("metrics:ListMetrics", _ALL),
    ("GET", "/v1/metrics/datapoints"): ("metrics:GetMetrics", _ALL),
    ("GET", "/v1/metrics/functions/{name}"): ("metrics:GetMetrics", _function),
    ("GET", "/v1/metrics/queues/{name}"): ("metrics:GetMetrics", _queue),
    ("POST", "/v1/metrics/collect"): ("metrics:Collect", _ALL),
    # keys, policies, roles, credentials, audit
    ("GET", "/v1/keys"): ("keys:ListKeys", _every("key")),
    ("POST", "/v1/keys"): ("keys:CreateKey", _every("key")),
    ("GET", "/v1/keys/{key_id}"): ("keys:GetKey", _named("key", "key_id")),
    ("PATCH", "/v1/keys/{key_id}"): ("keys:UpdateKey", _named("key", "key_id")),
    ("DELETE", "/v1/keys/{key_id}"): ("keys:DeleteKey", _named("key", "key_id")),
    ("PUT", "/v1/keys/{key_id}/policies/{policy}"): ("keys:AttachPolicy",
                                                     _named("key", "key_id")),
    ("DELETE", "/v1/keys/{key_id}/policies/{policy}"): ("keys:DetachPolicy",
                                                        _named("key", "key_id")),
    ("GET", "/v1/policies"): ("policies:ListPolicies", _every("policy")),
    ("PUT", "/v1/policies/{name}"): ("policies:PutPolicy", _named("policy")),
    ("GET", "/v1/policies/{name}"): ("policies:GetPolicy", _named("policy")),
    ("DELETE", "/v1/policies/{name}"): ("policies:DeletePolicy", _named("policy")),
    ("GET", "/v1/roles"): ("roles:ListRoles", _every("role")),
    ("PUT", "/v1/roles/{name}"): ("roles:CreateRole", _named("role")),
    ("GET", "/v1/roles/{name}"): ("roles:GetRole", _named("role")),
    ("DELETE", "/v1/roles/{name}"): ("roles:DeleteRole", _named("role")),
    ("PUT", "/v1/roles/{name}/policies/{policy}"): ("roles:AttachPolicy", _named("role")),
    ("DELETE", "/v1/roles/{name}/policies/{policy}"): ("roles:DetachPolicy", _named("role")),
    ("POST", "/v1/roles/{name}/assume"): ("sts:AssumeRole", _named("role")),
    ("GET", "/v1/audit"): ("audit:ReadAudit", _ALL),
}
#: Allowed to any valid signature, as AWS's GetCallerIdentity.
ANYONE = frozenset({("GET", "/v1/whoami")})


def authority_of(request: Request) -> Authority:
    authority: Authority = request.app.state.authority
    return authority


def principal_of(request: Request) -> Principal | None:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return principal


def may(request: Request, action: str, resource: str) -> None:
    """A route's check of a resource its body names (the one its path names is checked
    by :func:`authorize`): copying reads the source, a trigger invokes its function...
    ForbiddenError unless the signer's policies allow it."""
    principal = principal_of(request)
    if principal is None:
        raise ForbiddenError("the request is not signed")
    try:
        authority_of(request).authorize(principal, action, resource)
    except ForbiddenError as exc:
        request.scope.setdefault("state", {})["denial"] = exc.message
        raise


def may_deliver(request: Request, destination: str | None) -> None:
    """What sending events to ``destination`` (``queue:NAME``, ``function:NAME[:Q]``)
    needs: queues:SendMessage or functions:Invoke on it. A malformed one is left to the
    route, which refuses it."""
    kind, _, rest = (destination or "").partition(":")
    name = rest.partition(":")[0]
    if kind == "queue" and name:
        may(request, "queues:SendMessage", f"queue:{name}")
    elif kind == "function" and name:
        may(request, "functions:Invoke", f"function:{name}")


async def authorize(request: Request) -> None:
    """The router dependency: the route's action on its resource, or 403."""
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    path = getattr(route, "path", request.url.path)
    state = request.scope.setdefault("state", {})
    if (method, path) in ANYONE or path.startswith(OPTIONAL_PREFIX):
        return  # function URLs: their route checks their auth type
    rule = RULES.get((method, path))
    if rule is None:  # deny by default: a route nobody gave an action
        raise ForbiddenError(f"{method} {path} has no action to authorize")
    action, resource_of = rule
    resource = resource_of(request.path_params)
    state["action"], state["resource"] = action, resource
    principal = principal_of(request)
    if principal is None:
        raise ForbiddenError("the request is not signed")
    authority = authority_of(request)
    try:
        if authority.knows(principal):
            authority.authorize(principal, action, resource)
        else:  # the first call of a principal reads its policies from the database
            await anyio.to_thread.run_sync(authority.authorize, principal, action, resource)
    except ForbiddenError as exc:
        state["denial"] = exc.message
        raise


class Authenticate:
    """SigV4 on every request but :data:`PUBLIC`; the body checked against its signed
    hash as it streams; one audit line per call."""

    def __init__(self, app: ASGIApp, authority: Authority, buffered_bytes: int) -> None:
        self.app = app
        self.authority = authority
        #: Bodies up to this size (a sync invoke's payload) are read and checked against
        #: their signed hash before routing; larger ones as they stream, so that a route
        #: refusing an oversized body by its declared length still does so at once.
        self.buffered_bytes = buffered_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC:
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        method, path = scope["method"], scope["path"]
        state = scope.setdefault("state", {})
        principal: Principal | None = None
        signature = headers.get("authorization", "").startswith("AWS4-HMAC-SHA256")
        # a function URL with auth none may take its own Authorization scheme
        if not path.startswith(OPTIONAL_PREFIX) or signature:
            raw_path = (scope.get("raw_path") or path.encode()).decode("latin-1")
            query = scope.get("query_string", b"").decode("latin-1")
            url = f"http://{headers.get('host', 'localhost')}{raw_path}"
            if query:
                url += "?" + query
            size = headers.get("content-length", "")
            body: bytes | None = None
            if (size.isdigit() and int(size) <= self.buffered_bytes) or (
                    not size and "transfer-encoding" not in headers):
                # read now: a body that is not the signed one is refused before any route
                # (or its body parser) sees it; and one sent without its hash is hashed
                body = await read_all(receive)
                receive = replay(body, receive)
            try:
                principal = self.authority.authenticate(method, url, headers, body)
            except ForbiddenError as exc:
                self._audit(state, None, "denied", 403, method, path, scope, exc.message)
                await error_response(exc.code, exc.message, 403)(scope, receive, send)
                return
            if body is None:  # a large or chunked upload: checked as it streams, before
                receive = _hashing(receive, headers["x-amz-content-sha256"])  # it commits
        state["principal"] = principal
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            code = status[0]
            outcome = "allowed" if code < 400 else "denied" if code in (401, 403) else "failed"
            self._audit(state, principal, outcome, code, method, path, scope,
                        state.get("denial"))

    def _audit(self, state: dict[str, Any], principal: Principal | None, outcome: str,
               status: int, method: str, path: str, scope: Scope,
               message: str | None) -> None:
        client = scope.get("client")
        self.authority.audit.append(entry(
            principal=principal.name if principal else None,
            key_id=principal.key_id if principal else None,
            role=principal.role if principal else None,
            action=state.get("action"), resource=state.get("resource"), outcome=outcome,
            status=status, method=method, path=path,
            source=client[0] if client else None, message=message))


def _hashing(receive: Receive, declared: str) -> Receive:
    digest = hashlib.sha256()

    async def checked() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            digest.update(message.get("body", b""))
            if not message.get("more_body", False):
                check_payload(declared, digest.hexdigest())
        return message

    return checked
