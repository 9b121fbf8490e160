"""``conf/actions.yaml``: the policies and the guardrails around them (typed, validated once).

A policy names its trigger (an alert kind, a model's score, or a rule over gold/silver), the
action it proposes, which targets it may touch, the confidence it needs, whether a human must
approve, and its limits: actions per hour, the share of targets it may touch per day, a
cool-down per target and the expiry of a pending approval. Unknown keys, unknown triggers and
unknown actions are refused when the file is loaded, never at the moment of acting.
"""

from __future__ import annotations

import fnmatch
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from lakehouse import home
from lakehouse.alerts.config import parse_duration, resolve_secret

KILL_SWITCH_ENV = "TRIVAS_ACTIONS_KILL_SWITCH"

PAUSE_CAMPAIGN, ADJUST_BID, SURFACE_PRODUCT = "pause_campaign", "adjust_bid", "surface_product"
QUEUE_REFUND_REVIEW, ESCALATE_INCIDENT = "queue_refund_review", "escalate_incident"
ACTION_TYPES = (PAUSE_CAMPAIGN, ADJUST_BID, SURFACE_PRODUCT, QUEUE_REFUND_REVIEW, ESCALATE_INCIDENT)
IDLE_CAMPAIGN_SPEND, BACK_IN_STOCK = "idle_campaign_spend", "back_in_stock"

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertTrigger(_Strict):
    """Fires on a firing alert of ``gold.alerts`` about ``kpi`` (any of ``rules``; none: any rule).
    Confidence: the alert's confidence."""

    kind: Literal["alert"]
    kpi: str
    rules: tuple[str, ...] = ()


class ModelScoreTrigger(_Strict):
    """Fires on a scored row of ``table`` written by the model ``model@alias`` (``gold.refund_risk``).
    Confidence: the score. ``window``: how far back a trigger evaluation looks."""

    kind: Literal["model_score"]
    model: str
    alias: str = "champion"
    table: str = "gold.refund_risk"
    window: Duration = timedelta(minutes=15)


class RuleTrigger(_Strict):
    """A rule over silver: ``idle_campaign_spend`` (spend >= ``min_spend`` with no order in
    ``window``) or ``back_in_stock`` (a SKU restocked from zero within ``window``).
    Confidence: 1.0 (a rule is certain of what it measured)."""

    kind: Literal["rule"]
    rule: Literal["idle_campaign_spend", "back_in_stock"]
    window: Duration = timedelta(minutes=30)
    min_spend: float = 0.0


Trigger = Annotated[AlertTrigger | ModelScoreTrigger | RuleTrigger, Field(discriminator="kind")]


class TargetSelector(_Strict):
    """Which targets (campaign ids, SKUs, order ids, alert ids) a policy may touch (a glob)."""

    match: str = "*"

    def selects(self, target: str) -> bool:
        return fnmatch.fnmatchcase(target, self.match)


class Limits(_Strict):
    """Blast radius: at most ``max_per_hour`` actions an hour, and at most ``max_share_per_day``
    of the known targets (active campaigns, products, …) touched in a day."""

    max_per_hour: int = Field(10, ge=0)
    max_share_per_day: float = Field(1.0, ge=0.0, le=1.0)


class Policy(_Strict):
    """One policy of ``conf/actions.yaml``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    trigger: Trigger
    action: Literal["pause_campaign", "adjust_bid", "surface_product", "queue_refund_review", "escalate_incident"]
    target: TargetSelector = TargetSelector()
    params: dict[str, Any] = {}
    confidence_threshold: float = Field(0.0, ge=0.0, le=1.0)
    approval: Literal["required", "auto"] = "required"
    approval_expiry: Duration = timedelta(minutes=30)
    cooldown: Duration = timedelta(hours=1)
    limits: Limits = Limits()
    dry_run: bool = False

    @property
    def needs_approval(self) -> bool:
        return self.approval == "required"

    @model_validator(mode="after")
    def _bid_bounds(self) -> Policy:
        if self.action == ADJUST_BID:
            p = self.params
            if not {"step_pct", "min_bid", "max_bid"} <= set(p) or not float(p["min_bid"]) <= float(p["max_bid"]):
                raise ValueError(f"policy {self.name}: adjust_bid needs params step_pct, min_bid <= max_bid")
        return self


class Platform(_Strict):
    """The commerce platform's HTTP API (``url``/``url_env``; ``token_env``/``token_file``)."""

    url: str = "http://127.0.0.1:8766"
    url_env: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    timeout: Duration = timedelta(seconds=3)
    attempts: int = Field(3, ge=1)
    backoff: Duration = timedelta(milliseconds=200)

    def base_url(self, environ: dict[str, str] | None = None) -> str:
        environ = os.environ if environ is None else environ
        return (environ.get(self.url_env or "", "") or self.url).rstrip("/")

    def token(self) -> SecretStr | None:
        raw = {k: v for k, v in (("token_env", self.token_env), ("token_file", self.token_file)) if v}
        try:
            return resolve_secret(raw, "token")
        except LookupError:
            return None


class Escalation(_Strict):
    receiver: str = "commerce-pagerduty"


class Worker(_Strict):
    poll: Duration = timedelta(seconds=1)


class Evaluation(_Strict):
    """How often the act job evaluates the policies (its trigger; none: the side-query trigger)."""

    trigger: Duration | None = None


class ActionsConfig(_Strict):
    """The whole of ``conf/actions.yaml``."""

    kill_switch: bool = False
    dry_run: bool = False
    platform: Platform = Platform()
    escalation: Escalation = Escalation()
    # None: the app's account file (lakehouse.accounts.accounts_path), so the person who
    # approves in the app is the one the worker checks.
    accounts_file: str | None = None
    accounts_file_env: str | None = None
    worker: Worker = Worker()
    evaluation: Evaluation = Evaluation()
    policies: tuple[Policy, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> ActionsConfig:
        names = [p.name for p in self.policies]
        if len(names) != len(set(names)):
            raise ValueError(f"policy names must be unique: {names}")
        return self

    def policy(self, name: str) -> Policy:
        """The policy called ``name`` (KeyError naming the known ones)."""
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(f"unknown policy {name!r}; policies: {[p.name for p in self.policies]}")

    def killed(self, environ: dict[str, str] | None = None) -> bool:
        """The kill switch of the file or the environment (the CLI's switch is in ``ops.action_commands``)."""
        environ = os.environ if environ is None else environ
        return self.kill_switch or environ.get(KILL_SWITCH_ENV, "").lower() in ("1", "true", "on", "yes")

    def dry_run_for(self, policy: Policy) -> bool:
        return self.dry_run or policy.dry_run

    def accounts_path(self, environ: dict[str, str] | None = None) -> Path:
        environ = os.environ if environ is None else environ
        named = environ.get(self.accounts_file_env or "", "") or self.accounts_file
        if not named:
            from lakehouse.accounts import accounts_path
            from lakehouse.config import settings

            return accounts_path(settings())
        path = Path(named)
        return path if path.is_absolute() else home() / path


def parse_actions_config(raw: dict[str, Any]) -> ActionsConfig:
    """Validate a parsed ``conf/actions.yaml`` (``pydantic.ValidationError`` on any mistake)."""
    return ActionsConfig.model_validate(raw or {})


def load_actions_config(path: Path | None = None, settings: Any = None) -> ActionsConfig:
    """Load ``path``, else the settings' ``actions.file`` (``conf/actions.yaml`` by default;
    ``TRIVAS_ACTIONS__FILE`` or ``conf/<env>.yaml`` name another)."""
    if path is None:
        from lakehouse.config import load_settings

        path = (settings or load_settings()).actions_file()
    return parse_actions_config(yaml.safe_load(path.read_text()))
