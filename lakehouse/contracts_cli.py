"""``trivas contracts …``: diff two catalog versions, migrate tables, scaffold an event type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lakehouse.catalog import CATALOG_DIR
from lakehouse.contract_diff import (
    BREAKING,
    BRONZE_NOTE,
    CatalogDiff,
    diff_catalogs,
    load_catalog_at,
)
from lakehouse.contract_templates import TESTS_DIR, scaffold

console = Console()
contracts_app = typer.Typer(help="Event contracts: diff versions, migrate tables, scaffold types.", no_args_is_help=True)

WORKING_TREE = str(CATALOG_DIR)


def _verdict(value: str) -> str:
    return f"[red]{value}[/]" if value == BREAKING else f"[green]{value}[/]"


def render_diff(diff: CatalogDiff) -> Table:
    """The diff as a rich table: one row per change, its verdicts and table migrations."""
    table = Table(title=f"contract changes {diff.old} → {diff.new}", show_lines=True)
    for column in ("event type", "change", "field", "producers", "consumers"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", ratio=1)
    table.add_column("tables: migration", ratio=2)
    for change in diff.changes:
        impacts = "\n".join(f"{t.table}: {t.action}" + (f" {t.column}" if t.column else "") + f" ({t.detail})" for t in change.tables)
        table.add_row(change.event_type, change.kind.value, change.field or "", _verdict(change.producers),
                      _verdict(change.consumers), change.detail, impacts)  # fmt: skip
    return table


@contracts_app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="the catalog today: a git revision (HEAD~3, main) or a folder")],
    new: Annotated[str, typer.Argument(help="the proposed catalog (default: the working tree's conf/events)")] = WORKING_TREE,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for CI")] = False,
    fail_on: Annotated[str, typer.Option(help="exit 1 when a change breaks: any | producers | consumers")] = "any",
) -> None:
    """Classify every change from OLD to NEW for producers and consumers, with the tables'
    migrations. Exits 1 when a change breaks the side named by --fail-on."""
    from lakehouse.contracts import load_contracts

    if fail_on not in ("any", "producers", "consumers"):
        raise typer.BadParameter("use any, producers or consumers", param_hint="--fail-on")
    try:
        before, after = load_catalog_at(old), load_catalog_at(new)
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    try:
        kpis = load_contracts(catalog=after)
    except ValueError:  # KPI contracts that no longer match the new catalog: diff without them
        kpis = load_contracts(catalog=before)
    result = diff_catalogs(before, after, kpis, old, new)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
    elif not result.changes:
        console.print(f"no contract changes from {old} to {new}")
    else:
        console.print(render_diff(result))
        console.print(f"[dim]{BRONZE_NOTE}[/]")
        for event_type in result.unversioned():
            console.print(f"[yellow]{event_type}: breaking change without a version bump (no transition window possible)[/]")
    broken = result.breaking_for(fail_on)
    if broken:
        if not as_json:
            console.print(f"[red]{len(broken)} breaking change(s) for {fail_on}[/]")
        raise typer.Exit(1)


@contracts_app.command("migrate")
def migrate(
    table: Annotated[str, typer.Option(help="the declared table to migrate")] = "silver.events",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan, change nothing")] = False,
    env: Annotated[str | None, typer.Option(help="environment (conf/<env>.yaml)")] = None,
) -> None:
    """Apply the safe migrations (add nullable columns, widen types Delta can widen) that bring
    TABLE to the schema the catalog derives, and record the contract versions in its
    properties. Refuses the rest with the reason (exit 1). Idempotent."""
    from lakehouse.catalog import catalog
    from lakehouse.config import load_settings
    from lakehouse.contract_migrations import apply_plan, plan_table
    from lakehouse.runtime.spark import get_spark

    settings = load_settings(env)
    spark = get_spark(settings, app_name="trivas-contracts-migrate")
    plan = plan_table(spark, settings, catalog(), table)
    if not plan.exists:
        console.print(f"{table} does not exist yet: the pipeline creates it with the current contract")
        return
    steps = plan.steps if dry_run else apply_plan(spark, plan)
    for step in steps:
        console.print(f"{'would run' if dry_run else '[green]done[/]'} {step.action} {step.column or ''} ({step.detail})")
    for column in plan.kept:
        console.print(f"[dim]kept {column}: no longer declared (drop it by hand once no reader needs it)[/]")
    for refusal in plan.refused:
        console.print(f"[red]refused[/] {refusal.column}: {refusal.reason}")
    if plan.up_to_date:
        console.print(f"{table} matches the contract: nothing to do")
    if plan.refused:
        raise typer.Exit(1)


@contracts_app.command("new")
def new(
    event_type: Annotated[str, typer.Argument(help="snake_case name of the new event type")],
    domain: Annotated[str, typer.Option(help="its domain (raw topic and silver view)")],
    owner: Annotated[str, typer.Option(help="owning team")] = "TODO",
    key: Annotated[str | None, typer.Option(help="partition key field (default <event_type>_id)")] = None,
    catalog_dir: Annotated[Path, typer.Option(help="catalog folder")] = CATALOG_DIR,
    tests_dir: Annotated[Path, typer.Option(help="where the contract test goes")] = TESTS_DIR,
) -> None:
    """Scaffold EVENT_TYPE: its catalog file and a contract test that passes as generated."""
    try:
        made = scaffold(event_type, domain, owner, key, catalog_dir, tests_dir)
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    console.print(f"wrote {made.catalog_file}\nwrote {made.test_file}")
