"""The alert router: ``gold.alerts`` → grouped, silenced, inhibited, escalated notifications.

One tick (every ``poll_interval``, or once per micro-batch of the pipeline's ``notify`` job):

1. read ``gold.alerts`` (only when its Delta version moved), acknowledgements and silences
   (``ops.alert_commands``) and the stopped or failed jobs (``ops.pipeline_health``);
2. label each alert, enrich new ones with the KPI row's watermark, finality and lineage;
3. work out inhibitions (a stale KPI or a stopped job mutes the alerts it causes) and ask the
   :class:`~lakehouse.alerts.dispatch.Dispatcher` what is due now;
4. write a ``sending`` row per (alert, receiver, event) to ``ops.notifications`` *before* the
   send (one Delta commit), so a router that dies mid-send never sends it again, then hand each
   message to its receiver's worker (:mod:`lakehouse.alerts.delivery`).

The same router runs as its own process (``trivas alerts run``) or inside the pipeline
(``trivas pipeline run --jobs …,notify``); run one of them per deployment: ``ops.notifications``
has one writer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from lakehouse.alerts.config import AlertsConfig, load_alerts_config
from lakehouse.alerts.delivery import ReceiverWorker, Recorder
from lakehouse.alerts.dispatch import (
    EVENT_TEST,
    AlertContext,
    Dispatcher,
    Item,
    Notification,
    notification_id,
    summary,
)
from lakehouse.alerts.lifecycle import ACKNOWLEDGED, FIRING, QUALITY_KPI, RESOLVED, Alert, alert_id
from lakehouse.alerts.receivers import Sender, build_senders
from lakehouse.alerts.routing import (
    PIPELINE_KPI,
    RULE_JOB_STOPPED,
    SourceAlert,
    alert_labels,
    inhibitions,
)
from lakehouse.alerts.store import (
    FAILED,
    LIFECYCLE_RECEIVER,
    SENDING,
    AlertReader,
    CommandLog,
    DeltaLog,
    NotificationLog,
    NotificationRow,
)
from lakehouse.config import Settings
from lakehouse.contracts import KpiContracts

log = logging.getLogger("trivas.alerts.router")
STOPPED_STATES = ("failed", "stopped")


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobStates:
    """Jobs that are failed or stopped, from ``ops.job_status`` (latest row per job)."""

    def __init__(self, settings: Settings) -> None:
        from lakehouse.registry import JOB_STATUS, JOB_STATUS_SCHEMA

        self.log = DeltaLog(settings, JOB_STATUS, JOB_STATUS_SCHEMA)
        self._version: int | None = None
        self._down: list[SourceAlert] = []
        self.errors: dict[str, str] = {}

    def down(self) -> list[SourceAlert]:
        version = self.log.version()
        if version is None or version == self._version:
            return self._down
        frame = self.log.read().sort_values("recorded_at", kind="stable").drop_duplicates("job", keep="last")
        self._down = []
        self.errors = {}
        for row in frame.itertuples(index=False):
            if row.error:
                self.errors[row.job] = str(row.error)
            if row.state in STOPPED_STATES:
                labels = {"kpi": PIPELINE_KPI, "rule": RULE_JOB_STOPPED if row.state == "stopped" else "pipeline_job_failed",
                          "job": row.job, "dimension": row.job}  # fmt: skip
                self._down.append(SourceAlert(f"job:{row.job}", labels, f"pipeline job {row.job} is {row.state} since {row.recorded_at}"))
        self._version = version
        return self._down


RECENT_MARGIN = timedelta(minutes=10)  # clock skew between the writer and the alert's stamps


def recent_files(table: Any, since: datetime) -> list[str]:
    """The data files of a Delta table written since ``since``.

    ``gold.kpi`` is append-only and unsorted (no column statistics): a row of a window is
    written at or after the window's start, so only files written since then can hold it.
    Reading those instead of the whole table keeps the lookup cheap on a long-running table.
    """
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True)).select(["path", "modification_time"]).to_pandas()
    cutoff_ms = since.timestamp() * 1000
    recent = {p.rsplit("/", 1)[-1] for p in actions.loc[actions["modification_time"] >= cutoff_ms, "path"]}
    return [uri for uri in table.file_uris() if uri.rsplit("/", 1)[-1] in recent]


class KpiFacts:
    """Watermark, finality and lineage of the KPI row an alert is about (from ``gold.kpi``)."""

    def __init__(self, settings: Settings) -> None:
        from lakehouse.registry import KPI, KPI_SCHEMA

        self.log = DeltaLog(settings, KPI, KPI_SCHEMA)

    def lookup(self, alert: Alert) -> dict[str, Any]:
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        table = self.log.table()
        if table is None or alert.kpi == PIPELINE_KPI:
            return {}
        wanted = (pc.field("kpi") == alert.kpi) & (pc.field("grain") == alert.grain) & (pc.field("dimension") == alert.dimension)
        columns = ["window_start", "watermark", "is_final", "computed_at", "source_versions"]
        files = recent_files(table, alert.window_start - RECENT_MARGIN)
        if not files:
            return {}
        try:
            rows = pads.dataset(files, format="parquet").to_table(
                filter=wanted, columns=columns
            ).to_pandas()
        except Exception:  # noqa: BLE001 - enrichment is best effort; the alert goes out anyway
            log.exception("could not look up the KPI row of alert %s", alert.alert_id)
            return {}
        # The newest KPI row the alert is about: its last window (freshness: the last write).
        starts = pd.to_datetime(rows["window_start"], utc=True)
        rows = rows[starts <= pd.Timestamp(alert.window_start)] if alert.rule == "freshness_sla" else rows[starts < pd.Timestamp(alert.window_end)]
        if rows.empty:
            return {}
        row = rows.sort_values(["window_start", "computed_at"], kind="stable").iloc[-1]
        sources = dict(row["source_versions"] or [])
        lineage = f"gold.kpi@v{table.version()} ← " + (", ".join(f"{t}@v{v}" for t, v in sorted(sources.items())) or "n/a")
        watermark = row["watermark"]
        return {
            "watermark": None if pd.isna(watermark) else pd.Timestamp(watermark).to_pydatetime(),
            "is_final": bool(row["is_final"]),
            "lineage": lineage,
        }


def quality_details(settings: Settings, table: str) -> dict[str, Any]:
    """The failed expectations of a table's newest validation run (a data-quality alert's
    error) and where they are recorded."""
    from lakehouse.validations import failure_summary, latest_outcomes

    try:
        failures = failure_summary(latest_outcomes(settings), table)
    except Exception:  # noqa: BLE001 - enrichment is best effort; the alert goes out anyway
        log.exception("could not read the validations of %s", table)
        failures = ""
    return {"error": failures or None, "lineage": f"ops.validations (table {table}) · var/quality/data_docs"}


class AlertRouter:
    """Reads alerts, decides, delivers and records (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        contracts: KpiContracts,
        config: AlertsConfig | None = None,
        clock: Callable[[], datetime] = utc_now,
        senders: dict[str, Sender] | None = None,
        on_delivered: Callable[[Notification, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.contracts = contracts
        self.config = config or load_alerts_config(settings=settings)
        self.clock = clock
        self.notifications = NotificationLog(settings)
        self.commands = CommandLog(settings)
        self.reader = AlertReader(settings)
        self.jobs = JobStates(settings)
        self.kpi_facts = KpiFacts(settings)
        self.dispatcher = Dispatcher(self.config, delivered=self.notifications.delivered())
        self.lifecycle_seen = self.notifications.lifecycle_seen()
        self.details: dict[str, dict[str, Any]] = {}
        self.recorder = Recorder(self.notifications.record)
        required = not settings.secrets.development_fallbacks
        self.senders = build_senders(self.config, required) if senders is None else senders
        self.workers = {name: ReceiverWorker(s, self.recorder, on_delivered) for name, s in self.senders.items()}
        self.lock = threading.Lock()

    # -- one tick

    def tick(self, now: datetime | None = None) -> list[Notification]:
        """Route what changed; returns the notifications handed to the workers."""
        with self.lock:
            now = now or self.clock()
            alerts = self.reader.alerts()
            acks = self.commands.acks()
            silences = self.commands.silences(now=now)
            down = self.jobs.down()  # before the contexts: a failed job's alert carries its error
            contexts = [self._context(a) for a in alerts]
            current = {a.alert_id for a in alerts}
            self.details = {k: v for k, v in self.details.items() if k in current}
            self.dispatcher.reported_mutes = {m for m in self.dispatcher.reported_mutes if m[0] in current}
            rows = self._lifecycle_rows(contexts, acks)
            firing = {c.alert.alert_id: c.labels for c in contexts if c.alert.state == FIRING}
            sources = [SourceAlert(c.alert.alert_id, c.labels, summary(c.alert)) for c in contexts if c.alert.state == FIRING]
            muted_by = inhibitions(firing, sources + down, self.config.inhibit_rules)
            due, muted = self.dispatcher.due(contexts, now, acks, silences, muted_by)
            rows += [
                NotificationRow(f"muted-{m.alert_id[:8]}", m.alert_id, m.receiver, m.route, FIRING, m.status, None, 0, m.reason)
                for m in muted
            ]
            rows += [self._sending_row(n, i) for n in due for i in n.items]
            self.notifications.record(rows)  # one commit, durable before any send: at most once
            for notification in due:
                self._submit(notification)
            return due

    def _context(self, alert: Alert) -> AlertContext:
        labels = alert_labels(alert, self.contracts, self.config.severities)
        details = self.details.get(alert.alert_id)
        if details is None:
            contract = self.contracts.kpis.get(alert.kpi)
            details = {"runbook": contract.runbook if contract else None}
            if alert.kpi == PIPELINE_KPI:
                details["error"] = self.jobs.errors.get(alert.dimension)
                details["lineage"] = f"ops.job_status (job {alert.dimension})"
            elif alert.kpi == QUALITY_KPI:
                details.update(quality_details(self.settings, alert.dimension))
            else:
                details.update(self.kpi_facts.lookup(alert))
            self.details[alert.alert_id] = details
        return AlertContext(alert, labels, details)

    def _lifecycle_rows(self, contexts: list[AlertContext], acks: dict[str, Any]) -> list[NotificationRow]:
        rows = []
        for context in contexts:
            aid = context.alert.alert_id
            states = [FIRING] + ([ACKNOWLEDGED] if aid in acks else []) + ([RESOLVED] if context.alert.state == RESOLVED else [])
            for state in states:
                if (aid, state) in self.lifecycle_seen:
                    continue
                self.lifecycle_seen.add((aid, state))
                detail = f"by {acks[aid].author} ({acks[aid].source})" if state == ACKNOWLEDGED else summary(context.alert)
                rows.append(NotificationRow(f"lifecycle-{aid[:8]}", aid, LIFECYCLE_RECEIVER, None, state, state, None, 0, detail))
        return rows

    @staticmethod
    def _sending_row(notification: Notification, item: Item) -> NotificationRow:
        # recorded_at: the wall clock (the router's clock decides, the audit trail says when).
        return NotificationRow(notification.id, item.alert_id, notification.receiver, notification.route, item.event, SENDING, None, 0)

    def _submit(self, notification: Notification) -> None:
        worker = self.workers.get(notification.receiver)
        if worker is None:
            reason = "receiver disabled: its secret is not set (see the router's log)"
            self.recorder.add(
                [NotificationRow(notification.id, i.alert_id, notification.receiver, notification.route, i.event, FAILED, None, 0, reason)
                 for i in notification.items]
            )  # fmt: skip
            return
        worker.submit(notification)

    # -- a test notification (``trivas alerts test ROUTE``)

    def send_test(self, route_name: str, now: datetime | None = None) -> list[Notification]:
        """A synthetic alert sent through the route's receivers (the real senders and workers)."""
        route = self.config.route_named(route_name)
        now = now or self.clock()
        alert = Alert(
            alert_id=alert_id("test", "test", route_name, EVENT_TEST, now), kpi="test", grain="test", window_start=now,
            window_end=now, dimension=route_name, observed=None, expected=None, lower=None, upper=None, score=None,
            confidence=None, model_version=None, rule=EVENT_TEST, state=FIRING, first_seen_at=now, updated_at=now,
        )  # fmt: skip
        labels = {"kpi": "test", "rule": EVENT_TEST, "severity": "info", "route": route_name, "dimension": route_name}
        context = AlertContext(alert, labels, {"lineage": "test notification (no data)"})
        out = []
        for receiver in route.receivers:
            key = f"{route.name}|{receiver}|test"
            out.append(Notification(notification_id(receiver, key, EVENT_TEST, [alert.alert_id]), receiver, route.name, key,
                                    EVENT_TEST, [Item(context, EVENT_TEST)], created_at=now))  # fmt: skip
        self.notifications.record([self._sending_row(n, i) for n in out for i in n.items])
        for notification in out:
            self._submit(notification)
        return out

    # -- running

    def idle(self) -> bool:
        return all(w.pending() == 0 for w in self.workers.values())

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.idle():
                time.sleep(0.05)  # the last attempt may still be in flight
                if self.idle():
                    return True
            time.sleep(0.05)
        return False

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Tick every ``poll_seconds`` until ``stop`` is set (a failing tick is logged, and
        the next one tries again)."""
        log.info("alert router started: receivers %s", ", ".join(sorted(self.workers)) or "none")
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad tick must not stop alerting
                log.exception("alert router tick failed")
            stop.wait(poll_seconds)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.recorder.stop()
