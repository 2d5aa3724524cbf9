"""The standard-library SigV4 signer agrees with botocore's: for a spread of requests its
headers equal those of the botocore signer at the same instant, and botocore (the
server's :func:`faasbox.auth.sigv4.verify`) accepts them, and refuses them once changed."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import botocore.auth
import pytest

from faasbox import stdlib_sigv4
from faasbox.auth import sigv4
from faasbox.errors import ForbiddenError

NOW = datetime.datetime(2024, 2, 29, 23, 59, 58, tzinfo=datetime.UTC)
KEY, SECRET = "FBKEXAMPLE0000000001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
BASE = "http://127.0.0.1:8642"
JSON = {"Content-Type": "application/json"}

# (method, url, headers, body, session token)
CASES = [
    ("GET", f"{BASE}/v1/functions", {}, b"", None),
    ("POST", f"{BASE}/v1/functions/hello/invoke?qualifier=live",
     {**JSON, "X-Amz-Invocation-Type": "Event"}, b'{"name": "world"}', None),
    ("PUT", f"{BASE}/v1/buckets/b/objects/dir/file%2Bx.txt",
     {"Content-Type": "application/octet-stream"}, bytes(range(256)) * 5, None),
    ("DELETE", f"{BASE}/v1/queues/a%20b/messages?receipt=abc%2Bdef%3D%3D", {}, b"", None),
    ("POST", f"{BASE}/v1/queues/a%20b/messages", JSON, b'{"body": "hi"}', "session-token/+="),
    ("PUT", f"{BASE}/v1/buckets/b/objects/a b+c.txt", {}, b"raw space and plus", None),
    ("PUT", f"{BASE}/v1/buckets/b/objects/r\u00e9sum\u00e9 \u6587\u66f8.pdf", {}, b"%", None),
    ("GET", f"{BASE}/v1/buckets/b/objects/r%C3%A9sum%C3%A9.pdf?x=%E2%9C%93", {}, b"", None),
    ("GET", f"{BASE}/v1/buckets/b/objects?prefix=a%2Fb&b=2&a=1&a=0&empty=&flag&=x&&z",
     {}, b"", None),
    ("GET", f"{BASE}/v1/x?q=a b+c&r=~-_.!*'()", {}, b"", None),
    ("get", f"{BASE}//v1/./functions/../functions//hello/", {}, b"", "token"),
    ("GET", f"{BASE}/v1/a/../../..", {}, b"", None),
    ("GET", BASE, {}, b"", None),
    ("GET", f"{BASE}/", {}, b"", None),
    ("GET", f"{BASE}/v1/../?", {}, b"", None),
    ("GET", "http://LOCALHOST:80/v1/functions", {}, b"", None),
    ("GET", "https://user:pw@faasbox.example.com:443/v1/functions", {}, b"", None),
    ("GET", "https://faasbox.example.com:8443/v1/functions", {}, b"", None),
    ("GET", "http://[::1]:8642/v1/functions", {}, b"", None),
    ("POST", f"{BASE}/v1/functions/hello/invoke",
     {"content-type": "  application/json;   charset=utf-8 ", "X-Custom-Thing": "a\tb\n c",
      "User-Agent": "faasbox/0.1", "Expect": "100-continue", "X-Amzn-Trace-Id": "Root=1",
      "Connection": "keep-alive"}, b"{}", None),
    ("GET", f"{BASE}/v1/functions", {"Host": "proxy.example:8642"}, b"", None),
    ("POST", f"{BASE}/v1/functions", {"Authorization": "stale", "X-Amz-Date": "19700101T000000Z",
                                      **JSON}, b"[]", "t"),
]


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs at NOW (it reads the clock through this, naive UTC)."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda *args, **kwargs: NOW.replace(tzinfo=None))


def as_sent(headers: dict[str, str], url: str) -> dict[str, str]:
    """The headers the server sees: the HTTP client adds Host when it was not given."""
    if any(name.lower() == "host" for name in headers):
        return headers
    return {**headers, "Host": stdlib_sigv4._host(url)}


@pytest.mark.parametrize("method, url, headers, body, token", CASES)
def test_equals_botocore_and_botocore_verifies_it(frozen, method, url, headers, body,
                                                  token) -> None:
    ours = stdlib_sigv4.sign(method, url, headers, body, KEY, SECRET, session_token=token,
                             now=NOW)
    theirs = sigv4.sign(method, url, headers, body, KEY, SECRET, session_token=token)
    assert ours == theirs
    assert ours["X-Amz-Date"] == "20240229T235958Z"
    assert "Host" not in ours or "Host" in headers
    assert sigv4.verify(method.upper(), url, as_sent(ours, url), body, lambda k: SECRET,
                        now=NOW) == KEY


@pytest.mark.parametrize("headers", [
    {"Date": "Thu, 01 Jan 1970 00:00:00 GMT", **JSON},  # botocore signs Date, not X-Amz-Date
    {"X-Dup": "a", "x-dup": " b ", **JSON},  # names equal but for case: values joined
    {"X-Amz-Security-Token": "kept when there is no session token"},
])
def test_botocore_quirks_are_mirrored(frozen, headers) -> None:
    url = f"{BASE}/v1/functions"
    ours = stdlib_sigv4.sign("POST", url, headers, b"{}", KEY, SECRET, now=NOW)
    assert ours == sigv4.sign("POST", url, headers, b"{}", KEY, SECRET)


def test_the_time_is_taken_as_utc() -> None:
    args = ("GET", f"{BASE}/v1/functions", {}, b"", KEY, SECRET)
    utc = stdlib_sigv4.sign(*args, now=NOW)
    elsewhere = NOW.astimezone(datetime.timezone(datetime.timedelta(hours=-5)))
    assert stdlib_sigv4.sign(*args, now=elsewhere) == utc
    assert stdlib_sigv4.sign(*args, now=NOW.replace(tzinfo=None, microsecond=7)) == utc
    current = stdlib_sigv4.sign(*args)
    sigv4.verify("GET", args[1], as_sent(current, args[1]), b"", lambda k: SECRET)


def signed_invoke() -> tuple[str, dict[str, str], bytes]:
    url = f"{BASE}/v1/functions/hello/invoke?qualifier=live"
    body = b'{"name": "world"}'
    headers = stdlib_sigv4.sign("POST", url, {**JSON, "X-Amz-Invocation-Type": "Event"},
                                body, KEY, SECRET, session_token="tok", now=NOW)
    return url, as_sent(headers, url), body


@pytest.mark.parametrize("change, message", [
    (lambda u, h, b: (u, h, b + b" "), "payload hash"),
    (lambda u, h, b: (u, {**h, "X-Amz-Content-SHA256": stdlib_sigv4.hashlib.sha256(
        b"{}").hexdigest()}, b"{}"), "signature does not match"),
    (lambda u, h, b: (u, {**h, "Content-Type": "text/plain"}, b), "signature does not match"),
    (lambda u, h, b: (u, {**h, "X-Amz-Invocation-Type": "RequestResponse"}, b),
     "signature does not match"),
    (lambda u, h, b: (u, {**h, "X-Amz-Security-Token": "other"}, b),
     "signature does not match"),
    (lambda u, h, b: (u, {**h, "Host": "127.0.0.1:9999"}, b), "signature does not match"),
    (lambda u, h, b: (u.replace("live", "v2"), h, b), "signature does not match"),
    (lambda u, h, b: (u.replace("hello", "other"), h, b), "signature does not match"),
    (lambda u, h, b: (u, {k: v for k, v in h.items() if k != "Content-Type"}, b),
     "signed headers missing"),
])
def test_a_changed_request_fails_verification(change, message) -> None:
    url, headers, body = change(*signed_invoke())
    with pytest.raises(ForbiddenError, match=message):
        sigv4.verify("POST", url, headers, body, lambda k: SECRET, now=NOW)


def test_a_wrong_secret_fails_verification() -> None:
    url, headers, body = signed_invoke()
    with pytest.raises(ForbiddenError, match="signature does not match"):
        sigv4.verify("POST", url, headers, body, lambda k: SECRET + "x", now=NOW)


def test_it_needs_only_the_standard_library() -> None:
    """Loaded by path in an interpreter without site-packages, as in a sandbox."""
    path = Path(stdlib_sigv4.__file__)
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('s', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(module.sign('GET', 'http://h/x', {}, b'', 'K', 'S')['Authorization'][:30])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in "
        "('faasbox', 'botocore', 'urllib3')]\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("AWS4-HMAC-SHA256 Credential=K/")
