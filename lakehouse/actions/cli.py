"""``trivas actions …``: list, show, approve, reject, roll back, the kill switch, the worker
and the sandbox platform."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import signal
import threading

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lakehouse.config import Settings, load_settings

actions_app = typer.Typer(help="Automated actions behind guardrails (conf/actions.yaml).", no_args_is_help=True)
console = Console()
USER_ENV = "TRIVAS_USER"


def _settings(env: str | None) -> Settings:
    return load_settings(env)


def _user(user: str | None) -> str:
    """``--user``, else ``TRIVAS_USER``, else the login name: looked up in the account file."""
    return user or os.environ.get(USER_ENV) or getpass.getuser()


def _command(kind: str, request_id: str | None, user: str | None, reason: str | None, env: str | None) -> str:
    from lakehouse.actions.approvals import UnknownRequest, command
    from lakehouse.actions.config import load_actions_config
    from lakehouse.actions.roles import NotAllowed

    try:
        return command(_settings(env), load_actions_config(), kind, _user(user), request_id, reason)
    except (NotAllowed, UnknownRequest, ValueError) as error:
        console.print(f"[red]refused[/]: {error}")
        raise typer.Exit(2) from None


USER = typer.Option(None, "--user", help=f"who you are (default ${USER_ENV} or your login); roles from the account file")


@actions_app.command("list")
def list_requests(
    state: str = typer.Option(None, help="only this state (pending, executed, …)"),
    limit: int = typer.Option(30),
    env: str = typer.Option(None),
) -> None:
    """Proposed actions, newest first, with their state."""
    from lakehouse.actions.approvals import overview

    frame = overview(_settings(env))
    if state:
        frame = frame[frame["state"] == state]
    table = Table("request", "policy", "target", "state", "confidence", "reason", "proposed (UTC)")
    for row in frame.head(limit).itertuples(index=False):
        table.add_row(row.request_id[:16], row.policy, row.target, row.state, f"{row.confidence:.2f}", row.reason[:50],
                      f"{row.proposed_at:%Y-%m-%d %H:%M:%S}")  # fmt: skip
    console.print(table if len(frame) else "no actions proposed yet")


@actions_app.command("show")
def show(request_id: str = typer.Argument(..., help="a request id or an unambiguous prefix"), env: str = typer.Option(None)) -> None:
    """One request: its evidence and its audit trail."""
    from lakehouse.actions.approvals import UnknownRequest, find_request, overview, trail_of

    settings = _settings(env)
    try:
        request = find_request(settings, request_id)
    except UnknownRequest as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    state = overview(settings).set_index("request_id").loc[request["request_id"], "state"]
    console.print(f"[bold]{request['request_id']}[/]  {request['policy']} → {request['action']} {request['target']}  state: {state}")
    console.print(f"reason: {request['reason']} · confidence {request['confidence']:.2f} · dry run {request['dry_run']}")
    console.print(f"proposed {request['proposed_at']} · approval {'required, expires ' + str(request['expires_at']) if request['needs_approval'] else 'not required'}")
    console.print("evidence: " + escape(json.dumps(json.loads(request["evidence"]), indent=1, sort_keys=True)))
    table = Table("when (UTC)", "event", "actor", "detail", "previous state", "response")
    for row in trail_of(settings, request["request_id"]).itertuples(index=False):
        table.add_row(f"{row.recorded_at:%H:%M:%S}", row.event, row.actor, row.detail or "", row.previous_state or "",
                      (f"{row.response_code} " if row.response_code == row.response_code and row.response_code is not None else "") + (row.response or "")[:60])  # fmt: skip
    console.print(table)


@actions_app.command("approve")
def approve(request_id: str, reason: str = typer.Option("", help="why"), user: str = USER, env: str = typer.Option(None)) -> None:
    """Approve a pending action (role approver or admin); the worker executes it within one poll."""
    from lakehouse.actions.store import APPROVE

    key = _command(APPROVE, request_id, user, reason or None, env)
    console.print(f"approved {key}; the action worker executes it within one poll")


@actions_app.command("reject")
def reject(request_id: str, reason: str = typer.Option(..., help="why"), user: str = USER, env: str = typer.Option(None)) -> None:
    """Reject a pending action (role approver or admin)."""
    from lakehouse.actions.store import REJECT

    console.print(f"rejected {_command(REJECT, request_id, user, reason, env)}")


@actions_app.command("rollback")
def rollback(request_id: str, reason: str = typer.Option(..., help="why"), user: str = USER, env: str = typer.Option(None)) -> None:
    """Restore the state an executed action changed (role approver or admin)."""
    from lakehouse.actions.store import ROLLBACK

    key = _command(ROLLBACK, request_id, user, reason, env)
    console.print(f"rollback of {key} queued; the action worker restores the recorded previous state within one poll")


@actions_app.command("kill-switch")
def kill_switch(state: str = typer.Argument(..., help="on | off"), reason: str = typer.Option(..., help="why"),
                user: str = USER, env: str = typer.Option(None)) -> None:  # fmt: skip
    """Stop (on) or allow (off) every execution (role admin); takes effect within one poll."""
    from lakehouse.actions.store import KILL_OFF, KILL_ON

    if state not in ("on", "off"):
        raise typer.BadParameter("on or off")
    _command(KILL_ON if state == "on" else KILL_OFF, None, user, reason, env)
    console.print(f"kill switch {state}")


@actions_app.command("work")
def work(
    once: bool = typer.Option(False, "--once", help="one tick, then exit"),
    platform_url: str = typer.Option(None, help="the commerce platform (default: conf/actions.yaml platform)"),
    env: str = typer.Option(None),
) -> None:
    """Run the action worker: approvals, expiry, execution, rollback (Ctrl-C stops it)."""
    from lakehouse.actions.worker import ActionWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = ActionWorker(_settings(env), platform_url=platform_url)
    try:
        if once:
            console.print(worker.tick())
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            worker.run(stop)
    finally:
        worker.close()


@actions_app.command("sandbox")
def sandbox(port: int = typer.Option(8766), host: str = typer.Option("127.0.0.1")) -> None:
    """Serve the sandbox commerce platform (campaigns, bids, storefront, review queue, incidents)."""
    from lakehouse.actions.sandbox import main

    main(["--host", host, "--port", str(port)])


