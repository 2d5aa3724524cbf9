"""AWS Signature Version 4 with only the standard library.

Function sandboxes have no site-packages, so code in them that calls faasbox cannot use
botocore (:mod:`faasbox.auth.sigv4`) to sign. This module signs the same way, and must
keep agreeing with botocore's ``SigV4Auth`` (not the S3 variant) byte for byte: the
server recomputes every signature with botocore. Each step below mirrors botocore's
``botocore.auth.SigV4Auth``; ``tests/unit/test_stdlib_sigv4.py`` checks the two agree.

Note what botocore does, and so this does too: the path is percent-encoded once more
(``a%20b`` is signed as ``a%2520b``, as AWS asks of every service but S3), dot segments
and empty segments are dropped from it, and the query string is signed as sent, sorted
but not re-encoded.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP = "%Y%m%dT%H%M%SZ"
#: Headers botocore never signs (``botocore.auth.SIGNED_HEADERS_BLACKLIST``).
UNSIGNED_HEADERS = frozenset({
    "baggage", "connection", "expect", "keep-alive", "proxy-authenticate",
    "proxy-authorization", "te", "traceparent", "tracestate", "trailer",
    "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
})


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, key_id: str,
         secret: str, *, session_token: str | None = None, region: str = "local",
         service: str = "faasbox", now: datetime.datetime | None = None,
         payload_hash: str | None = None) -> dict[str, str]:
    """``headers`` plus ``X-Amz-Date``, ``X-Amz-Content-SHA256`` (hex sha256 of body),
    ``Authorization`` (and ``X-Amz-Security-Token`` with a session token).

    As botocore does, a ``Date`` header, if given, is replaced by the signing time and
    stands in for ``X-Amz-Date``. ``Host`` is signed (from the URL, without a default
    port, unless given) but not added. ``now`` defaults to the current time; a naive
    one is taken as UTC. ``payload_hash``: the body's SHA-256, when the caller computed
    it (a streamed file) and ``body`` is left empty."""
    now = now or datetime.datetime.now(datetime.UTC)
    if now.tzinfo is not None:
        now = now.astimezone(datetime.UTC).replace(tzinfo=None)
    stamp = now.strftime(TIMESTAMP)
    has_date = any(name.lower() == "date" for name in headers)
    replaced = {"authorization", "x-amz-date", "x-amz-content-sha256"}
    replaced |= {"date"} if has_date else set()
    replaced |= {"x-amz-security-token"} if session_token else set()
    out = {name: value for name, value in headers.items() if name.lower() not in replaced}
    out["X-Amz-Content-SHA256"] = payload_hash or hashlib.sha256(body).hexdigest()
    if has_date:
        out["Date"] = email.utils.formatdate(calendar.timegm(now.timetuple()))
    else:
        out["X-Amz-Date"] = stamp
    if session_token:
        out["X-Amz-Security-Token"] = session_token

    signed: dict[str, list[str]] = {}
    for name, value in out.items():
        if name.lower() not in UNSIGNED_HEADERS:
            signed.setdefault(name.lower(), []).append(" ".join(value.split()))
    parts = urlsplit(url)
    signed.setdefault("host", [_host(url)])
    names = sorted(signed)
    signed_headers = ";".join(sorted(name.strip() for name in names))
    pairs = sorted(pair.partition("=")[::2] for pair in parts.query.split("&") if parts.query)
    canonical = "\n".join([
        method.upper(),
        quote(_remove_dot_segments(parts.path) if parts.path else "/", safe="/~"),
        "&".join(f"{key}={value}" for key, value in pairs),
        "".join(f"{name}:{','.join(signed[name])}\n" for name in names),
        signed_headers,
        out["X-Amz-Content-SHA256"],
    ])
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"{ALGORITHM} Credential={key_id}/{scope}, "
                            f"SignedHeaders={signed_headers}, Signature={signature}")
    return out


def _host(url: str) -> str:
    """The Host header botocore derives: lowercase, no userinfo, no default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal, which urlsplit unbrackets
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _remove_dot_segments(path: str) -> str:
    """botocore.utils.remove_dot_segments: RFC 3986 5.2.4, and empty segments dropped."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and kept else ""
    return first + "/".join(kept) + last
