"""``trivas quality …``: regenerate the validation suites and validate recent data.

``trivas quality suites`` writes ``gx/expectations/<table>.json`` from the event catalog and
the KPI contracts (keeping the expectations a team added); ``trivas quality run [TABLE]``
validates the last ``--minutes`` of every table (or one), prints each expectation's result,
records them in ``ops.validations``, rebuilds the Data Docs and opens or resolves the
``data_quality`` alerts; it exits with 1 when an expectation failed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from lakehouse.config import Settings, load_settings

console = Console()
quality_app = typer.Typer(help="Validation suites (Great Expectations) generated from the contracts.", no_args_is_help=True)


@quality_app.command("suites")
def suites(
    check: Annotated[bool, typer.Option("--check", help="change nothing; exit 1 if a suite is out of date")] = False,
    directory: Annotated[Path | None, typer.Option(help="suites folder (default gx/expectations)")] = None,
) -> None:
    """(Re)generate one suite per silver table and one for gold.kpi from the contracts."""
    import shutil
    import tempfile

    from lakehouse.catalog import catalog
    from lakehouse.contracts import contracts
    from lakehouse.suites import SUITES_DIR, load_suites, write_suites

    target = directory or SUITES_DIR
    if check:  # regenerate into a copy and compare
        with tempfile.TemporaryDirectory() as scratch:
            for path in target.glob("*.json"):
                shutil.copy(path, scratch)
            stale = [t for t, changed in write_suites(catalog(), contracts(), Path(scratch)).items() if changed]
        for table in stale:
            console.print(f"[red]out of date[/] {table}: run `trivas quality suites`")
        raise typer.Exit(1 if stale else 0)
    changed = write_suites(catalog(), contracts(), target)
    written = load_suites(target)
    for table, did in changed.items():
        suite = written[table]
        state = "[green]written[/]" if did else "unchanged"
        console.print(f"{state} {target / (table + '.json')} ({len(suite['expectations'])} expectations)")


def _alerts_for(settings: Settings):  # noqa: ANN202 - QualityRun -> None
    """Open/resolve data-quality alerts; starts Spark (the writer of gold.alerts) only when a
    run failed or an alert of a previous run is open."""
    from lakehouse.alerts.lifecycle import ALERTS_TABLE, FIRING, RULE_DATA_QUALITY
    from lakehouse.tables import read_pandas

    def alert(run) -> None:  # noqa: ANN001 - lakehouse.validations.QualityRun
        try:
            alerts = read_pandas(settings, ALERTS_TABLE)
            open_before = bool(((alerts["rule"] == RULE_DATA_QUALITY) & (alerts["state"] == FIRING)).any())
        except Exception:  # noqa: BLE001 - no gold.alerts yet
            open_before = False
        if run.success and not open_before:
            return
        from lakehouse.runtime.spark import get_spark
        from spark_jobs.quality import QualityAlerts

        QualityAlerts(get_spark(settings, app_name="trivas-quality"), settings)(run)

    return alert


def result_lines(run) -> list[str]:  # noqa: ANN001 - lakehouse.validations.QualityRun
    """One line per expectation, grouped by table: pass/FAIL, the expectation, what was
    observed, how many rows were unexpected and a few (scrubbed) failing keys."""
    lines = []
    for part in run.tables:
        rows = part.outcomes[0].rows if part.outcomes else 0
        lines.append(f"[bold]{part.table}[/] ({rows} rows, {len(part.failed)} failed)")
        for o in part.outcomes:
            verdict = "[green]pass[/]" if o.success else "[red]FAIL[/]"
            facts = [f"observed {o.observed_value if o.observed_value is not None else 'n/a (no rows)'}"]
            if o.unexpected_count:
                facts.append(f"{o.unexpected_count} unexpected")
            if o.failing_keys:
                facts.append("keys " + ", ".join(json.dumps(k, default=str) for k in o.failing_keys[:3]))
            lines.append(f"  {verdict} {escape(o.expectation)} · {escape(' · '.join(facts))}")
    return lines


@quality_app.command("run")
def run(
    table: Annotated[str | None, typer.Argument(help="one table, e.g. silver.orders (default: every suite)")] = None,
    minutes: Annotated[float | None, typer.Option(help="validate the last MINUTES (default quality.window_minutes)")] = None,
    until: Annotated[datetime | None, typer.Option(help="end of the window, UTC (default now)")] = None,
    record: Annotated[bool, typer.Option("--record/--no-record", help="write ops.validations, Data Docs and alerts")] = True,
    env: Annotated[str | None, typer.Option(help="environment (conf/<env>.yaml)")] = None,
) -> None:
    """Validate recent data with the suites and print every expectation's result."""
    from lakehouse.validations import QualityCheck, Window, data_docs_dir

    settings = load_settings(env)
    now = datetime.now(UTC)
    end = now if until is None else (until.replace(tzinfo=UTC) if until.tzinfo is None else until.astimezone(UTC))
    window = Window.recent(end, minutes if minutes is not None else settings.quality.window_minutes)
    check = QualityCheck(settings, _alerts_for(settings) if record else None)
    try:
        result = check.run(window, None if table is None else [table], now=now, record=record)
    except KeyError as error:
        console.print(f"[red]{error.args[0]}[/]")
        raise typer.Exit(2) from None
    for line in result_lines(result):
        console.print(line, soft_wrap=True)
    failed = sum(len(t.failed) for t in result.tables)
    console.print(
        f"run {result.run_id} over [{window.since:%Y-%m-%d %H:%M:%S}, {window.until:%H:%M:%S}) UTC: "
        + ("[green]every expectation passed[/]" if failed == 0 else f"[red]{failed} expectation(s) failed[/]")
        + f" · Data Docs: {data_docs_dir(settings) / 'index.html'}"
    )
    raise typer.Exit(0 if failed == 0 else 1)
