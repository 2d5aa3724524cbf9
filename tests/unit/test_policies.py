"""Policy documents, their evaluation, temporary credentials and the audit log's
queries: the rules alone, on real SQLite files where they store anything."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from faasbox.auth.audit import AuditLog, entry
from faasbox.auth.policies import PolicyStore, allowed, matches, parse
from faasbox.auth.roles import DEFAULT_ROLE, RoleStore
from faasbox.auth.sessions import SessionIssuer
from faasbox.errors import (
    ConflictError,
    ForbiddenError,
    InvalidParameterError,
    PolicyNotFoundError,
    RoleNotFoundError,
)
from faasbox.stores.database import Database


def test_wildcards_match_as_iam_does() -> None:
    assert matches("queue:team-*", "queue:team-a")
    assert matches("queue:team-?", "queue:team-a") and not matches("queue:team-?", "queue:team-ab")
    assert not matches("queue:team-*", "queue:other")
    assert matches("object:in/*", "object:in/a/b[1].txt")  # brackets are literal
    assert not matches("object:in/[ab]", "object:in/a")
    assert matches("functions:invoke", "functions:Invoke", ignore_case=True)
    assert not matches("function:Hello", "function:hello")  # resources: case matters


def test_deny_by_default_and_an_explicit_deny_wins() -> None:
    statements = parse({"Statement": [
        {"Effect": "Allow", "Action": ["queues:*", "objects:GetObject"], "Resource": "*"},
        {"Effect": "Deny", "Action": "queues:DeleteQueue", "Resource": "queue:keep"}]})
    assert allowed(statements, "queues:SendMessage", "queue:any")
    assert allowed(statements, "queues:DeleteQueue", "queue:other")
    assert not allowed(statements, "queues:DeleteQueue", "queue:keep")
    assert not allowed(statements, "objects:PutObject", "object:b/k")
    assert not allowed((), "queues:SendMessage", "queue:any")
    single = parse(json.dumps({"Statement": {"Effect": "Allow", "Action": "*",
                                             "Resource": "*"}}))
    assert allowed(single, "keys:CreateKey", "key:*")


@pytest.mark.parametrize(("document", "message"), [
    ("not json", "not JSON"),
    ([], "a JSON object"),
    ({"Statement": []}, "non-empty list"),
    ({"Statement": [{"Effect": "Allow", "Action": "*"}]}, "Resource must be"),
    ({"Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]}, "Allow or Deny"),
    ({"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]},
     "not service:Operation"),
    ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "hello"}]},
     "is not kind:name"),
    ({"Statement": [{"Effect": "Allow", "NotAction": "*", "Resource": "*"}]},
     "does not support"),
    ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}], "Extra": 1},
     "unknown policy document fields"),
    ("x" * 7000, "over 6144 characters"),
])
def test_bad_documents_say_what_is_wrong(document: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        parse(document)


def test_policies_and_roles_are_stored_attached_and_guarded(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    store = PolicyStore(db)
    roles = RoleStore(db, store)
    assert roles.get(DEFAULT_ROLE)["policies"] == ["FunctionDefaultAccess"]
    store.put("q", {"Statement": [{"Effect": "Allow", "Action": "queues:*",
                                   "Resource": "*"}]})
    roles.create("worker", policies=["q"])
    assert allowed(store.statements("role:worker"), "queues:SendMessage", "queue:x")
    with pytest.raises(ConflictError, match="detach it first"):
        store.delete("q")
    with pytest.raises(ConflictError, match="built in"):
        store.put("AdministratorAccess", {"Statement": [
            {"Effect": "Deny", "Action": "*", "Resource": "*"}]})
    with pytest.raises(PolicyNotFoundError):
        roles.create("ghost", policies=["missing"])
    with pytest.raises(RoleNotFoundError):
        roles.get("ghost")  # the refused create made nothing
    with pytest.raises(ConflictError, match="execution role of fn"):
        roles.delete("worker", ["fn"])
    roles.delete("worker", [])
    store.delete("q")  # no longer attached
    with pytest.raises(InvalidParameterError, match="out of range 900-43200"):
        roles.create("short", max_session_s=60)
    reopened = RoleStore(db, PolicyStore(db))  # a restart keeps what was made, once
    assert [r["name"] for r in reopened.all()] == [DEFAULT_ROLE]
    db.close()


def test_session_tokens_expire_and_refuse_any_change() -> None:
    issuer = SessionIssuer(b"k" * 32)
    session = issuer.issue("default", 900, "me")
    assert issuer.check(session.token, session.key_id).role == "default"
    assert issuer.check(session.token, session.key_id).secret == session.secret
    with pytest.raises(ForbiddenError, match="expired at"):
        issuer.check(session.token, session.key_id, now=time.time() + 901)
    with pytest.raises(ForbiddenError, match="not issued for the access key"):
        issuer.check(session.token, "FBTOTHER")
    body, mac = session.token[len("FBS1."):].split(".")
    claims = json.loads(__import__("base64").urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["r"] = "admin"  # a role of one's choosing, the MAC kept
    forged = "FBS1." + __import__("base64").urlsafe_b64encode(
        json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode() + "." + mac
    with pytest.raises(ForbiddenError, match="invalid"):
        issuer.check(forged, session.key_id)
    with pytest.raises(ForbiddenError, match="invalid"):
        SessionIssuer(b"o" * 32).check(session.token, session.key_id)  # another platform
    with pytest.raises(ForbiddenError, match="not one faasbox issued"):
        issuer.check("eyJ...", session.key_id)
    assert session.secret not in repr(session.environment().keys())


def test_the_audit_log_appends_whole_lines_and_filters(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    for i, outcome in enumerate(["allowed", "denied", "allowed"]):
        log.append(entry(principal=f"key:K{i}", key_id=f"K{i}", role=None,
                         action="queues:SendMessage" if i else "functions:Invoke",
                         resource=f"queue:q{i}", outcome=outcome, status=200, method="POST",
                         path="/x", source="127.0.0.1"))
    log.close()
    with (tmp_path / "audit.log").open("ab") as torn:  # a disk that filled mid-line
        torn.write(b'{"time": 1, "princ')
    log = AuditLog(tmp_path / "audit.log")  # reopened: the cut line is skipped, not joined
    log.append(entry(principal="key:K3", key_id="K3", role=None, action="queues:SendMessage",
                     resource="queue:q3", outcome="failed", status=500, method="POST",
                     path="/x", source=None))
    assert [e["key_id"] for e in log.query(action="queues:*")] == ["K1", "K2", "K3"]
    assert [e["key_id"] for e in log.query(outcome="denied")] == ["K1"]
    assert [e["key_id"] for e in log.query(principal="K2")] == ["K2"]
    assert [e["key_id"] for e in log.query(limit=2)] == ["K2", "K3"]  # the newest, in order
    assert [e["key_id"] for e in log.query(since=time.time() + 60)] == []
    with pytest.raises(InvalidParameterError, match="limit"):
        log.query(limit=0)
    log.close()
