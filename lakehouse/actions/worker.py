"""The action worker: drains proposals and approvals, executes outside Spark, rolls back.

One tick (every ``worker.poll``):

1. audit every new proposal of ``ops.action_requests`` (``proposed``);
2. decide what is pending: a policy without approval approves itself; an approve/reject
   command from a user whose role allows it decides; a command from anyone else is
   ``refused``; a request past its expiry — or approved only after it — is ``expired``;
3. unless the kill switch is on (``conf/actions.yaml``, ``TRIVAS_ACTIONS_KILL_SWITCH`` or
   ``trivas actions kill-switch on``), execute what is approved: read the target's state,
   audit ``executing`` with it *before* the call, call the platform with the request's
   idempotency key, audit ``executed`` (the platform's answer) or ``failed``. A worker that
   died mid-call finds ``executing`` without an outcome and calls again with the same key:
   the platform answers with what it did the first time. A dry-run request records what it
   would do (``dry_run``) and calls nothing;
4. carry out rollback commands on executed requests: restore the recorded previous state
   (its own idempotency key ``<key>:rollback``), audit ``rolled_back`` or ``rollback_failed``.

The worker is the only writer of ``ops.audit_log``; a slow platform slows this loop, never a
streaming query.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd

from lakehouse.actions.config import ActionsConfig, load_actions_config
from lakehouse.actions.executors import ROLLBACK_SUFFIX, Executors
from lakehouse.actions.proposals import idempotency_key
from lakehouse.actions.roles import APPROVE as MAY_APPROVE
from lakehouse.actions.roles import KILL_SWITCH, Account, allows, load_accounts, role_of
from lakehouse.actions.roles import ROLLBACK as MAY_ROLL_BACK
from lakehouse.actions.store import (
    APPROVE,
    KILL_OFF,
    KILL_ON,
    REJECT,
    ROLLBACK,
    Command,
    CommandLog,
    audit_log,
    audit_row,
    requests_log,
)
from lakehouse.config import Settings

log = logging.getLogger("trivas.actions.worker")

PROPOSED, APPROVED, REJECTED, EXPIRED, REFUSED = "proposed", "approved", "rejected", "expired", "refused"
EXECUTING, EXECUTED, FAILED, DRY_RUN = "executing", "executed", "failed", "dry_run"
ROLLED_BACK, ROLLBACK_FAILED = "rolled_back", "rollback_failed"
DECIDED = (APPROVED, REJECTED, EXPIRED)
OUTCOMES = (EXECUTED, FAILED, DRY_RUN)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Trail:
    """What the audit log says about one request: its events and their rows."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)

    def has(self, *events: str) -> bool:
        return any(e in self.events for e in events)

    @property
    def status(self) -> str:
        """The request's state: the furthest step recorded."""
        for event in (ROLLED_BACK, EXECUTED, FAILED, DRY_RUN, EXECUTING, REJECTED, EXPIRED, APPROVED, PROPOSED):
            if event in self.events:
                return event
        return "new"


def trails(audit: pd.DataFrame) -> dict[str, Trail]:
    """The audit log grouped by request (pure)."""
    out: dict[str, Trail] = {}
    for row in audit.sort_values("recorded_at", kind="stable").to_dict("records"):
        if row["request_id"] is None or row["request_id"] != row["request_id"]:
            continue
        trail = out.setdefault(row["request_id"], Trail())
        trail.events.setdefault(row["event"], row)
        trail.ids.add(row["audit_id"])
    return out


def kill_switch_on(commands: list[Command], accounts: dict[str, Account]) -> bool:
    """The latest kill-switch command of an admin (off when there is none)."""
    state = False
    for command in commands:
        if command.kind in (KILL_ON, KILL_OFF) and allows(role_of(accounts, command.actor), KILL_SWITCH):
            state = command.kind == KILL_ON
    return state


def decision(request: dict[str, Any], commands: list[Command], accounts: dict[str, Account]) -> tuple[Command | None, list[Command]]:
    """The first approve/reject of a request by an allowed user, and the refused ones before it."""
    refused = []
    for command in commands:
        if command.request_id != request["request_id"] or command.kind not in (APPROVE, REJECT):
            continue
        if allows(role_of(accounts, command.actor), MAY_APPROVE):
            return command, refused
        refused.append(command)
    return None, refused


def _expires(request: dict[str, Any]) -> datetime | None:
    value = request.get("expires_at")
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def judge(request: dict[str, Any], commands: list[Command], accounts: dict[str, Account], now: datetime) -> list[dict[str, Any]]:
    """The audit rows that decide a pending request now (pure; empty while it waits)."""
    chosen, refused = decision(request, commands, accounts)
    rows = [audit_row(REFUSED, c.actor, request, step=c.command_id, detail=f"{c.kind} refused: {role_of(accounts, c.actor)} may not approve", at=now) for c in refused]
    expires_at = _expires(request)
    if not request["needs_approval"]:
        return rows + [audit_row(APPROVED, f"policy:{request['policy']}", request, detail="no approval required", at=now)]
    if chosen is not None and (expires_at is None or chosen.created_at <= expires_at):
        event = APPROVED if chosen.kind == APPROVE else REJECTED
        return rows + [audit_row(event, chosen.actor, request, detail=chosen.reason, at=now)]
    if expires_at is not None and (now > expires_at or chosen is not None):
        late = f" ({chosen.kind} by {chosen.actor} came after it)" if chosen is not None else ""
        return rows + [audit_row(EXPIRED, "worker", request, detail=f"approval expired at {expires_at.isoformat()}{late}", at=now)]
    return rows


class ActionWorker:
    """Executes approved proposals and rollbacks (see the module docstring)."""

    def __init__(self, settings: Settings, config: ActionsConfig | None = None, clock: Callable[[], datetime] = utc_now,
                 platform_url: str | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.config = config or load_actions_config()
        self.clock = clock
        self.requests = requests_log(settings)
        self.audit = audit_log(settings)
        self.commands = CommandLog(settings)
        self.executors = Executors(self.config, platform_url)
        self.accounts = load_accounts(self.config.accounts_path())

    # -- one tick

    def tick(self, now: datetime | None = None) -> dict[str, int]:
        """Audit, decide, execute and roll back what is due; returns counts per event."""
        now = now or self.clock()
        requests = self.requests.read()
        proposals = requests[requests["status"] == PROPOSED].to_dict("records")
        commands = self.commands.commands()
        done: dict[str, int] = {}
        history = trails(self.audit.read())
        rows = [audit_row(PROPOSED, f"policy:{r['policy']}", r, detail=r["reason"], at=now)
                for r in proposals if r["request_id"] not in history]  # fmt: skip
        rows += self._orphans(commands, {r["request_id"] for r in proposals}, now)
        for request in proposals:
            trail = history.get(request["request_id"], Trail())
            if not trail.has(*DECIDED):
                rows += self._decide(request, commands, now)
        self._record(rows, done)
        if self.killed(commands):
            return done
        history = trails(self.audit.read())
        for request in proposals:
            trail = history.get(request["request_id"], Trail())
            if trail.has(APPROVED) and not trail.has(*OUTCOMES):
                self._execute(request, trail, done)
        for request in proposals:
            self._roll_back(request, history.get(request["request_id"], Trail()), commands, done)
        return done

    def killed(self, commands: list[Command] | None = None) -> bool:
        """Whether the kill switch is on (file, environment or an admin's command)."""
        return self.config.killed() or kill_switch_on(commands if commands is not None else self.commands.commands(), self.accounts)

    def _decide(self, request: dict[str, Any], commands: list[Command], now: datetime) -> list[dict[str, Any]]:
        refusal = self._refusal(request)
        if refusal is not None:
            return [audit_row(REFUSED, "worker", request, detail=refusal, at=now),
                    audit_row(REJECTED, "worker", request, detail="refused before any decision", at=now)]  # fmt: skip
        return judge(request, commands, self.accounts, now)

    def _refusal(self, request: dict[str, Any]) -> str | None:
        """Why a request cannot be acted on at all (an unknown policy, a forged key), or None."""
        try:
            self.config.policy(request["policy"])
        except KeyError:
            return f"unknown policy {request['policy']!r}"
        window = pd.Timestamp(request["window_start"]).to_pydatetime()
        if request["request_id"] != idempotency_key(request["policy"], request["target"], window):
            return "forged idempotency key: it is not the key of (policy, target, window)"
        return None

    def _orphans(self, commands: list[Command], known: set[str], now: datetime) -> list[dict[str, Any]]:
        """Commands about requests that do not exist (a forged or mistyped id): refused, audited."""
        rows = []
        for command in commands:
            if command.request_id is not None and command.request_id not in known:
                detail = f"{command.kind} of unknown request {command.request_id!r}"
                rows.append(audit_row(REFUSED, command.actor, None, step=command.command_id, detail=detail, at=now))
        return rows

    def _record(self, rows: list[dict[str, Any]], done: dict[str, int]) -> None:
        """Append audit rows (those already there are skipped); ``done`` counts the new ones."""
        for event, count in self.audit.insert_new_by(rows, "event").items():
            done[event] = done.get(event, 0) + count

    def _executor(self, request: dict[str, Any]):  # noqa: ANN202 - Executor, or an error message
        try:
            return self.executors.for_policy(self.config.policy(request["policy"]), json.loads(request["evidence"]))
        except LookupError as error:  # e.g. the escalation receiver's secret is not set
            return f"no executor: {error}"

    def _execute(self, request: dict[str, Any], trail: Trail, done: dict[str, int]) -> None:
        key, target = request["request_id"], request["target"]
        executor = self._executor(request)
        if isinstance(executor, str):
            self._record([audit_row(FAILED, "worker", request, detail=executor, key=key)], done)
            return
        policy = self.config.policy(request["policy"])
        if request["dry_run"] or self.config.dry_run_for(policy):
            self._record([audit_row(DRY_RUN, "worker", request, detail=self._plan(executor, target, request["reason"]), key=key)], done)
            return
        if trail.has(EXECUTING):  # in doubt: the same call again, the platform replays its answer
            previous = json.loads(trail.events[EXECUTING]["previous_state"])
        else:
            try:
                previous = executor.state(target)
            except (httpx.HTTPError, KeyError, LookupError) as error:
                self._record([audit_row(FAILED, "worker", request, detail=f"could not read the state of {target}: {type(error).__name__}", key=key)], done)
                return
            self._record([audit_row(EXECUTING, "worker", request, previous=previous, key=key)], done)
        outcome = executor.apply(target, previous, request["reason"], key)
        event = EXECUTED if outcome.ok else FAILED
        detail = f"{outcome.attempts} attempt(s)" + (f": {outcome.detail}" if outcome.detail else "")
        if outcome.code is None and self._landed(executor, target, previous, request["reason"]):
            # No answer, yet the change is there (the platform did it, its answer was lost).
            event, detail = EXECUTED, detail + "; the change is visible on the platform"
        self._record([audit_row(event, "worker", request, detail=detail, previous=previous, response=outcome.response,
                                code=outcome.code, key=key)], done)  # fmt: skip

    @staticmethod
    def _landed(executor, target: str, previous: dict[str, Any], reason: str) -> bool:  # noqa: ANN001 - Executor
        try:
            return executor.landed(target, previous, reason)
        except (httpx.HTTPError, KeyError, LookupError):
            return False

    @staticmethod
    def _plan(executor, target: str, reason: str) -> str:  # noqa: ANN001 - Executor
        try:
            state = executor.state(target)
        except (httpx.HTTPError, KeyError, LookupError):
            state = {"state": "unknown"}
        return "would " + executor.plan(target, state, reason)

    def _roll_back(self, request: dict[str, Any], trail: Trail, commands: list[Command], done: dict[str, int]) -> None:
        wanted = [c for c in commands if c.kind == ROLLBACK and c.request_id == request["request_id"]]
        if not wanted or trail.has(ROLLED_BACK):
            return
        rows = []
        for command in wanted:
            if not allows(role_of(self.accounts, command.actor), MAY_ROLL_BACK):
                rows.append(audit_row(REFUSED, command.actor, request, step=command.command_id, detail="rollback refused: needs approver"))
                continue
            if not trail.has(EXECUTED):
                rows.append(audit_row(REFUSED, command.actor, request, step=command.command_id, detail=f"rollback refused: request is {trail.status}, not executed"))
                continue
            if f"{request['request_id']}:{ROLLBACK_FAILED}:{command.command_id}" in trail.ids:
                continue  # this command's rollback failed: a new command tries again
            executor = self._executor(request)
            if isinstance(executor, str):
                rows.append(audit_row(ROLLBACK_FAILED, command.actor, request, step=command.command_id, detail=executor))
                continue
            previous = json.loads(trail.events[EXECUTING]["previous_state"])
            outcome = executor.restore(request["target"], previous, request["request_id"])
            key = request["request_id"] + ROLLBACK_SUFFIX
            if outcome.ok:
                rows.append(audit_row(ROLLED_BACK, command.actor, request, detail=command.reason, previous=previous,
                                      response=outcome.response, code=outcome.code, key=key))  # fmt: skip
                break
            rows.append(audit_row(ROLLBACK_FAILED, command.actor, request, step=command.command_id, detail=outcome.detail,
                                  previous=previous, response=outcome.response, code=outcome.code, key=key))  # fmt: skip
        self._record(rows, done)

    # -- running

    def run(self, stop: threading.Event) -> None:
        """Tick every ``worker.poll`` until ``stop`` is set (a failing tick is logged and retried)."""
        log.info("action worker started (platform %s)", self.executors.http.base_url)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad tick must not stop the worker
                log.exception("action worker tick failed")
            stop.wait(self.config.worker.poll.total_seconds())

    def close(self) -> None:
        self.executors.close()
