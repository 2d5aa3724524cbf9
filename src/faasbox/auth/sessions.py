"""Temporary credentials (STS): an access key, a secret, a session token, an expiry.

Nothing is stored. The session token carries the key id, the role, the session's name
and its expiry, with an HMAC under the platform's master key; the secret is derived
from the key id like a long-lived key's. So the server checks a token with one HMAC,
a tampered token fails it, and an expired one is refused by its own date.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from faasbox.auth.keys import derive_secret
from faasbox.errors import ForbiddenError

#: Temporary key ids start so (AWS: ASIA), long-lived ones with FBK.
SESSION_KEY_PREFIX = "FBT"
_TOKEN_PREFIX = "FBS1."
_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class Session:
    key_id: str
    secret: str
    token: str
    role: str
    name: str
    expires_at: float

    def to_dict(self) -> dict[str, object]:
        return {"access_key_id": self.key_id, "secret_access_key": self.secret,
                "session_token": self.token, "expiration": self.expires_at,
                "role": self.role, "session_name": self.name}

    def environment(self) -> dict[str, str]:
        """The variables a sandbox (or a shell) uses these credentials from."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_SESSION_TOKEN": self.token,
                "FAASBOX_CREDENTIALS_EXPIRATION": f"{self.expires_at:.0f}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionIssuer:
    """Issues and checks temporary credentials under one master key."""

    def __init__(self, master: bytes) -> None:
        self._master = master
        self._mac_key = hashlib.sha256(b"faasbox session token\0" + master).digest()

    def issue(self, role: str, duration_s: float, name: str = "") -> Session:
        # 17 base32 characters from one read of the system's randomness (85 bits)
        key_id = SESSION_KEY_PREFIX + base64.b32encode(secrets.token_bytes(11)).decode()[:17]
        expires_at = time.time() + duration_s
        claims = json.dumps({"k": key_id, "r": role, "n": name, "x": round(expires_at, 3)},
                            separators=(",", ":")).encode()
        mac = hmac.new(self._mac_key, claims, hashlib.sha256).digest()
        token = f"{_TOKEN_PREFIX}{_b64(claims)}.{_b64(mac)}"
        return Session(key_id, derive_secret(self._master, key_id), token, role, name,
                       expires_at)

    def check(self, token: str, key_id: str, now: float | None = None) -> Session:
        """The session ``token`` stands for, signed with ``key_id``; ForbiddenError when
        the token is malformed, tampered with, for another key, or expired."""
        if not token.startswith(_TOKEN_PREFIX) or len(token) > _TOKEN_CHARS:
            raise ForbiddenError("the session token (X-Amz-Security-Token) is not one "
                                 "faasbox issued")
        body, _, mac = token[len(_TOKEN_PREFIX):].partition(".")
        try:
            claims_raw, mac_raw = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise ForbiddenError("the session token is malformed") from None
        expected = hmac.new(self._mac_key, claims_raw, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, mac_raw) or _b64(claims_raw) != body:
            raise ForbiddenError("the session token is invalid: it was changed, or issued "
                                 "by another platform")
        claims = json.loads(claims_raw)
        if claims["k"] != key_id:
            raise ForbiddenError(f"the session token was not issued for the access key "
                                 f"{key_id}")
        now = time.time() if now is None else now
        if now >= claims["x"]:
            ended = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(claims["x"]))
            raise ForbiddenError(
                f"the security token expired at {ended}Z ({now - claims['x']:.0f} s ago): "
                "get new credentials (faasbox sts assume-role)")
        return Session(key_id, derive_secret(self._master, key_id), token, claims["r"],
                       claims["n"], float(claims["x"]))
