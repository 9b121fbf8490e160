"""The Actions page (Streamlit ``AppTest``): a viewer cannot approve, an approver can, and the
worker then executes on the sandbox platform; rollback from the page restores the state."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lakehouse.accounts import load_accounts, save_account
from lakehouse.actions.engine import ProposalBook
from lakehouse.actions.store import CommandLog
from tests.actions.conftest import IDLE, idle_evidence
from tests.app.conftest import app_process, signed_in


@pytest.fixture()
def page_env(lake, accounts, monkeypatch):  # noqa: ANN001, ANN201
    """The app and the worker share one account file (the people who approve in the app are
    the ones the worker checks); each account gets a password to sign in with."""
    for name, account in load_accounts(accounts).items():
        save_account(accounts, name, account.role, f"pw-{name}")
    environ = {"TRIVAS_ENV": "test", "TRIVAS_PATHS__VAR": lake.paths.var, "TRIVAS_TABLES__ROOT": lake.tables.root,
               "TRIVAS_TABLES__CHECKPOINTS": lake.tables.checkpoints, "TRIVAS_ACTIONS_ACCOUNTS_FILE": str(accounts),
               "TRIVAS_APP__ACCOUNTS_FILE": str(accounts)}  # fmt: skip
    with app_process(environ, monkeypatch):
        yield lake


def open_as(account: str) -> AppTest:
    """Sign in through the app's form, then open the Actions page."""
    app = signed_in(account, f"pw-{account}")
    app.switch_page("views/actions.py").run()
    assert not app.exception
    return app


def test_a_viewer_cannot_approve_on_the_page_and_an_approver_can(page_env, config, worker, platform):
    (request,) = [r for r in ProposalBook(page_env).evaluate(config, idle_evidence()).rows if r.policy == "pause-idle-campaign"]
    key = request.request_id
    worker.tick()

    viewer = open_as("viola")
    assert viewer.button(key=f"approve-{key}").disabled
    assert "approving needs the approver role" in [c.value for c in viewer.caption]
    assert CommandLog(page_env).commands() == []

    approver = open_as("april")
    approver.text_input(key=f"reason-{key}").input("spend with no sales").run()
    approver.button(key=f"approve-{key}").click().run()
    assert not approver.error
    worker.tick()
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "paused"

    approver = open_as("april")
    assert approver.button(key=f"rollback-{key}")  # executed: offered for rollback
    approver.text_input(key=f"rb-reason-{key}").input("false alarm").run()
    approver.button(key=f"rollback-{key}").click().run()
    worker.tick()
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "active"
    assert [(c.kind, c.actor, c.source) for c in CommandLog(page_env).commands()] == [("approve", "april", "app"), ("rollback", "april", "app")]


def test_only_an_admin_sees_the_kill_switch(page_env):
    assert not [b for b in open_as("april").button if b.key == "kill"]
    assert [b for b in open_as("adam").button if b.key == "kill"]
