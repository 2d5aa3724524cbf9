"""AWS Signature Version 4, over botocore's signer: clients sign with it (so AWS SDKs
can later talk to faasbox as they talk to AWS), the server recomputes the signature of
each request with the same code and compares.

A request is refused (:class:`ForbiddenError`, 403, saying which) when it has no or a
malformed ``Authorization``, names another region or service, is more than
:data:`MAX_SKEW_S` away from the server's clock, carries a body whose SHA-256 is not
its ``X-Amz-Content-SHA256``, uses an unknown or disabled key, or its signature does not
match.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from faasbox.errors import ForbiddenError
from faasbox.model import REGION

SERVICE = "faasbox"
ALGORITHM = "AWS4-HMAC-SHA256"
#: Clocks may disagree by this much (AWS: 5 minutes).
MAX_SKEW_S = 300
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/aws4_request, ?SignedHeaders=(?P<headers>[a-z0-9;._-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_payload(declared: str, actual: str) -> None:
    """ForbiddenError unless the body's SHA-256 is the signed one."""
    if not hmac.compare_digest(declared, actual):
        raise ForbiddenError("the payload hash (X-Amz-Content-SHA256) does not match the "
                             "body: it was changed on the way, or not signed")


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, key_id: str,
         secret: str, *, session_token: str | None = None, region: str = REGION,
         service: str = SERVICE) -> dict[str, str]:
    """``headers`` plus ``X-Amz-Date``, ``X-Amz-Content-SHA256`` and ``Authorization``
    (and ``X-Amz-Security-Token`` with a session token)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    del request.headers["X-Amz-Content-SHA256"]  # a caller's own would be signed twice
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(key_id, secret, session_token), service, region).add_auth(request)
    return dict(request.headers.items())


def verify(method: str, url: str, headers: Mapping[str, str], body: bytes | None,
           secret_for: Callable[[str], str], *, now: datetime.datetime | None = None,
           region: str = REGION, service: str = SERVICE) -> str:
    """The key id that signed this request; ForbiddenError saying what is wrong.

    The payload hash is ``X-Amz-Content-SHA256`` when sent (faasbox's clients and S3's
    send it), else the body's own, as AWS services other than S3 compute it (botocore
    and ``curl --aws-sigv4`` send none). With ``body`` None (a body streamed on) the
    header is required and only checked to be a hash: the caller compares it with the
    body's as it streams in (:func:`check_payload`)."""
    lower = {name.lower(): value for name, value in headers.items()}
    authorization = lower.get("authorization")
    if not authorization:
        raise ForbiddenError("the request is not signed: it needs an AWS Signature Version "
                             "4 Authorization header (faasbox's CLI and SDK sign with your "
                             "access key)")
    found = _AUTHORIZATION.match(authorization.strip())
    if found is None:
        raise ForbiddenError(f"the Authorization header is not a {ALGORITHM} signature")
    if (found["region"], found["service"]) != (region, service):
        raise ForbiddenError(f"the signature is scoped to {found['region']}/"
                             f"{found['service']}, not {region}/{service}")
    stamp = lower.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(
            tzinfo=datetime.UTC)
    except ValueError:
        raise ForbiddenError("X-Amz-Date is missing or not yyyymmddThhmmssZ") from None
    if stamp[:8] != found["date"]:
        raise ForbiddenError("the credential's date is not the date of X-Amz-Date")
    now = now or datetime.datetime.now(datetime.UTC)
    skew = abs((now - signed_at).total_seconds())
    if skew > MAX_SKEW_S:
        raise ForbiddenError(f"the request was signed at {signed_at:%Y-%m-%d %H:%M:%S}Z, "
                             f"{skew:.0f} s from the server's clock (at most {MAX_SKEW_S} s "
                             "apart): check this machine's time")
    declared = lower.get("x-amz-content-sha256")
    if declared is not None:
        if not _HEX64.match(declared):
            raise ForbiddenError("X-Amz-Content-SHA256 must be the hex SHA-256 of the body")
        if body is not None:
            check_payload(declared, hashlib.sha256(body).hexdigest())
    elif body is None:
        raise ForbiddenError("a body this large is checked as it streams: sign it with its "
                             "SHA-256 in X-Amz-Content-SHA256")
    signed = found["headers"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise ForbiddenError("the signature must cover the host and x-amz-date headers")
    missing = [name for name in signed if name not in lower]
    if missing:
        raise ForbiddenError(f"signed headers missing from the request: {', '.join(missing)}")
    key_id = found["key"]
    secret = secret_for(key_id)  # ForbiddenError for an unknown or disabled key
    if declared is not None and "x-amz-content-sha256" not in signed and body is None:
        raise ForbiddenError("X-Amz-Content-SHA256 of a streamed body must be signed")
    # botocore hashes ``data`` unless the (signed) header gives the hash
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: lower[name] for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, found["signature"]):
        raise ForbiddenError("the signature does not match: wrong secret for "
                             f"{key_id}, or the request was changed after signing")
    return key_id

