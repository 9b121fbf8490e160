"""Who may do what in the app: roles and the local account file.

Roles are ordered: a ``viewer`` reads, an ``approver`` also acknowledges alerts (and, with the
actions issue, approves actions), an ``admin`` also sees the accounts. The account file
(``app.accounts_file``, YAML) holds each account's role and an scrypt hash of its password —
never the password. With OIDC (``st.login``), the same file maps a person's e-mail to a role;
anyone it does not name is a viewer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from lakehouse.config import Settings

VIEWER, APPROVER, ADMIN = "viewer", "approver", "admin"
ROLES = (VIEWER, APPROVER, ADMIN)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Account:
    """One account: a name (a login, or an e-mail for OIDC users) and its role."""

    name: str
    role: str
    password_hash: str | None = None


def accounts_path(settings: Settings) -> Path:
    """The account file: ``app.accounts_file``, by default ``<paths.var>/app/accounts.yaml``."""
    if settings.app.accounts_file:
        return settings.path(settings.app.accounts_file)
    return settings.path(settings.paths.var) / "app" / "accounts.yaml"


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` includes what ``needed`` may do (viewer < approver < admin)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64) of a password."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    encode = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, encoded: str | None) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time)."""
    try:
        scheme, n, r, p, salt, digest = (encoded or "").split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def load_accounts(path: Path) -> dict[str, Account]:
    """The accounts of the file by name (none when it does not exist)."""
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    accounts = {}
    for name, entry in (raw.get("accounts") or {}).items():
        role = entry.get("role", VIEWER)
        if role not in ROLES:
            raise ValueError(f"{path}: account {name!r} has role {role!r}; roles: {ROLES}")
        accounts[str(name)] = Account(str(name), role, entry.get("password_hash"))
    return accounts


def save_account(path: Path, name: str, role: str, password: str | None) -> Account:
    """Add or replace an account (the file is readable by its owner only)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {ROLES}")
    accounts = load_accounts(path)
    account = Account(name, role, hash_password(password) if password else None)
    accounts[name] = account
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {
        a.name: {"role": a.role, **({"password_hash": a.password_hash} if a.password_hash else {})}
        for a in accounts.values()
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump({"accounts": entries}, sort_keys=True))
    temporary.chmod(0o600)
    temporary.replace(path)
    return account


def authenticate(accounts: dict[str, Account], name: str, password: str) -> Account | None:
    """The account when the password matches its hash, else None."""
    account = accounts.get(name)
    if account is None:
        verify_password(password, hash_password("timing"))  # same work for unknown names
        return None
    return account if verify_password(password, account.password_hash) else None


def role_of(accounts: dict[str, Account], email: str | None) -> str:
    """The role of an OIDC user: the account named by their e-mail, else viewer."""
    account = accounts.get(email or "")
    return account.role if account else VIEWER


def demo_accounts(path: Path) -> dict[str, str]:
    """The playground's accounts (viewer, approver, admin) with fresh random passwords, when
    the file does not exist yet; returns the passwords to print once (only hashes are kept)."""
    if path.exists():
        return {}
    passwords = {role: secrets.token_urlsafe(9) for role in ROLES}
    for role, password in passwords.items():
        save_account(path, role, role, password)
    return passwords
