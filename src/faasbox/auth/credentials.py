"""Where clients find their access key: the client side of authentication.

In order: ``FAASBOX_ACCESS_KEY_ID`` / ``FAASBOX_SECRET_ACCESS_KEY`` (and
``FAASBOX_SESSION_TOKEN``); the profile ``FAASBOX_PROFILE`` names in the credentials
file; the admin key of the home folder (``<home>/credentials``, readable by whoever may
read the home); the credentials file's profile for that home, else the newest one
written for the server's endpoint, else its ``default``.
The credentials file is ``~/.faasbox/credentials`` (``FAASBOX_CREDENTIALS_FILE``), in
the AWS CLI's INI format, mode 0600. The first ``faasbox up`` of a home writes both.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from faasbox.errors import InvalidParameterError

HOME_FILE = "credentials"
DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str
    session_token: str | None = None
    source: str = ""

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(key_id={self.key_id!r}, source={self.source!r})"


def user_file(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    named = env.get("FAASBOX_CREDENTIALS_FILE")
    return Path(named) if named else Path.home() / ".faasbox" / "credentials"


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(), source=str(path))
    except FileNotFoundError:
        pass
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"{path} is not a credentials file: {exc}") from None
    return parser


def _from_section(section: configparser.SectionProxy, source: str) -> Credentials:
    key_id, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not key_id or not secret:
        raise InvalidParameterError(
            f"{source} lacks aws_access_key_id or aws_secret_access_key")
    return Credentials(key_id, secret, section.get("aws_session_token") or None, source)


def resolve(home: Path | None, environ: Mapping[str, str] | None = None,
            endpoint: str | None = None) -> Credentials | None:
    """The credentials a client uses (see the module's docstring), or None."""
    env = os.environ if environ is None else environ
    key_id, secret = env.get("FAASBOX_ACCESS_KEY_ID"), env.get("FAASBOX_SECRET_ACCESS_KEY")
    if key_id or secret:
        if not (key_id and secret):
            raise InvalidParameterError("set both FAASBOX_ACCESS_KEY_ID and "
                                        "FAASBOX_SECRET_ACCESS_KEY, or neither")
        return Credentials(key_id, secret, env.get("FAASBOX_SESSION_TOKEN") or None,
                           "environment")
    path = user_file(env)
    profile = env.get("FAASBOX_PROFILE")
    if profile:
        parser = _read(path)
        if not parser.has_section(profile):
            raise InvalidParameterError(f"FAASBOX_PROFILE={profile}: no such profile in {path}")
        return _from_section(parser[profile], f"{path} [{profile}]")
    if home is not None:
        home_file = Path(home) / HOME_FILE
        if os.access(home_file, os.R_OK):
            parser = _read(home_file)
            if parser.has_section(DEFAULT_PROFILE):
                return _from_section(parser[DEFAULT_PROFILE], str(home_file))
    parser = _read(path)
    if home is not None:
        resolved = str(Path(home).resolve())
        for name in parser.sections():
            if parser[name].get("home") == resolved:
                return _from_section(parser[name], f"{path} [{name}]")
    if endpoint is not None:
        for name in reversed(parser.sections()):  # the newest written last
            if parser[name].get("endpoint", "").rstrip("/") == endpoint.rstrip("/"):
                return _from_section(parser[name], f"{path} [{name}]")
    if parser.has_section(DEFAULT_PROFILE):
        return _from_section(parser[DEFAULT_PROFILE], f"{path} [{DEFAULT_PROFILE}]")
    return None


def from_home(home: Path) -> Credentials:
    """The admin key a home's first ``faasbox up`` wrote."""
    found = resolve(home, {"FAASBOX_CREDENTIALS_FILE": os.devnull})
    if found is None:
        raise InvalidParameterError(f"{Path(home) / HOME_FILE} holds no credentials")
    return found


def _write(path: Path, parser: configparser.ConfigParser) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        parser.write(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def save_admin(home: Path, key_id: str, secret: str, endpoint: str,
               environ: Mapping[str, str] | None = None) -> tuple[Path, Path, str]:
    """Write a new admin key to ``<home>/credentials`` and to the user's credentials
    file (as ``default`` when that profile is free or was this home's, else as a
    profile named after the home). The two paths and the profile's name."""
    resolved = str(Path(home).resolve())
    values = {"aws_access_key_id": key_id, "aws_secret_access_key": secret,
              "endpoint": endpoint, "home": resolved}
    home_parser = configparser.ConfigParser(interpolation=None)
    home_parser[DEFAULT_PROFILE] = values
    home_file = Path(resolved) / HOME_FILE
    _write(home_file, home_parser)
    path = user_file(environ)
    parser = _read(path)
    profile = DEFAULT_PROFILE
    if parser.has_section(DEFAULT_PROFILE) and parser[DEFAULT_PROFILE].get("home") != resolved:
        profile = "home " + resolved
    if parser.has_section(profile):
        parser.remove_section(profile)  # written anew: last, as the newest
    parser[profile] = values
    _write(path, parser)
    return home_file, path, profile
