"""Access keys and SigV4 verification: real SQLite, real botocore signer; every refusal
names what was wrong."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

import pytest

from faasbox.auth import keys, sigv4
from faasbox.errors import AccessKeyNotFoundError, FaasboxError, ForbiddenError
from faasbox.stores.database import Database

URL = "http://127.0.0.1:8642/v1/functions/hello/invoke?qualifier=live"
BODY = b'{"name": "world"}'


@pytest.fixture
def store(tmp_path: Path) -> keys.KeyStore:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    return keys.KeyStore(db, keys.load_master_key(tmp_path))


def signed(key_id: str, secret: str, *, body: bytes = BODY, url: str = URL,
           method: str = "POST") -> dict[str, str]:
    return sigv4.sign(method, url, {"Content-Type": "application/json",
                                    "Host": "127.0.0.1:8642"}, body, key_id, secret)


def test_the_master_key_is_made_once_private_and_checked(tmp_path: Path) -> None:
    first = keys.load_master_key(tmp_path)
    assert keys.load_master_key(tmp_path) == first and len(first) == 32
    mode = stat.S_IMODE(os.stat(tmp_path / keys.MASTER_KEY).st_mode)
    assert mode == 0o600
    (tmp_path / keys.MASTER_KEY).write_bytes(b"short")
    with pytest.raises(FaasboxError, match="is not a faasbox master key"):
        keys.load_master_key(tmp_path)


def test_secrets_are_derived_and_only_a_fingerprint_is_stored(store, tmp_path) -> None:
    key, secret = store.create("ci")
    assert key.key_id.startswith("FBK") and len(key.key_id) == 20 and len(secret) == 40
    assert store.secret_for(key.key_id) == secret  # derived again, not read back
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("state.db*"))  # and its WAL
    assert secret.encode() not in raw and key.fingerprint.encode() in raw
    assert [k.key_id for k in store.list()] == [key.key_id]
    assert store.list()[0].to_dict()["fingerprint"] == key.fingerprint[:16]


def test_a_signed_request_verifies_to_its_key(store) -> None:
    key, secret = store.create()
    headers = signed(key.key_id, secret)
    assert sigv4.verify("POST", URL, headers, BODY, store.secret_for) == key.key_id


@pytest.mark.parametrize("change, message", [
    (lambda h, b: (h, b + b" "), "payload hash"),
    (lambda h, b: ({**h, "X-Amz-Content-SHA256": sigv4.hashlib.sha256(b + b"!").hexdigest()},
                   b + b"!"), "signature does not match"),
    (lambda h, b: ({k: v for k, v in h.items() if k != "Authorization"}, b), "not signed"),
    (lambda h, b: ({**h, "Authorization": "Bearer abc"}, b), "not a AWS4-HMAC-SHA256"),
    (lambda h, b: ({**h, "Content-Type": "text/plain"}, b), "signature does not match"),
], ids=["body changed", "body and hash changed", "unsigned", "another scheme",
        "signed header changed"])
def test_a_changed_or_unsigned_request_is_refused_saying_why(store, change, message) -> None:
    key, secret = store.create()
    headers, body = change(signed(key.key_id, secret), BODY)
    with pytest.raises(ForbiddenError, match=message):
        sigv4.verify("POST", URL, headers, body, store.secret_for)


def test_clock_skew_over_five_minutes_is_refused(store) -> None:
    key, secret = store.create()
    headers = signed(key.key_id, secret)
    stamp = datetime.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC)
    ok = stamp + datetime.timedelta(seconds=299)
    assert sigv4.verify("POST", URL, headers, BODY, store.secret_for, now=ok) == key.key_id
    for late in (stamp + datetime.timedelta(seconds=301), stamp - datetime.timedelta(minutes=6)):
        with pytest.raises(ForbiddenError, match="from the server's clock"):
            sigv4.verify("POST", URL, headers, BODY, store.secret_for, now=late)


def test_unknown_disabled_deleted_and_forged_keys_are_refused(store, tmp_path) -> None:
    key, secret = store.create()
    with pytest.raises(ForbiddenError, match="does not exist"):
        sigv4.verify("POST", URL, signed("FBKNOSUCHKEY00000000", secret), BODY,
                     store.secret_for)
    with pytest.raises(ForbiddenError, match="signature does not match"):
        sigv4.verify("POST", URL, signed(key.key_id, "guessed" * 5 + "abcde"), BODY,
                     store.secret_for)
    store.set_status(key.key_id, "disabled")
    with pytest.raises(ForbiddenError, match="is disabled"):
        sigv4.verify("POST", URL, signed(key.key_id, secret), BODY, store.secret_for)
    store.set_status(key.key_id, "active")
    assert sigv4.verify("POST", URL, signed(key.key_id, secret), BODY, store.secret_for)
    store.delete(key.key_id)
    with pytest.raises(ForbiddenError, match="does not exist"):
        sigv4.verify("POST", URL, signed(key.key_id, secret), BODY, store.secret_for)
    with pytest.raises(AccessKeyNotFoundError):
        store.delete(key.key_id)
    # another platform (another master key) cannot vouch for this key id
    (tmp_path / "other").mkdir()
    other = keys.KeyStore(store.db, keys.load_master_key(tmp_path / "other"))
    again, _ = store.create()
    with pytest.raises(ForbiddenError, match="another master key"):
        other.secret_for(again.key_id)


def test_a_signature_for_another_region_or_service_is_refused(store) -> None:
    key, secret = store.create()
    headers = sigv4.sign("GET", URL, {"Host": "127.0.0.1:8642"}, b"", key.key_id, secret,
                         region="us-east-1")
    with pytest.raises(ForbiddenError, match="scoped to us-east-1/faasbox"):
        sigv4.verify("GET", URL, headers, b"", store.secret_for)
    headers = sigv4.sign("GET", URL, {"Host": "127.0.0.1:8642"}, b"", key.key_id, secret,
                         service="s3")
    with pytest.raises(ForbiddenError, match="scoped to local/s3"):
        sigv4.verify("GET", URL, headers, b"", store.secret_for)


def test_bad_key_input_changes_nothing(store) -> None:
    with pytest.raises(FaasboxError, match="at most 256"):
        store.create("x" * 300)
    with pytest.raises(FaasboxError, match="use one of active, disabled"):
        store.set_status("FBKANY", "paused")
    assert store.list() == []
