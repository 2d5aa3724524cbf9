"""Access keys: a key id and a secret, the secret never stored.

SigV4 needs the secret itself to check a signature (it is an HMAC key), so a hash of
it cannot be all the server keeps. Instead every secret is *derived*: HMAC-SHA256 of
the key id under the platform's master key, a 32-byte file kept 0600 in the home
(``master.key``). The state database holds the key id, a fingerprint of the secret
(its SHA-256, to show and compare, not to verify with) and the key's status: a copy of
the database alone reveals no secret; the master key is needed too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from faasbox.errors import (
    AccessKeyNotFoundError,
    FaasboxError,
    ForbiddenError,
    InvalidParameterError,
)
from faasbox.layout import private_file
from faasbox.stores.database import Database

MASTER_KEY = "master.key"
_MASTER_BYTES = 32
#: Key ids look like AWS's (20 characters, upper case): "FBK" and 17 more.
KEY_ID_PREFIX = "FBK"
_KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
STATUSES = ("active", "disabled")

metadata = sa.MetaData()
access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("description", sa.String(256), nullable=False, default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


def load_master_key(home: Path) -> bytes:
    """The platform's master key, made (0600, written once, atomically) on first use.
    Raises FaasboxError when the file is there but not a master key."""
    path = Path(home) / MASTER_KEY
    data = private_file(path, lambda: secrets.token_bytes(_MASTER_BYTES))
    if len(data) != _MASTER_BYTES:
        raise FaasboxError(f"{path} is not a faasbox master key ({len(data)} bytes)")
    return data


def derive_secret(master: bytes, key_id: str) -> str:
    """The secret of ``key_id``: 40 characters, as AWS's."""
    digest = hmac.new(master, b"faasbox access key\0" + key_id.encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()[:40]


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    fingerprint: str
    description: str
    status: str
    created_at: float

    def to_dict(self) -> dict[str, object]:
        return {"key_id": self.key_id, "fingerprint": self.fingerprint[:16],
                "description": self.description, "status": self.status,
                "created_at": self.created_at}


class KeyStore:
    """The access keys of one platform (rows in the state database) and their secrets
    (derived from the master key)."""

    def __init__(self, db: Database, master: bytes) -> None:
        self.db = db
        self._master = master
        db.create(metadata)

    def create(self, description: str = "") -> tuple[AccessKey, str]:
        """A new active key and its secret (shown once: it is never stored)."""
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidParameterError("description must be text of at most 256 characters")
        key_id = KEY_ID_PREFIX + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(17))
        secret = derive_secret(self._master, key_id)
        key = AccessKey(key_id, fingerprint(secret), description, "active", time.time())
        with self.db.write() as conn:
            conn.execute(access_keys.insert().values(
                key_id=key.key_id, fingerprint=key.fingerprint, description=key.description,
                status=key.status, created_at=key.created_at))
        return key, secret

    def get(self, key_id: str) -> AccessKey:
        with self.db.read() as conn:
            row = conn.execute(sa.select(access_keys).where(access_keys.c.key_id == key_id)
                               ).first()
        if row is None:
            raise AccessKeyNotFoundError(key_id)
        return AccessKey(row.key_id, row.fingerprint, row.description, row.status,
                         row.created_at)

    def list(self) -> list[AccessKey]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(access_keys).order_by(access_keys.c.created_at)).all()
        return [AccessKey(r.key_id, r.fingerprint, r.description, r.status, r.created_at)
                for r in rows]

    def set_status(self, key_id: str, status: str) -> AccessKey:
        if status not in STATUSES:
            raise InvalidParameterError(f"status={status!r}: use one of {', '.join(STATUSES)}")
        with self.db.write() as conn:
            done = conn.execute(access_keys.update().where(access_keys.c.key_id == key_id)
                                .values(status=status)).rowcount
        if not done:
            raise AccessKeyNotFoundError(key_id)
        return self.get(key_id)

    def delete(self, key_id: str) -> None:
        with self.db.write() as conn:
            done = conn.execute(access_keys.delete().where(access_keys.c.key_id == key_id)
                                ).rowcount
        if not done:
            raise AccessKeyNotFoundError(key_id)

    def secret_for(self, key_id: str) -> str:
        """The secret to check a signature made with ``key_id``; ForbiddenError saying
        which when the key is unknown or disabled."""
        try:
            key = self.get(key_id)
        except AccessKeyNotFoundError:
            raise ForbiddenError(f"the access key {key_id} does not exist") from None
        if key.status != "active":
            raise ForbiddenError(f"the access key {key_id} is {key.status}")
        secret = derive_secret(self._master, key_id)
        if not hmac.compare_digest(fingerprint(secret), key.fingerprint):
            raise ForbiddenError(f"the access key {key_id} was issued under another "
                                 "master key")
        return secret
