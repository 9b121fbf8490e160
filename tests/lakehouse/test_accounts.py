"""Local accounts: scrypt hashes (never the password), roles in order, the demo's accounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.accounts import (
    ADMIN,
    APPROVER,
    VIEWER,
    allows,
    authenticate,
    demo_accounts,
    load_accounts,
    role_of,
    save_account,
)


@pytest.mark.unit
def test_passwords_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    save_account(path, "ann", APPROVER, "s3cret-pass")
    save_account(path, "bob@example.com", ADMIN, None)  # an OIDC user: no password
    assert "s3cret-pass" not in path.read_text() and oct(path.stat().st_mode)[-3:] == "600"
    accounts = load_accounts(path)
    assert authenticate(accounts, "ann", "s3cret-pass") == accounts["ann"]
    assert authenticate(accounts, "ann", "wrong") is None
    assert authenticate(accounts, "nobody", "s3cret-pass") is None
    assert authenticate(accounts, "bob@example.com", "") is None  # OIDC accounts have no password
    assert role_of(accounts, "bob@example.com") == ADMIN and role_of(accounts, "eve@example.com") == VIEWER


@pytest.mark.unit
@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [(VIEWER, VIEWER, True), (VIEWER, APPROVER, False), (APPROVER, APPROVER, True), (APPROVER, ADMIN, False),
     (ADMIN, APPROVER, True), ("intruder", VIEWER, False)],
)  # fmt: skip
def test_roles_are_ordered(role: str, needed: str, allowed: bool) -> None:
    assert allows(role, needed) is allowed


@pytest.mark.unit
def test_the_demo_creates_its_accounts_once(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    passwords = demo_accounts(path)
    accounts = load_accounts(path)
    assert {a.role for a in accounts.values()} == {VIEWER, APPROVER, ADMIN}
    assert all(authenticate(accounts, role, pw) for role, pw in passwords.items())
    assert demo_accounts(path) == {}  # existing accounts are kept, no password shown again
