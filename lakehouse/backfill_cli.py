"""``trivas replay …`` and ``trivas backfill …``: re-derive silver and gold from raw records.

- ``trivas replay bronze --since T --until T`` (or ``--offsets TOPIC:PARTITION:FROM-TO``):
  the records bronze archived, judged again by today's contracts (:mod:`spark_jobs.backfill`);
- ``trivas replay quarantine …``: refused records after a contract fix, through the live path
  (the same command as ``trivas quarantine replay``, which stays as its alias);
- ``trivas backfill online-retail PATH [--since D] [--until D]``: a year of real orders.

Replays and backfills run as their own Spark application at a lower OS priority, on a share
of the cores and within an events-per-second budget (``conf/base.yaml`` ``backfill:``), with a
progress bar; killed, they resume where they stopped; run twice, the second changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lakehouse.config import Settings, load_settings
from lakehouse.ingest.cli import quarantine_replay

console = Console()
replay_app = typer.Typer(help="Replay raw records through the contracts (bronze, quarantine).", no_args_is_help=True)
backfill_app = typer.Typer(help="Load history from files through the contracts into silver and gold.", no_args_is_help=True)
replay_app.command("quarantine", help="Refused records after a contract fix (alias: trivas quarantine replay).")(quarantine_replay)

Budget = Annotated[float | None, typer.Option("--events-per-second", help="throughput budget (default: conf backfill.events_per_second; 0 = none)")]
ChunkEvents = Annotated[int | None, typer.Option(help="records per chunk (default: conf backfill.chunk_events)")]
Cores = Annotated[int | None, typer.Option(help="cores for its Spark application (default: conf backfill.cores)")]
Nice = Annotated[int | None, typer.Option(help="OS priority (default: conf backfill.nice)")]


def parse_time(text: str | None) -> datetime | None:
    """ISO date or time; a time without a zone is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected an ISO date or time, got {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def with_cores(settings: Settings, cores: int) -> Settings:
    """``settings`` with a local Spark master of ``cores`` cores (a cluster master stays)."""
    if not settings.spark.master.startswith("local"):
        return settings
    return settings.model_copy(update={"spark": settings.spark.model_copy(update={"master": f"local[{cores}]"})})


def run_backfill(make_source: Callable[[Settings], object], title: str, budget: float | None,
                 chunk_events: int | None, cores: int | None, nice: int | None) -> None:  # fmt: skip
    """Plan and run one backfill in this process's own low-priority Spark application."""
    from lakehouse.catalog import catalog
    from lakehouse.cli import lower_priority
    from lakehouse.contracts import contracts
    from lakehouse.runtime.spark import get_spark
    from spark_jobs.backfill import Backfill

    settings = load_settings()
    lower_priority(settings.backfill.nice if nice is None else nice)  # before the JVM starts: it inherits it
    settings = with_cores(settings, cores or settings.backfill.cores)
    spark = get_spark(settings, app_name=f"{settings.spark.app_name}-backfill")
    try:
        job = Backfill(spark, settings, catalog(), contracts(), make_source(settings), chunk_events, budget)  # type: ignore[arg-type]
        try:
            chunks = job.plan()
        except ValueError as error:  # a range the live path still owns: nothing was done
            console.print(f"[red]{error}[/]")
            raise typer.Exit(2) from None
        console.print(f"{title}: run {job.run_id}, {sum(c.records for c in chunks):,} records in {len(chunks)} chunks")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"), TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(title, total=sum(c.records for c in chunks), state="")

            def advance(report) -> None:  # noqa: ANN001 - spark_jobs.backfill.ChunkReport
                state = "done before" if report.skipped else (
                    f"+{report.silver_added} silver, +{report.quarantined_added} quarantined, "
                    f"+{report.late_added} late, {report.gold_restated} gold rows restated")
                progress.update(task, advance=report.chunk.records, state=f"chunk {report.chunk.number + 1}/{len(chunks)}: {state}")

            reports = job.run(advance)
        summary = Table("chunks", "skipped", "valid", "silver added", "quarantined added", "late added", "gold restated")
        done = [r for r in reports if not r.skipped]
        summary.add_row(str(len(reports)), str(len(reports) - len(done)), *[
            str(sum(getattr(r, f) for r in done))
            for f in ("valid", "silver_added", "quarantined_added", "late_added", "gold_restated")
        ])  # fmt: skip
        console.print(summary)
    finally:
        spark.stop()


@replay_app.command("bronze")
def replay_bronze(
    since: Annotated[str | None, typer.Option(help="arrival time from (ISO; UTC when no zone)")] = None,
    until: Annotated[str | None, typer.Option(help="arrival time until, excluded")] = None,
    offsets: Annotated[list[str] | None, typer.Option("--offsets", help="TOPIC:PARTITION:FROM-TO (repeatable)")] = None,
    events_per_second: Budget = None, chunk_events: ChunkEvents = None, cores: Cores = None, nice: Nice = None,
) -> None:  # fmt: skip
    """Judge the records bronze archived again and re-derive silver and gold for them."""
    from spark_jobs.backfill_sources import BronzeRange, OffsetRange

    try:
        ranges = [OffsetRange.parse(o) for o in offsets or []]
        source = BronzeRange(load_settings(), parse_time(since), parse_time(until), ranges)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    run_backfill(lambda _: source, "replay from bronze", events_per_second, chunk_events, cores, nice)


@backfill_app.command("online-retail")
def backfill_online_retail(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="online_retail.csv(.gz), UCI Online Retail")],
    since: Annotated[str | None, typer.Option(help="invoices from (ISO date; default: the whole file)")] = None,
    until: Annotated[str | None, typer.Option(help="invoices until, excluded")] = None,
    events_per_second: Budget = None, chunk_events: ChunkEvents = None, cores: Cores = None, nice: Nice = None,
) -> None:  # fmt: skip
    """Load the Online Retail invoices as order_placed / order_cancelled events (one per
    invoice) through the contracts into silver and gold (docs/backfill.md)."""
    from spark_jobs.backfill_sources import RetailFile

    start, end = parse_time(since), parse_time(until)
    run_backfill(lambda s: RetailFile(s, path, start, end), "online retail backfill", events_per_second, chunk_events, cores, nice)
