"""The ``trivas`` command line: one entry point for every component.

Subcommands of other packages (models, ingestion, CDC) are mounted here. Every command takes
``--env`` (:mod:`lakehouse.settings_cli`). The same commands run as Databricks
``python_wheel_task``s (``databricks.yml``, docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lakehouse import REPO_ROOT
from lakehouse.config import Settings, load_settings
from lakehouse.kafka_security import python_client_config
from lakehouse.settings_cli import config_app, with_env_options

app = typer.Typer(help="trivas: real-time e-commerce analytics lakehouse.", no_args_is_help=True)
kafka_app = typer.Typer(
    help="The Kafka broker (local KRaft, or an external cluster).", no_args_is_help=True
)
pipeline_app = typer.Typer(help="The streaming pipeline.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(config_app, name="config")
console = Console()


def _mount_alerts() -> None:
    from lakehouse.alerts.cli import alerts_app, oncall_app

    app.add_typer(alerts_app, name="alerts")
    app.add_typer(oncall_app, name="oncall")
    from lakehouse.actions.cli import actions_app

    app.add_typer(actions_app, name="actions")
    from lakehouse.quality_cli import quality_app

    app.add_typer(quality_app, name="quality")


_mount_alerts()


def lower_priority(nice: int) -> None:
    """Run this process (and what it starts) at OS priority ``nice``. Under the kernel's
    autogroup scheduling (Debian's default) each session is one group and a nice value only
    orders processes inside their group, so the session's group gets the value too: an
    application started in a session of its own (as ``trivas demo`` starts them) then really
    yields to the others."""
    if not nice:
        return
    os.nice(nice)
    autogroup = Path("/proc/self/autogroup")
    if autogroup.exists():
        try:
            autogroup.write_text(str(nice))
        except OSError as error:  # e.g. a kernel without autogroup support
            console.print(f"[yellow]could not set this session's autogroup nice: {error}[/]")


def _settings(env: str | None) -> Settings:
    return load_settings(env)


def _mount_optional() -> None:
    """Mount the subcommands of the models, ingestion, CDC, contracts and replay/backfill packages (once)."""
    if any(group.name == "model" for group in app.registered_groups):
        return
    from lakehouse.backfill_cli import backfill_app, replay_app
    from lakehouse.cluster_cli import cluster_app
    from lakehouse.contracts_cli import contracts_app
    from lakehouse.ingest.cdc_cli import app as cdc_app
    from lakehouse.ingest.cli import collect_app, quarantine_app
    from models.cli import app as model_app

    app.add_typer(model_app, name="model")
    app.add_typer(collect_app, name="collect")
    app.add_typer(quarantine_app, name="quarantine")
    app.add_typer(cdc_app, name="cdc")
    app.add_typer(contracts_app, name="contracts")
    app.add_typer(replay_app, name="replay")
    app.add_typer(backfill_app, name="backfill")
    app.add_typer(cluster_app, name="cluster")


# -- kafka --------------------------------------------------------------------------------------


@kafka_app.command("up")
def kafka_up(env: str = typer.Option(None, help="environment (conf/<env>.yaml)")) -> None:
    """Start (or reuse) the broker and create the topics."""
    from lakehouse.catalog import catalog
    from lakehouse.runtime import kafka

    status = kafka.up(_settings(env), catalog())
    console.print(
        f"kafka at {status.bootstrap} (pid {status.pid}); topics: {', '.join(status.topics)}"
    )


@kafka_app.command("down")
def kafka_down(env: str = typer.Option(None)) -> None:
    """Stop the local broker cleanly."""
    from lakehouse.runtime import kafka

    stopped = kafka.down(_settings(env))
    console.print("kafka stopped" if stopped else "kafka was not running (or is external)")


@kafka_app.command("status")
def kafka_status(env: str = typer.Option(None)) -> None:
    """Is the broker reachable, which topics exist."""
    from lakehouse.runtime import kafka

    status = kafka.status(_settings(env))
    console.print_json(json.dumps(status.__dict__, default=list))
    if not status.reachable:
        raise typer.Exit(1)


# -- generator ----------------------------------------------------------------------------------


def incident_window(begin: datetime, spec: str) -> tuple[datetime, datetime]:
    """``AFTER_S:MINUTES`` → the incident's (start, end) in event time."""
    after, _, minutes = spec.partition(":")
    try:
        start = begin + timedelta(seconds=float(after))
        return start, start + timedelta(minutes=float(minutes or 5))
    except ValueError:
        raise typer.BadParameter(f"expected AFTER_S:MINUTES, got {spec!r}") from None


def idle_campaign_incident(begin: datetime, spec: str) -> tuple[str, datetime, datetime]:
    """``AFTER_S:MINUTES[:CAMPAIGN]`` → (campaign, start, end) of an idle-campaign incident."""
    after, _, rest = spec.partition(":")
    minutes, _, campaign = rest.partition(":")
    start, end = incident_window(begin, f"{after}:{minutes}")
    return campaign or "cmp-00", start, end


@app.command()
def generate(
    rate: float = typer.Option(
        None, help="clean events per second (default: conf generator.events_per_second)"
    ),
    duration: float = typer.Option(0, help="seconds of event time to generate; 0 = until Ctrl-C"),
    seed: int = typer.Option(None, help="random seed (default: conf generator.seed)"),
    live: bool = typer.Option(
        True, "--live/--fast", help="send at arrival time, or as fast as possible"
    ),
    start: str = typer.Option(None, help="ISO start of event time (default: now)"),
    ledger: Path = typer.Option(
        None, help="write every delivery and its expected fate as JSON lines"
    ),
    shop_db: bool = typer.Option(
        False, "--shop-db", help="also write orders and stock to the shop's PostgreSQL (CDC source)"
    ),
    payment_incident: str = typer.Option(
        None,
        help="AFTER_S:MINUTES — payments fail 60 %% of the time for MINUTES, AFTER_S seconds in "
        "(payment_failure_rate breaks its threshold: an alert, then its resolve)",
    ),
    idle_campaign: str = typer.Option(
        None,
        help="AFTER_S:MINUTES[:CAMPAIGN] — a campaign (default cmp-00) keeps spending while none of its "
        "visitors buys, for MINUTES, AFTER_S seconds in (the action policies propose to pause it)",
    ),
    env: str = typer.Option(None),
) -> None:
    """Playground traffic: a simulated shop with duplicates, late, out-of-order and malformed records."""
    from lakehouse.catalog import catalog
    from lakehouse.generator.faults import FaultConfig, deliveries
    from lakehouse.generator.producer import make_producer, send
    from lakehouse.generator.shop import Shop, ShopConfig

    settings = _settings(env)
    conf = settings.generator
    begin = datetime.fromisoformat(start) if start else datetime.now(UTC)
    until = begin + timedelta(seconds=duration) if duration else datetime.max.replace(tzinfo=UTC)
    shop = Shop(
        ShopConfig(
            seed=seed if seed is not None else conf.seed,
            events_per_second=rate or conf.events_per_second,
            payment_incident=incident_window(begin, payment_incident) if payment_incident else None,
            idle_campaign=idle_campaign_incident(begin, idle_campaign) if idle_campaign else None,
        ),
        begin,
    )
    faults = FaultConfig(
        conf.duplicate_fraction,
        conf.out_of_order_fraction,
        conf.late_fraction,
        conf.malformed_fraction,
    )
    stream = deliveries(
        shop.events(until), catalog(), settings.kafka.topic_prefix, faults, shop.config.seed
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ledger_file = ledger.open("w") if ledger else None
    shop_database = None
    if shop_db:
        from lakehouse.ingest.cdc import ShopDatabase

        shop_database = ShopDatabase.connect(settings)

    def on_sent(delivery) -> None:  # noqa: ANN001
        if ledger_file is not None:
            ledger_file.write(json.dumps(delivery.ledger_row()) + "\n")
        # The shop's own database sees every clean event once (apply_event is idempotent).
        if shop_database is not None and delivery.event is not None:
            shop_database.apply_event(delivery.event)

    try:
        stats = send(
            stream,
            make_producer(settings.kafka_bootstrap(), **python_client_config(settings)),
            live=live,
            stop=stop.is_set,
            on_sent=on_sent,
        )
    except KeyboardInterrupt:
        return
    finally:
        if ledger_file:
            ledger_file.close()
        if shop_database is not None:
            shop_database.close()
    console.print(f"sent {stats.sent} records in {stats.seconds:.1f}s ({stats.per_second:,.0f}/s)")


# -- pipeline -----------------------------------------------------------------------------------


@pipeline_app.command("run")
def pipeline_run(
    jobs: str = typer.Option(
        None,
        help="comma-separated subset of bronze,silver_gold,gold,detect,refund_risk,cdc,notify,act "
        "(default: the --app's jobs, else bronze,silver_gold,gold)",
    ),
    app_name: str = typer.Option(
        None, "--app", help="run one application of settings.pipeline.applications (its jobs, at its nice)"
    ),
    available_now: bool = typer.Option(
        False, "--available-now", help="process what is there through every layer, then stop"
    ),
    env: str = typer.Option(None),
) -> None:
    """Run streaming queries in one Spark application until Ctrl-C or SIGTERM."""
    from lakehouse.catalog import catalog
    from lakehouse.contracts import contracts
    from lakehouse.runtime.spark import get_spark
    from spark_jobs import pipeline

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings(env)
    runner, chosen = pipeline.RUNNER, ["bronze", "silver_gold", "gold"]
    if app_name:
        application = settings.pipeline.application(app_name)
        runner, chosen = application.name, list(application.jobs)
        lower_priority(application.nice)  # before the JVM starts: it and its Python workers inherit it
    if jobs:
        chosen = [j.strip() for j in jobs.split(",") if j.strip()]
    spark = get_spark(settings, app_name=f"{settings.spark.app_name}-{runner}")
    if available_now:
        pipeline.drain(spark, settings, catalog(), contracts(), chosen)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    pipeline.run_until_stopped(spark, settings, catalog(), contracts(), chosen, stop, runner=runner)


# -- app and demo -------------------------------------------------------------------------------


accounts_app = typer.Typer(help="Accounts of the app (roles viewer, approver, admin).", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


@accounts_app.command("add")
def accounts_add(
    name: str = typer.Argument(..., help="login, or the e-mail an OIDC provider reports"),
    role: str = typer.Option("viewer", help="viewer | approver | admin"),
    oidc: bool = typer.Option(False, "--oidc", help="no password: the person signs in through OIDC"),
    env: str = typer.Option(None),
) -> None:
    """Add or change an account (the password is asked for and stored only as an scrypt hash)."""
    from lakehouse.accounts import accounts_path, save_account

    settings = _settings(env)
    password = None if oidc else typer.prompt("password", hide_input=True, confirmation_prompt=True)
    account = save_account(accounts_path(settings), name, role, password)
    console.print(f"{account.name}: {account.role} ({settings.app.accounts_file})")


@accounts_app.command("list")
def accounts_list(env: str = typer.Option(None)) -> None:
    """The accounts and their roles (never a password)."""
    from lakehouse.accounts import accounts_path, load_accounts

    settings = _settings(env)
    for account in load_accounts(accounts_path(settings)).values():
        console.print(f"{account.name}\t{account.role}\t{'password' if account.password_hash else 'oidc'}")


@app.command()
def rollup(
    every: float = typer.Option(0, help="run again every SECONDS (0 = once)"),
    full: bool = typer.Option(False, "--full", help="recompute every hour and day (after a backfill)"),
    env: str = typer.Option(None),
) -> None:
    """Roll gold.kpi up into hourly and daily rows (gold.kpi_rollup), off the hot path."""
    from lakehouse.contracts import contracts
    from lakehouse.rollup import roll_up

    settings = _settings(env)
    while True:
        run = roll_up(settings, contracts(), full=full)
        console.print(
            f"gold.kpi_rollup ← gold.kpi@v{run.kpi_version}: {run.hours} hourly and {run.days} daily rows "
            f"from {run.first_hour or '–'} in {run.seconds:.2f}s"
        )
        if not every:
            return
        full = False
        time.sleep(every)


def app_command(settings: Settings, port: int) -> list[str]:
    """The command line that serves the Streamlit app. No source file watcher: a served app
    does not reload on edits, and the watcher registered every loaded module for each new
    session (~0.13 s of server CPU per page load)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app" / "Home.py"),
        "--server.port", str(port), "--server.headless", "true", "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer", "--server.fileWatcherType", "none",
    ]  # fmt: skip


@app.command("app")
def serve_app(port: int = typer.Option(None), env: str = typer.Option(None)) -> None:
    """Serve the Streamlit app (KPIs with freshness and lineage)."""
    settings = _settings(env)
    os.execv(sys.executable, app_command(settings, port or settings.app.port))


@app.command()
def demo(
    rate: float = typer.Option(None, help="generated events per second"),
    seconds: float = typer.Option(0, help="stop after this many seconds (0 = until Ctrl-C)"),
    payment_incident: str = typer.Option(
        None, help="AFTER_S:MINUTES — a payment-provider incident in the traffic (see `trivas generate`)"
    ),
    idle_campaign: str = typer.Option(
        "0:120:cmp-00",
        help="AFTER_S:MINUTES[:CAMPAIGN] — a campaign spending with no conversions (the actions' incident; '' = none)",
    ),
    env: str = typer.Option(None),
) -> None:
    """The playground: broker, traffic, pipeline, actions and app; Ctrl-C stops everything."""
    settings = _settings(env)
    logs = settings.path(settings.paths.logs)
    logs.mkdir(parents=True, exist_ok=True)
    children: dict[str, subprocess.Popen[bytes]] = {}
    from lakehouse.runtime.processes import STOP_SIGNALS, stop_on_signals

    # From the first step on, a supervisor's SIGTERM or a closed terminal's SIGHUP stops
    # everything as Ctrl-C does, even while the broker or the database is still starting.
    stop_on_signals()
    try:
        traffic = ["--payment-incident", payment_incident] if payment_incident else []
        traffic += ["--idle-campaign", idle_campaign] if idle_campaign else []
        _run_playground(settings, env, rate, seconds, children, traffic)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the cleanup short
        _stop_playground(settings, children)
        console.print("stopped.")


def _run_playground(
    settings: Settings,
    env: str | None,
    rate: float | None,
    seconds: float,
    children: dict[str, subprocess.Popen[bytes]],
    traffic_args: list[str] | None = None,
) -> None:
    """Start the broker, CDC, champions, pipeline, generator and app; supervise until the end."""
    from lakehouse.catalog import catalog
    from lakehouse.ingest import cdc
    from lakehouse.runtime import kafka
    from lakehouse.runtime.processes import port_open, recording_child, wait_until
    from models.champion import ensure_champions

    logs = settings.path(settings.paths.logs)
    status = kafka.up(settings, catalog())
    console.print(f"[green]kafka[/] {status.bootstrap}")
    cdc_status = cdc.up(settings)
    console.print(
        f"[green]cdc[/]      shop PostgreSQL {cdc_status.postgres} → Debezium ({cdc_status.connector}) → Kafka"
    )
    trivas = [sys.executable, "-m", "lakehouse.cli"]
    env_args = ["--env", env] if env else []
    rate_args = ["--rate", str(rate)] if rate else []

    def spawn(name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        log_file = (logs / f"{name}.log").open("ab")
        with recording_child():
            children[name] = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **extra_env} if extra_env else None,
            )

    console.print(
        "[green]models[/]   registering the anomaly and refund-risk champions if missing…"
    )
    if settings.mlflow.tracking_uri.startswith("sqlite:///"):
        Path(settings.mlflow.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    ensure_champions(
        settings.mlflow.tracking_uri, settings.mlflow.anomaly_model, settings.mlflow.refund_model
    )
    for application in settings.pipeline.applications:
        command = [*trivas, "pipeline", "run", "--app", application.name, *env_args]
        spawn(settings.pipeline.log_name(application.name), command)
    _start_alerting(spawn, trivas, env_args)
    spawn("rollup", [*trivas, "rollup", "--every", "60", *env_args])
    _send_history(settings, trivas, env_args, rate_args, logs)
    _start_actions(spawn, trivas, env_args)
    spawn("generator", [*trivas, "generate", "--live", "--shop-db", *rate_args, *(traffic_args or []), *env_args])
    from lakehouse.accounts import accounts_path, demo_accounts

    passwords = demo_accounts(accounts_path(settings))
    spawn("app", app_command(settings, settings.app.port))
    wait_until(lambda: port_open("127.0.0.1", settings.app.port), 60, "the app to listen")
    console.print(f"[green]app[/]      http://localhost:{settings.app.port}")
    if passwords:  # shown once: the file keeps only their hashes
        console.print("[green]accounts[/] " + " · ".join(f"{role} / {pw}" for role, pw in passwords.items()) + "  (shown once)")
    console.print(f"[green]logs[/]     {logs}  (pipeline*.log, generator.log, alerts.log, actions.log, app.log, kafka.log)")
    console.print(f"[green]tables[/]   {settings.path(settings.tables.root)}")
    console.print("Ctrl-C stops everything.")
    deadline = time.monotonic() + seconds if seconds else None
    feed = _action_feed(settings)
    while deadline is None or time.monotonic() < deadline:
        for name, child in children.items():
            if child.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {child.returncode}; see {logs / (name + '.log')}"
                )
        for line in feed():
            console.print(line)
        time.sleep(1)


def history_runs(now: datetime, hours: float) -> list[tuple[datetime, float]]:
    """(start, seconds) of the history the demo sends first: the same hours a week ago, then
    the last hours up to ``now`` (older first: event time moves forward, nothing is late)."""
    if hours <= 0:
        return []
    span = timedelta(hours=hours)
    return [(now - timedelta(days=7) - span, span.total_seconds()), (now - span, span.total_seconds())]


def _send_history(settings: Settings, trivas: list[str], env_args: list[str], rate_args: list[str], logs: Path) -> None:
    """On an empty lakehouse, send recent history at full speed before live traffic starts."""
    from lakehouse.tables import has_commits, table_path

    runs = history_runs(datetime.now(UTC), settings.generator.history_hours)
    if not runs or has_commits(table_path(settings, "gold.kpi")):
        return
    console.print(f"[green]history[/]  sending the last {settings.generator.history_hours:g} h and the same hours a week ago…")
    with (logs / "generator-history.log").open("ab") as log_file:
        for index, (start, seconds) in enumerate(runs):
            command = [*trivas, "generate", "--fast", "--start", start.isoformat(), "--duration", str(seconds),
                       "--seed", str(settings.generator.seed + 1 + index), *rate_args, *env_args]  # fmt: skip
            subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, check=True)


def _start_alerting(spawn, trivas: list[str], env_args: list[str]) -> None:  # noqa: ANN001 - demo's spawn
    """The alert router with a local SMTP server and webhook inbox (``trivas alerts inbox``)."""
    spawn("alerts", [*trivas, "alerts", "run", "--local-receivers", *env_args])
    console.print("[green]alerts[/]   router → local SMTP + webhook inbox: `trivas alerts inbox`")


def _start_actions(spawn, trivas: list[str], env_args: list[str]) -> None:  # noqa: ANN001 - demo's spawn
    """The sandbox commerce platform and the action worker acting on it (escalations page the
    sandbox's PagerDuty endpoint); the act job runs in the pipeline."""
    from lakehouse.runtime.processes import free_port, port_open, wait_until

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spawn("sandbox", [*trivas, "actions", "sandbox", "--port", str(port)])
    wait_until(lambda: port_open("127.0.0.1", port), 30, "the sandbox platform to listen")
    worker_env = {"TRIVAS_ACTIONS_PLATFORM_URL": url, "TRIVAS_ALERTS_PAGERDUTY_URL": f"{url}/v2/enqueue",
                  "TRIVAS_ALERTS_PAGERDUTY_ROUTING_KEY": "playground-routing-key"}  # fmt: skip
    spawn("actions", [*trivas, "actions", "work", *env_args], worker_env)
    console.print(f"[green]actions[/]  sandbox platform {url} · worker · approve in the app's Actions page or `trivas actions list`")


def _action_feed(settings: Settings):  # noqa: ANN202 - a callable returning new lines
    """New audit-log steps as console lines (what the actions did, or would do in dry run);
    a failing read only skips a beat."""
    from rich.markup import escape

    from lakehouse.actions.config import load_actions_config
    from lakehouse.actions.store import audit_log

    log = audit_log(settings)
    approvals_needed = {p.name for p in load_actions_config().policies if p.needs_approval}
    seen: set[str] = set()
    version: list[int | None] = [None]

    def new_lines() -> list[str]:
        try:
            current = log.version()
            if current is None or current == version[0]:
                return []
            version[0] = current
            rows = log.read().sort_values("recorded_at", kind="stable")
        except Exception:  # noqa: BLE001 - the feed is a courtesy; the worker's log has it all
            return []
        lines = []
        for row in rows[~rows["audit_id"].isin(seen)].itertuples(index=False):
            seen.add(row.audit_id)
            waits = row.event == "proposed" and row.policy in approvals_needed
            hint = f" — approve: trivas actions approve {row.request_id[:12]} --user approver" if waits else ""
            detail = f" · {str(row.detail)[:80]}" if isinstance(row.detail, str) and row.detail else ""
            lines.append(f"[cyan]action[/]   {row.event}: {row.policy} → {row.action} {row.target} ({row.actor}){escape(detail + hint)}")
        return lines

    return new_lines


def _stop_playground(settings: Settings, children: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop what the playground started, whatever step it reached: the children's process
    groups (SIGTERM, SIGKILL after 60 s), then CDC and the broker (each a no-op if not up)."""
    from lakehouse.ingest import cdc
    from lakehouse.runtime import kafka

    for name, child in reversed(children.items()):  # the traffic and the app before the pipeline
        if child.poll() is None:
            if name.startswith("pipeline"):
                child.send_signal(signal.SIGTERM)  # the driver stops its queries, then its JVM
            else:
                os.killpg(child.pid, signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # anything of its group left behind
    for step in (cdc.down, kafka.down):
        try:
            step(settings)
        except Exception as error:  # noqa: BLE001 - stop the rest, and say what was left
            console.print(f"[red]{step.__module__}.down failed[/]: {error}")


@app.command()
def tables(env: str = typer.Option(None)) -> None:
    """Where every table lives."""
    from lakehouse.registry import TableSpec, registry
    from lakehouse.tables import table_location, table_path

    settings = _settings(env)
    table = Table("table", "kind", "location / definition", "written by")
    for name, spec in registry().items():
        if isinstance(spec, TableSpec):
            where = table_location(settings, name)
            if settings.tables.binding == "catalog":
                where += f" at {table_path(settings, name)}"  # an external table
            table.add_row(name, "table", where, spec.writer)
        else:
            table.add_row(name, "view", spec.description, "")
    console.print(table)


def command_tree() -> typer.Typer:
    """The whole ``trivas`` command tree, every command with its ``--env``."""
    _mount_optional()
    return with_env_options(app)


def main() -> None:
    """Console-script entry point."""
    command_tree()()


if __name__ == "__main__":
    main()
