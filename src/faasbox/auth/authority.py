"""The platform's authority: who signed a request, and whether they may do what it asks.

One object over the access keys, policies, roles, temporary credentials and the audit
log, so the server and the sandboxes' credentials share one view. What it derives per
request (a key's secret, a principal's statements) is cached and dropped whenever a
key, policy or role changes: every change goes through this object, in this process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faasbox.auth import credentials, policies, roles, sigv4
from faasbox.auth.audit import AuditLog
from faasbox.auth.keys import AccessKey, KeyStore, load_master_key
from faasbox.auth.sessions import SESSION_KEY_PREFIX, Session, SessionIssuer
from faasbox.errors import ForbiddenError, InvalidParameterError
from faasbox.stores.database import Database

AUDIT_FILE = "audit.log"


@dataclass(frozen=True)
class Principal:
    """Who signed a request: a long-lived key, or a role's temporary credentials."""

    key_id: str
    #: "key:<key id>" or "role:<name>": what policies are attached to.
    name: str
    role: str | None = None
    session: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"access_key_id": self.key_id, "principal": self.name, "role": self.role,
                "session_name": self.session}


def key_principal(key_id: str) -> str:
    return f"key:{key_id}"


class Authority:
    def __init__(self, db: Database, home: Path) -> None:
        master = load_master_key(home)
        self.keys = KeyStore(db, master)
        self.policies = policies.PolicyStore(db)
        self.roles = roles.RoleStore(db, self.policies)
        self.sessions = SessionIssuer(master)
        self.audit = AuditLog(Path(home) / AUDIT_FILE)
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}
        self._statements: dict[str, tuple[policies.Statement, ...]] = {}
        self._roles: set[str] = set()  # roles known to exist: a session's, per call

    def changed(self) -> None:
        """Forget what was derived: a key, policy or role changed."""
        with self._lock:
            self._secrets.clear()
            self._statements.clear()
            self._roles.clear()

    # -- authentication --------------------------------------------------------------

    def authenticate(self, method: str, url: str, headers: Mapping[str, str],
                     body: bytes | None = None) -> Principal:
        """The principal that signed this request (the body's hash is checked here when
        ``body`` is given, else by the caller as it streams); ForbiddenError saying why
        not."""
        token = next((v for k, v in headers.items() if k.lower() == "x-amz-security-token"),
                     None)
        found: list[Session] = []

        def secret_for(key_id: str) -> str:
            if token is not None:
                session = self.sessions.check(token, key_id)
                if session.role not in self._roles:  # sandboxes call with these: no read
                    if not self.roles.exists(session.role):  # per call once it is known
                        raise ForbiddenError(f"the role {session.role} of this session "
                                             "was deleted")
                    with self._lock:
                        self._roles.add(session.role)
                found.append(session)
                return session.secret
            if key_id.startswith(SESSION_KEY_PREFIX):
                raise ForbiddenError(f"{key_id} is a temporary access key: sign with its "
                                     "session token too (X-Amz-Security-Token)")
            secret = self._secrets.get(key_id)
            if secret is None:
                secret = self.keys.secret_for(key_id)
                with self._lock:
                    self._secrets[key_id] = secret
            return secret

        key_id = sigv4.verify(method, url, headers, body, secret_for)
        if found:
            return Principal(key_id, roles.principal(found[0].role), found[0].role,
                             found[0].name)
        return Principal(key_id, key_principal(key_id))

    # -- authorization ---------------------------------------------------------------

    def statements(self, principal: str) -> tuple[policies.Statement, ...]:
        cached = self._statements.get(principal)
        if cached is None:
            cached = self.policies.statements(principal)
            with self._lock:
                self._statements[principal] = cached
        return cached

    def knows(self, principal: Principal) -> bool:
        """Whether ``principal``'s statements are cached (authorizing it reads nothing)."""
        return principal.name in self._statements

    def authorize(self, principal: Principal, action: str, resource: str) -> None:
        """ForbiddenError unless ``principal``'s policies allow ``action`` on
        ``resource``."""
        if not policies.allowed(self.statements(principal.name), action, resource):
            who = (f"role {principal.role}" if principal.role
                   else f"access key {principal.key_id}")
            raise ForbiddenError(f"{who} is not allowed to {action} on {resource}")

    # -- keys, policies, roles -------------------------------------------------------

    def create_key(self, description: str = "",
                   attach: list[str] | None = None) -> tuple[AccessKey, str]:
        for policy in attach or []:
            self.policies.get(policy)
        key, secret = self.keys.create(description)
        for policy in attach or []:
            self.policies.attach(key_principal(key.key_id), policy)
        return key, secret

    def delete_key(self, key_id: str) -> None:
        self.keys.delete(key_id)
        self.policies.detach_all(key_principal(key_id))
        self.changed()

    def describe_key(self, key: AccessKey) -> dict[str, Any]:
        return {**key.to_dict(),
                "policies": self.policies.attached(key_principal(key.key_id))}

    def mutate(self, change: Callable[[], Any]) -> Any:
        """Run a change to keys, policies or roles, then forget the caches."""
        try:
            return change()
        finally:
            self.changed()

    # -- temporary credentials -------------------------------------------------------

    def assume_role(self, role: str, duration_s: int = roles.SESSION_DEFAULT_S,
                    session_name: str = "") -> Session:
        """Temporary credentials of ``role`` for ``duration_s`` (900-43,200 s, at most
        the role's maximum)."""
        described = self.roles.get(role)
        if (isinstance(duration_s, bool) or not isinstance(duration_s, int)
                or not roles.SESSION_MIN_S <= duration_s <= described["max_session_s"]):
            raise InvalidParameterError(
                f"duration_s={duration_s!r} is out of range {roles.SESSION_MIN_S}-"
                f"{described['max_session_s']} (the role's maximum session)")
        if not isinstance(session_name, str) or len(session_name) > 64:
            raise InvalidParameterError("session_name must be text of at most 64 characters")
        return self.sessions.issue(role, duration_s, session_name)

    def sandbox_credentials(self, role: str, duration_s: float, sandbox: str) -> Session:
        """A sandbox's credentials: its function's role, for ``duration_s`` (the
        platform's setting; renewed before they expire)."""
        return self.sessions.issue(role, duration_s, sandbox)

    # -- the home's admin key --------------------------------------------------------

    def ensure_admin(self, home: Path, endpoint: str,
                     environ: Mapping[str, str] | None = None
                     ) -> tuple[AccessKey, Path, Path, str] | None:
        """At a home's first start: an admin key (AdministratorAccess), written to
        ``<home>/credentials`` and the user's credentials file. None when the home has
        its key already."""
        if (Path(home) / credentials.HOME_FILE).exists():
            return None
        key, secret = self.create_key("admin (made by the first faasbox up)",
                                      [policies.ADMINISTRATOR])
        home_file, user_file, profile = credentials.save_admin(home, key.key_id, secret,
                                                               endpoint, environ)
        return key, home_file, user_file, profile

    def close(self) -> None:
        self.audit.close()

