"""Command line of the ingestion relays: ``trivas collect …`` and ``trivas quarantine …``.

Typer apps to mount: ``collect_app`` (``trivas collect``: serve, ``keys``, ``vault``),
``quarantine_app`` (``trivas quarantine list|replay``); ``app`` holds both as sub-commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lakehouse.catalog import load_catalog
from lakehouse.config import load_settings
from lakehouse.ingest.settings import load_collector_settings

console = Console()

collect_app = typer.Typer(
    help="The ingestion collector (SDK batches and signed webhooks → Kafka).",
    invoke_without_command=True,
    no_args_is_help=False,
)
keys_app = typer.Typer(help="Per-source API keys (stored hashed).", no_args_is_help=True)
vault_app = typer.Typer(help="The PII token vault (needs the vault key).", no_args_is_help=True)
quarantine_app = typer.Typer(help="Refused records: list and replay fixed ones once.", no_args_is_help=True)
collect_app.add_typer(keys_app, name="keys")
collect_app.add_typer(vault_app, name="vault")

app = typer.Typer(help="trivas ingestion", no_args_is_help=True)
app.add_typer(collect_app, name="collect")
app.add_typer(quarantine_app, name="quarantine")


@collect_app.callback()
def collect(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="bind address (default: conf/collector.yaml)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: conf/collector.yaml)")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the collector (``trivas collect``) unless a sub-command is given."""
    if ctx.invoked_subcommand is not None:
        return
    from lakehouse.ingest.serving import serve

    serve(load_settings(), load_collector_settings(), host=host, port=port, workers=workers)


@keys_app.command("create")
def keys_create(source: Annotated[str, typer.Argument(help="source name, e.g. shop-web")]) -> None:
    """Create an API key for SOURCE; the key is printed once and only its hash is stored."""
    from lakehouse.ingest.keys import add_key

    config = load_collector_settings()
    api_key = add_key(config.path(config.api_keys_file), source)
    console.print(f"API key for [bold]{source}[/] (shown once, store it in the client's secrets):")
    typer.echo(api_key)


@keys_app.command("list")
def keys_list() -> None:
    """Sources with keys (hash prefixes only)."""
    from lakehouse.ingest.keys import read_key_file

    config = load_collector_settings()
    table = Table("source", "sha256 (prefix)", "created_at")
    for entry in read_key_file(config.path(config.api_keys_file)):
        table.add_row(entry["source"], entry["sha256"][:12] + "…", entry.get("created_at", ""))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(source: str) -> None:
    """Remove every key of SOURCE (restart or reload the collector to apply)."""
    from lakehouse.ingest.keys import revoke_source

    config = load_collector_settings()
    removed = revoke_source(config.path(config.api_keys_file), source)
    console.print(f"removed {removed} key(s) of {source}")


@vault_app.command("reveal")
def vault_reveal(
    token: str,
    purpose: Annotated[str, typer.Option(help="why (recorded in the vault's access log)")],
) -> None:
    """Print the clear value behind a ``tok_…`` token (needs $TRIVAS_PRIVACY__VAULT_KEY)."""
    import getpass

    from lakehouse.privacy import PiiVault, VaultLockedError, load_vault_key

    settings = load_settings()
    config = settings.collector
    vault = PiiVault(config.path(config.vault.path), load_vault_key(settings.privacy.vault_key, config.path(config.vault.key_file)))
    try:
        value = vault.reveal(token, actor=getpass.getuser(), purpose=purpose)
    except VaultLockedError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    finally:
        vault.close()
    if value is None:
        console.print("unknown token")
        raise typer.Exit(1)
    typer.echo(value)


@quarantine_app.command("list")
def quarantine_list(
    include_dlq: Annotated[bool, typer.Option("--include-dlq", help="also the collector's dead letters")] = False,
    reason: Annotated[str | None, typer.Option(help="only this reason code")] = None,
    limit: Annotated[int, typer.Option(help="rows to show")] = 50,
) -> None:
    """Quarantined records with their reason, contract version, source and replay state."""
    from lakehouse.ingest.quarantine import list_quarantined, replayed_ids

    settings = load_settings()
    records = [r for r in list_quarantined(settings, include_dlq) if reason in (None, r.reason)]
    done = replayed_ids(settings)
    table = Table("quarantine_id", "origin", "reason", "detail", "event_type", "v", "source", "replayed")
    for r in records[-limit:]:
        table.add_row(
            r.quarantine_id, r.origin, r.reason, (r.detail or "")[:60], r.event_type or "",
            str(r.contract_version or ""), r.source or "", "yes" if r.quarantine_id in done else "",
        )  # fmt: skip
    console.print(table)
    console.print(f"{len(records)} record(s), {sum(r.quarantine_id in done for r in records)} replayed")


@quarantine_app.command("replay")
def quarantine_replay(
    fixes: Annotated[Path | None, typer.Option(help="JSONL of fixes keyed by quarantine_id")] = None,
    revalidate: Annotated[
        bool, typer.Option("--revalidate", help="replay silver records that now pass the contract")
    ] = False,
    ids: Annotated[list[str] | None, typer.Option("--id", help="only these quarantine ids")] = None,
    include_dlq: Annotated[bool, typer.Option("--include-dlq")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Replay fixed records through the normal path, each at most once (ledger)."""
    from lakehouse.ingest.quarantine import load_fixes, replay

    if fixes is None and not revalidate:
        console.print("[red]give --fixes FILE and/or --revalidate[/]")
        raise typer.Exit(2)
    report = replay(
        load_settings(),
        load_catalog(),
        load_collector_settings(),
        fixes=load_fixes(fixes) if fixes else None,
        revalidate=revalidate,
        only_ids=ids,
        include_dlq=include_dlq,
        dry_run=dry_run,
    )
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {len(report.replayed)}, already replayed {len(report.already_replayed)}")
    for qid, why in report.still_invalid.items():
        console.print(f"  still invalid {qid}: {why}")
    for qid in report.unknown_fixes:
        console.print(f"  [yellow]fix for unknown quarantine id {qid}[/]")
    if report.still_invalid:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
