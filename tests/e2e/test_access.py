"""Authentication, policies, temporary credentials, execution roles and the audit log,
through a real ``faasbox up``, its HTTP API and the CLI."""

from __future__ import annotations

import datetime
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import write_function
from tests.e2e.conftest import Server, start_server, stop_server

from faasbox import stdlib_sigv4
from faasbox.auth.credentials import Credentials, user_file
from faasbox.auth.keys import load_master_key
from faasbox.auth.sessions import SessionIssuer
from faasbox.errors import ForbiddenError, InvalidParameterError
from faasbox.remote import RemoteClient
from faasbox.remote.signing import SigV4

#: Short-lived sandbox credentials, so that a warm sandbox's renewal is seen in a test.
CREDENTIALS_S = 2

CALLER = """\
import json, os
from faasbox.handlers import invoke, queues

def handler(event, context):
    out = {"key_id": os.environ["AWS_ACCESS_KEY_ID"],
           "expires": os.environ["FAASBOX_CREDENTIALS_EXPIRATION"]}
    for queue in event.get("send", []):
        try:
            queues().send(queue, "hi")
            out[queue] = "sent"
        except Exception as exc:
            out[queue] = f"{type(exc).__name__}: {exc}"
    if "invoke" in event:
        try:
            out["invoked"] = invoke(event["invoke"], {"from": "caller"})
        except Exception as exc:
            out["invoked"] = f"{type(exc).__name__}: {exc}"
    return out
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("access") / "home",
                           env_extra={"FAASBOX_SANDBOX_CREDENTIALS_S": str(CREDENTIALS_S)})
    try:
        yield running
    finally:
        code = stop_server(running)
        assert code == 0, running.log()
        assert "Traceback" not in running.log(), running.log()


def signed(server: Server, credentials: Credentials) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, auth=SigV4(credentials))


def new_key(server: Server, *policies: str) -> Credentials:
    with server.http() as http:
        made = http.post("/v1/keys", json={"policies": list(policies)})
    assert made.status_code == 201, made.text
    return Credentials(made.json()["key_id"], made.json()["secret_access_key"])


def test_first_up_writes_an_admin_key_0600_and_the_cli_signs_with_it(secured: Server) -> None:
    home_file = secured.home / "credentials"
    assert stat.S_IMODE(home_file.stat().st_mode) == 0o600
    user = user_file()
    assert stat.S_IMODE(user.stat().st_mode) == 0o600
    admin = secured.credentials
    assert admin.key_id in user.read_text()  # the profile of this home
    assert f"admin access key {admin.key_id} created" in secured.log()
    assert str(home_file) in secured.log() and str(user) in secured.log()
    who = json.loads(secured.cli("whoami").stdout)
    assert who["access_key_id"] == admin.key_id and who["principal"] == f"key:{admin.key_id}"
    # the secret is not in the database: a fingerprint is
    listed = json.loads(secured.cli("keys", "ls", "--json").stdout)
    assert [k["policies"] for k in listed if k["key_id"] == admin.key_id] == [
        ["AdministratorAccess"]]
    assert admin.secret.encode() not in (secured.home / "state.db").read_bytes()


def test_unsigned_and_badly_signed_requests_get_403_saying_why(secured: Server) -> None:
    admin = secured.credentials
    unsigned = httpx.get(f"{secured.url}/v1/functions")
    assert unsigned.status_code == 403 and "not signed" in unsigned.json()["errorMessage"]
    assert httpx.get(f"{secured.url}/healthz").status_code == 200  # public

    def send(method: str, path: str, body: bytes, *, now: datetime.datetime | None = None,
             secret: str = admin.secret, sent_body: bytes | None = None) -> httpx.Response:
        headers = stdlib_sigv4.sign(method, secured.url + path,
                                    {"content-type": "application/json"}, body,
                                    admin.key_id, secret, now=now)
        return httpx.request(method, secured.url + path, headers=headers,
                             content=body if sent_body is None else sent_body)

    assert send("PUT", "/v1/queues/signed-q", b"{}").status_code == 200
    skewed = send("PUT", "/v1/queues/skewed-q", b"{}",
                  now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=6))
    assert skewed.status_code == 403 and "at most 300 s apart" in skewed.text
    tampered = send("PUT", "/v1/queues/tampered-q", b"{}", sent_body=b'{"delay_s": 5}')
    assert tampered.status_code == 403 and "payload hash" in tampered.text
    forged = send("PUT", "/v1/queues/forged-q", b"{}", secret="x" * 40)
    assert forged.status_code == 403 and "signature does not match" in forged.text
    unknown = httpx.get(f"{secured.url}/v1/queues", headers=stdlib_sigv4.sign(
        "GET", f"{secured.url}/v1/queues", {}, b"", "FBKNOSUCHKEY000000000", "s" * 40))
    assert unknown.status_code == 403 and "does not exist" in unknown.text
    with secured.http() as http:  # none of the refused requests changed anything
        names = {q["name"] for q in http.get("/v1/queues").json()["queues"]}
    assert "signed-q" in names and not names & {"skewed-q", "tampered-q", "forged-q"}


def test_requests_signed_as_aws_sdks_sign_them_are_accepted(secured: Server) -> None:
    """botocore's signer (and curl --aws-sigv4) send no X-Amz-Content-SHA256 for a
    service other than S3: the server hashes the body itself."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    admin = secured.credentials

    def aws_signed(method: str, path: str, body: bytes) -> httpx.Response:
        request = AWSRequest(method=method, url=secured.url + path, data=body,
                             headers={"content-type": "application/json"})
        SigV4Auth(BotoCredentials(admin.key_id, admin.secret), "faasbox", "local"
                  ).add_auth(request)
        assert "X-Amz-Content-SHA256" not in request.headers
        return httpx.request(method, secured.url + path, content=body,
                             headers=dict(request.headers.items()))

    assert aws_signed("PUT", "/v1/queues/sdk-q", b'{"delay_s": 1}').status_code == 200
    assert aws_signed("GET", "/v1/queues/sdk-q", b"").json()["delay_s"] == 1
    request = AWSRequest(method="PUT", url=secured.url + "/v1/queues/sdk-q2", data=b"{}",
                         headers={"content-type": "application/json"})
    SigV4Auth(BotoCredentials(admin.key_id, admin.secret), "faasbox", "local"
              ).add_auth(request)
    changed = httpx.request("PUT", secured.url + "/v1/queues/sdk-q2",
                            content=b'{"delay_s": 9}', headers=dict(request.headers.items()))
    assert changed.status_code == 403 and "signature does not match" in changed.text


def test_keys_are_managed_with_the_cli_and_disabled_or_deleted_keys_are_refused(
        secured: Server) -> None:
    made = secured.cli("keys", "create", "--description", "ci", "--json")
    key = json.loads(made.stdout)
    creds = Credentials(key["key_id"], key["secret_access_key"])
    with signed(secured, creds) as http:
        denied = http.get("/v1/functions")  # no policy yet: deny by default
        assert denied.status_code == 403
        assert f"access key {creds.key_id} is not allowed to functions:ListFunctions" in (
            denied.text)
        secured.cli("keys", "attach", creds.key_id, "AdministratorAccess")
        assert http.get("/v1/functions").status_code == 200
        secured.cli("keys", "disable", creds.key_id)
        disabled = http.get("/v1/functions")
        assert disabled.status_code == 403 and "is disabled" in disabled.text
        secured.cli("keys", "enable", creds.key_id)
        assert http.get("/v1/functions").status_code == 200
        secured.cli("keys", "rm", creds.key_id)
        gone = http.get("/v1/functions")
        assert gone.status_code == 403 and "does not exist" in gone.text
    assert creds.key_id not in secured.cli("keys", "ls").stdout


def test_policies_deny_by_default_wildcards_allow_and_explicit_deny_wins(
        secured: Server, tmp_path: Path) -> None:
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "queues:*", "Resource": "queue:team-*"},
        {"Effect": "Deny", "Action": "queues:DeleteQueue", "Resource": "queue:team-keep"}]}
    (tmp_path / "team.json").write_text(json.dumps(document))
    secured.cli("policy", "put", "team-queues", str(tmp_path / "team.json"))
    creds = new_key(secured, "team-queues")
    with signed(secured, creds) as http:
        for name in ("team-a", "team-keep"):
            assert http.put(f"/v1/queues/{name}").status_code == 200
        other = http.put("/v1/queues/other-q")
        assert other.status_code == 403
        assert "not allowed to queues:CreateQueue on queue:other-q" in other.text
        assert http.delete("/v1/queues/team-a").status_code == 204
        kept = http.delete("/v1/queues/team-keep")  # allowed by queues:*, denied by name
        assert kept.status_code == 403
        assert http.get("/v1/queues/team-keep").status_code == 200
        assert http.get("/v1/functions").status_code == 403
    bad = secured.cli("policy", "put", "broken",
                      '{"Statement": [{"Effect": "Maybe", "Action": "x", "Resource": "*"}]}',
                      check=False)
    assert bad.returncode == 1 and "Effect must be Allow or Deny" in bad.stderr
    typo = secured.cli("policy", "put", "typo", '{"Statement": [{"Effect": "Allow", '
                       '"Action": "queue:SendMessage", "Resource": "*"}]}', check=False)
    assert typo.returncode == 1 and "is not service:Operation" in typo.stderr
    assert "broken" not in secured.cli("policy", "ls").stdout
    in_use = secured.cli("policy", "rm", "team-queues", check=False)
    assert in_use.returncode == 1 and "detach it first" in in_use.stderr
    builtin = secured.cli("policy", "rm", "AdministratorAccess", check=False)
    assert builtin.returncode == 1 and "built in" in builtin.stderr


def test_assume_role_gives_temporary_credentials_limited_to_the_role(
        secured: Server) -> None:
    session = json.loads(secured.cli("sts", "assume-role", "default", "--duration", "900",
                                     "--json").stdout)
    assert session["access_key_id"].startswith("FBT") and session["session_token"]
    assert 880 < session["expiration"] - datetime.datetime.now().timestamp() <= 900
    creds = Credentials(session["access_key_id"], session["secret_access_key"],
                        session["session_token"])
    with RemoteClient(secured.url, credentials=creds) as client:
        client.queues.create("assumed-q")  # the default role: queues:*
        with pytest.raises(ForbiddenError, match="role default is not allowed to "
                                                 "functions:ListFunctions"):
            client.list_functions()
    exported = secured.cli("sts", "assume-role", "default", "--duration", "900").stdout
    assert "export FAASBOX_SESSION_TOKEN=FBS1." in exported
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        who = http.get("/v1/whoami", headers=stdlib_sigv4.sign(
            "GET", secured.url + "/v1/whoami", {}, b"", creds.key_id, creds.secret,
            session_token=creds.session_token)).json()
    assert who["role"] == "default" and who["principal"] == "role:default"
    for duration in ("899", "43201"):
        out = secured.cli("sts", "assume-role", "default", "--duration", duration,
                          check=False)
        assert out.returncode == 1 and "out of range 900-43200" in out.stderr
    # a tampered token: one character of its claims changed
    token = session["session_token"]
    middle = len("FBS1.") + 10
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    with RemoteClient(secured.url, credentials=Credentials(
            creds.key_id, creds.secret, tampered)) as client, pytest.raises(
            ForbiddenError, match="session token is invalid"):
        client.queues.list()
    # a token past its expiry (made with the home's own master key, expired a second ago)
    expired = SessionIssuer(load_master_key(secured.home)).issue("default", -1.0)
    with RemoteClient(secured.url, credentials=Credentials(
            expired.key_id, expired.secret, expired.token)) as client, pytest.raises(
            ForbiddenError, match="security token expired at"):
        client.queues.list()
    # without its token, a temporary key is refused as such
    with RemoteClient(secured.url, credentials=Credentials(creds.key_id, creds.secret)
                      ) as client, pytest.raises(ForbiddenError, match="temporary access key"):
        client.queues.list()


def test_functions_call_the_platform_with_their_role_renewed_and_never_logged(
        secured: Server, tmp_path: Path) -> None:
    admin = secured.client()
    policy = {"Statement": [
        {"Effect": "Allow", "Action": "queues:SendMessage", "Resource": "queue:role-ok"},
        {"Effect": "Allow", "Action": "functions:Invoke", "Resource": "function:role-echo"}]}
    secured.cli("policy", "put", "narrow", json.dumps(policy))
    secured.cli("role", "create", "narrow", "--policy", "narrow")
    for queue in ("role-ok", "role-other"):
        admin.queues.create(queue)
    admin.deploy("role-echo", write_function(tmp_path / "echo", "def handler(e, c):\n"
                                             "    return {'echo': e}\n"), handler="app.handler")
    admin.deploy("role-other", write_function(tmp_path / "other", "def handler(e, c):\n"
                                              "    return 1\n"), handler="app.handler")
    caller = write_function(tmp_path / "caller", CALLER)
    missing = secured.cli("deploy", str(caller), "--name", "role-caller", "--handler",
                          "app.handler", "--role", "nope", check=False)
    assert missing.returncode == 1 and "role nope does not exist" in missing.stderr
    secured.cli("deploy", str(caller), "--name", "role-caller", "--handler", "app.handler",
                "--role", "narrow", "--timeout", "10")

    first = admin.invoke("role-caller", {"send": ["role-ok", "role-other"],
                                         "invoke": "role-echo"})
    out = first.json()
    assert out["role-ok"] == "sent"
    assert out["role-other"].startswith("ForbiddenError: role narrow is not allowed to "
                                        "queues:SendMessage on queue:role-other")
    assert out["invoked"] == {"echo": {"from": "caller"}}
    denied = admin.invoke("role-caller", {"invoke": "role-other"}).json()
    assert "not allowed to functions:Invoke on function:role-other" in denied["invoked"]
    assert admin.queues.get("role-other")["visible"] == 0

    # the same warm sandbox past half its credentials' life: renewed, and they work
    time.sleep(CREDENTIALS_S / 2 + 0.3)
    second = admin.invoke("role-caller", {"send": ["role-ok"]})
    [record] = admin.records(request_id=second.request_id)
    assert record.init_duration_ms is None  # warm: the same sandbox
    assert second.json()["key_id"] != out["key_id"]
    assert float(second.json()["expires"]) > float(out["expires"])
    assert second.json()["role-ok"] == "sent"
    assert admin.queues.get("role-ok")["visible"] == 2

    # the role cannot be deleted while a function names it
    in_use = secured.cli("role", "rm", "narrow", check=False)
    assert in_use.returncode == 1 and "execution role of role-caller" in in_use.stderr

    # no secret or session token in the logs, records, audit log or database
    with secured.http() as http:
        session = http.post("/v1/roles/narrow/assume", json={"duration_s": 900}).json()
    secret_like = [session["secret_access_key"], session["session_token"][:40]]
    records = json.dumps([r.to_dict() for r in admin.records("role-caller")])
    logs = admin.logs("role-caller")
    stored = b"".join(p.read_bytes() for p in secured.home.rglob("*")
                      if p.is_file() and p.suffix in ("", ".db", ".log", ".journal"))
    for text in (records, logs):
        assert "AWS_SECRET_ACCESS_KEY" not in text and "FBS1." not in text
    assert b"FBS1." not in stored
    assert all(s.encode() not in stored for s in secret_like)
    admin.close()


def test_the_audit_log_says_who_did_what_to_which_resource_and_how_it_ended(
        secured: Server) -> None:
    creds = new_key(secured)  # no policies: every call is denied
    with signed(secured, creds) as http:
        assert http.put("/v1/queues/audited-q").status_code == 403
    entries = json.loads(secured.cli("audit", "--principal", creds.key_id, "--json").stdout)
    assert [(e["action"], e["resource"], e["outcome"], e["status"]) for e in entries] == [
        ("queues:CreateQueue", "queue:audited-q", "denied", 403)]
    assert entries[0]["principal"] == f"key:{creds.key_id}"
    assert "not allowed" in entries[0]["message"]
    secured.cli("queue", "create", "audited-ok")
    allowed = json.loads(secured.cli("audit", "--action", "queues:CreateQueue", "--resource",
                                     "queue:audited-*", "--json").stdout)
    assert ("queue:audited-ok", "allowed") in [(e["resource"], e["outcome"]) for e in allowed]
    # unsigned requests are audited too, as denied with no principal
    httpx.get(f"{secured.url}/v1/queues")
    denied = json.loads(secured.cli("audit", "--outcome", "denied", "--json").stdout)
    assert any(e["principal"] is None and e["path"] == "/v1/queues" for e in denied)
    table = secured.cli("audit", "--since", "10m").stdout
    assert "queues:CreateQueue" in table and "denied" in table
    bad = secured.cli("audit", "--outcome", "maybe", check=False)
    assert bad.returncode == 1 and "outcome='maybe'" in bad.stderr


def test_credentials_are_found_in_env_then_home_then_the_user_file(
        secured: Server, tmp_path: Path) -> None:
    from faasbox.auth.credentials import resolve, save_admin

    admin = secured.credentials
    env = {"FAASBOX_CREDENTIALS_FILE": str(tmp_path / "user-credentials")}
    assert resolve(secured.home, env) == admin  # the home's file
    assert resolve(tmp_path / "elsewhere", env) is None
    save_admin(tmp_path / "h1", "FBKAAAAAAAAAAAAAAAAAA", "s1" * 20, secured.url, env)
    save_admin(tmp_path / "h2", "FBKBBBBBBBBBBBBBBBBBB", "s2" * 20, secured.url, env)
    (tmp_path / "h1" / "credentials").unlink()
    (tmp_path / "h2" / "credentials").unlink()
    assert resolve(tmp_path / "h2", env).key_id == "FBKBBBBBBBBBBBBBBBBBB"  # its profile
    assert resolve(tmp_path / "other", env).key_id == "FBKAAAAAAAAAAAAAAAAAA"  # default
    save_admin(tmp_path / "h3", "FBKCCCCCCCCCCCCCCCCCC", "s3" * 20, "http://127.0.0.1:1", env)
    (tmp_path / "h3" / "credentials").unlink()
    assert resolve(tmp_path / "other", env, "http://127.0.0.1:1/").key_id == (
        "FBKCCCCCCCCCCCCCCCCCC")  # the profile written for that endpoint
    explicit = {**env, "FAASBOX_ACCESS_KEY_ID": "FBKX", "FAASBOX_SECRET_ACCESS_KEY": "y"}
    assert resolve(secured.home, explicit).source == "environment"
    with pytest.raises(InvalidParameterError, match="set both"):
        resolve(None, {**env, "FAASBOX_ACCESS_KEY_ID": "FBKX"})
    with pytest.raises(InvalidParameterError, match="no such profile"):
        resolve(None, {**env, "FAASBOX_PROFILE": "missing"})
    assert os.stat(env["FAASBOX_CREDENTIALS_FILE"]).st_mode & 0o077 == 0


def test_resources_named_in_a_body_are_authorized_too(secured: Server, tmp_path: Path) -> None:
    """Copying reads its source, naming a role passes its credentials on, a trigger
    receives from its queue and invokes its function: each needs its own permission."""
    admin = secured.client()
    for bucket in ("body-mine", "body-theirs"):
        admin.objects.create_bucket(bucket)
    admin.objects.put("body-theirs", "secret.txt", b"not yours")
    admin.queues.create("body-q")
    admin.deploy("body-fn", write_function(tmp_path / "fn", "def handler(e, c):\n"
                                           "    return 1\n"), handler="app.handler")
    secured.cli("policy", "put", "body-limited", json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "objects:*",
         "Resource": ["bucket:body-mine", "object:body-mine/*"]},
        {"Effect": "Allow", "Action": ["functions:*", "triggers:*", "queues:*"],
         "Resource": ["function:body-fn", "trigger:*", "queue:body-q"]}]}))
    creds = new_key(secured, "body-limited")
    with signed(secured, creds) as http:
        copied = http.post("/v1/buckets/body-mine/copy", json={
            "source_bucket": "body-theirs", "source_key": "secret.txt", "key": "loot.txt"})
        assert copied.status_code == 403
        assert "objects:GetObject on object:body-theirs/secret.txt" in copied.text
        assert http.get("/v1/buckets/body-mine/objects/loot.txt").status_code == 404
        passed = http.patch("/v1/functions/body-fn/config", json={"role": "default"})
        assert passed.status_code == 403 and "roles:PassRole on role:default" in passed.text
        assert admin.get_function("body-fn")["role"] == "default"  # unchanged, by default
        trigger = http.post("/v1/triggers", json={"queue": "body-q", "function": "body-fn",
                                                   "enabled": False})
        assert trigger.status_code == 201, trigger.text  # both allowed
        other = http.post("/v1/triggers", json={"queue": "other-q", "function": "body-fn"})
        assert other.status_code == 403 and "queues:ReceiveMessage on queue:other-q" in (
            other.text)
        dlq = http.patch("/v1/queues/body-q", json={"dead_letter_queue": "other-q",
                                                     "max_receive_count": 3})
        assert dlq.status_code == 403 and "queues:SendMessage on queue:other-q" in dlq.text
    # a role named by a published version cannot be deleted either
    secured.cli("role", "create", "kept-by-v1")
    secured.cli("deploy", str(tmp_path / "fn"), "--name", "body-fn", "--role", "kept-by-v1",
                "--publish")
    secured.cli("deploy", str(tmp_path / "fn"), "--name", "body-fn", "--role", "default")
    kept = secured.cli("role", "rm", "kept-by-v1", check=False)
    assert kept.returncode == 1 and "body-fn:1" in kept.stderr
    admin.close()
