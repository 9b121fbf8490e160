"""Labels, the routing tree, silences and inhibition (pure functions).

Every alert gets labels the routing tree, silences and inhibit rules match on: ``kpi``,
``grain``, ``dimension`` (and one label per dimension column, ``country="DE"``), ``rule``,
``severity`` (from the rule, ``severities`` in ``conf/alerts.yaml``), ``domain`` (the KPI's
source domain), ``route`` (the KPI contract's ``alert_route``), ``owner`` and ``job`` (the
pipeline job whose output the alert is about: ``silver_gold`` for a KPI, the job itself for a
``pipeline_job_failed`` alert). A ``data_quality`` alert (kpi ``data_quality``, dimension = the
table) gets ``domain`` = the table's layer, ``route`` = ``data_quality`` and ``job`` = the table's
writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lakehouse.alerts.config import InhibitRule, Matcher, Route
from lakehouse.alerts.lifecycle import QUALITY_KPI, RULE_JOB_FAILED, Alert
from lakehouse.contracts import TOTAL, KpiContracts

PIPELINE_KPI = "pipeline"
KPI_JOB = "silver_gold"  # the hot path computes every KPI of gold.kpi
RULE_JOB_STOPPED = "pipeline_job_stopped"  # a stopped job, from ops.pipeline_health (never notified)
DEFAULT_SEVERITY = {RULE_JOB_FAILED: "critical", "freshness_sla": "critical"}


def alert_labels(alert: Alert, contracts: KpiContracts, severities: dict[str, str]) -> dict[str, str]:
    """The labels an alert is routed, silenced and inhibited by."""
    contract = contracts.kpis.get(alert.kpi)
    labels = {
        "kpi": alert.kpi,
        "grain": alert.grain,
        "dimension": alert.dimension,
        "rule": alert.rule,
        "severity": severities.get(alert.rule, DEFAULT_SEVERITY.get(alert.rule, "warning")),
    }
    if alert.kpi == PIPELINE_KPI:
        labels.update(domain=PIPELINE_KPI, route=PIPELINE_KPI, job=alert.dimension, owner="")
    elif alert.kpi == QUALITY_KPI:
        labels.update(domain=alert.dimension.partition(".")[0], route=QUALITY_KPI, job=KPI_JOB, owner="")
        return labels  # the dimension is a table name, not column=value pairs
    else:
        labels.update(
            domain=(contract.source or "") if contract else "",
            route=contract.alert_route if contract else "",
            owner=contract.owner if contract else "",
            job=KPI_JOB,
        )
    if alert.dimension != TOTAL:
        for part in alert.dimension.split(","):
            column, _, value = part.partition("=")
            if value and column not in labels:
                labels[column] = value
    return labels


def matches_all(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def match_routes(route: Route, labels: dict[str, str]) -> list[Route]:
    """The routes an alert goes to, Alertmanager's way: depth first, the first matching child
    wins unless it says ``continue``; a node whose children all miss takes the alert itself."""
    if not matches_all(route.matchers, labels):
        return []
    matched: list[Route] = []
    for child in route.routes:
        found = match_routes(child, labels)
        if found:
            matched.extend(found)
            if not child.continue_:
                break
    return matched or [route]


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts its matchers select from ``starts_at`` to ``ends_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    author: str
    reason: str
    starts_at: datetime
    ends_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: dict[str, str], now: datetime) -> bool:
        return self.active(now) and bool(self.matchers) and matches_all(self.matchers, labels)


def silenced_by(labels: dict[str, str], silences: list[Silence], now: datetime) -> Silence | None:
    """The first active silence that mutes these labels."""
    return next((s for s in silences if s.mutes(labels, now)), None)


@dataclass(frozen=True)
class Inhibition:
    """Why an alert is muted: the rule and the firing alert (or stopped job) causing it."""

    rule: str
    source_id: str
    source_summary: str

    def explain(self) -> str:
        return f"inhibited by {self.rule}: {self.source_summary} ({self.source_id})"


@dataclass(frozen=True)
class SourceAlert:
    """A firing alert, or a stopped pipeline job, that may mute others."""

    id: str
    labels: dict[str, str]
    summary: str


def inhibitions(
    targets: dict[str, dict[str, str]], sources: list[SourceAlert], rules: tuple[InhibitRule, ...]
) -> dict[str, Inhibition]:
    """Alert id → its inhibition, for the targets a source mutes (an alert never mutes itself).

    Args:
        targets: Alert id → labels of the firing alerts that could be muted.
        sources: Firing alerts and stopped jobs that could mute them.
        rules: The inhibit rules of the configuration.
    """
    muted: dict[str, Inhibition] = {}
    for rule in rules:
        active = [s for s in sources if matches_all(rule.source, s.labels)]
        if not active:
            continue
        for target_id, labels in targets.items():
            if target_id in muted or not matches_all(rule.target, labels):
                continue
            for source in active:
                if source.id != target_id and all(source.labels.get(k) == labels.get(k) for k in rule.equal):
                    muted[target_id] = Inhibition(rule.name, source.id, source.summary)
                    break
    return muted
