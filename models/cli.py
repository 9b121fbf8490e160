"""``trivas model …`` commands: train, evaluate, promote, serve, score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import typer

from models import registry
from models.scorer import ENSEMBLE, KINDS, KpiScorer
from models.series import TIMESTAMP, VALUE

app = typer.Typer(help="KPI anomaly models: train, evaluate, promote, serve, score.", no_args_is_help=True)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCORE_COLUMNS = ["timestamp", "value", "anomaly_score", "expected", "lower", "upper", "is_anomaly"]

TrackingUri = typer.Option(None, "--tracking-uri", help="MLflow URI (default: the environment's mlflow.tracking_uri).")
ModelName = typer.Option(None, "--model-name", help="Registered model name (default: the environment's mlflow.anomaly_model).")
Env = typer.Option(None, "--env", help="environment (conf/<env>.yaml) whose MLflow registry and model names to use")


def registry_target(env: str | None, tracking_uri: str | None, model_name: str | None) -> tuple[str, str]:
    """The registry and the model name: the options, else the environment's settings, so a
    model is registered under the name the detect job of that environment loads."""
    from lakehouse.config import load_settings

    if tracking_uri and model_name:
        return tracking_uri, model_name
    mlflow = load_settings(env).mlflow
    return registry.resolve_tracking_uri(tracking_uri or mlflow.tracking_uri), model_name or mlflow.anomaly_model


@app.command()
def train(
    input: Path | None = typer.Option(None, "--input", help="CSV history (default: the shared real series)."),
    kind: str = typer.Option(ENSEMBLE, "--kind", help=f"Model family: {', '.join(KINDS)}."),
    alias: str = typer.Option(registry.CHAMPION, "--alias", help="Alias for the new version (champion/challenger)."),
    timestamp_col: str = typer.Option(TIMESTAMP, "--timestamp-col"),
    value_col: str = typer.Option(VALUE, "--value-col"),
    no_evaluate: bool = typer.Option(False, "--no-evaluate", help="Skip the NAB evaluation."),
    tracking_uri: str | None = TrackingUri,
    model_name: str | None = ModelName,
    env: str | None = Env,
) -> None:
    """Train on history, log to MLflow, register and set an alias."""
    tracking_uri, model_name = registry_target(env, tracking_uri, model_name)
    result = registry.train_and_register(
        input,
        kind,
        alias or None,
        tracking_uri=tracking_uri,
        model_name=model_name,
        evaluate=not no_evaluate,
        timestamp_col=timestamp_col,
        value_col=value_col,
    )
    typer.echo(f"registered {model_name} version {result.version} (run {result.run_id}) alias={result.alias}")
    for key in sorted(k for k in result.metrics if k.startswith("nab_standard") and not k.endswith("threshold")):
        typer.echo(f"  {key} = {result.metrics[key]:.2f}")


@app.command()
def bootstrap(
    env: str | None = Env,
    no_evaluate: bool = typer.Option(False, "--no-evaluate", help="Skip the NAB calibration of a new anomaly champion."),
) -> None:
    """Register a champion for each streaming model that has none (demo, fresh machine)."""
    from lakehouse.config import load_settings
    from models import champion

    settings = load_settings(env)
    uri = champion.resolve_settings_uri(settings.mlflow.tracking_uri)
    versions = champion.ensure_champions(uri, settings.mlflow.anomaly_model, settings.mlflow.refund_model, evaluate=not no_evaluate)
    for name, version in versions.items():
        typer.echo(f"{name}: champion {'version ' + version if version else 'missing (no training data)'}")


@app.command()
def evaluate(
    kind: str = typer.Option(ENSEMBLE, "--kind", help=f"Model family to evaluate ({', '.join(KINDS)})."),
    no_search: bool = typer.Option(False, "--no-search", help="Evaluate the family's defaults only (no recorded search)."),
    output: Path = typer.Option(REPO_ROOT / "bench" / "results" / "nab.json", "--output", help="JSON results."),
) -> None:
    """NAB in sample vs out of sample (leave-one-file-out, the gate; and leave-one-group-out),
    per group and file, all profiles, with alarm-episode precision and window recall."""
    from models.validation import report_table, validate

    report = validate(kind, search=not no_search)
    table = report_table(report)
    payload = {
        "kind": kind,
        "metrics": report.metrics,
        "selections": report.selections,
        "deploy_params": report.deploy_params,
        "search": report.search.to_dict(orient="records"),
        "rows": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
    }
    for (group, profile), part in table.groupby(["group", "profile"], sort=False):
        typer.echo(f"\n== {group} · {profile} ==")
        typer.echo(part.drop(columns=["group", "profile"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo("\n== out of sample (headline) vs in sample, normalised NAB ==")
    for key in sorted(k for k in report.metrics if k.endswith("_all")):
        typer.echo(f"  {key} = {report.metrics[key]:.1f}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2, default=float))
    typer.echo(f"\nwritten {output}")


@app.command()
def promote(
    min_improvement: float = typer.Option(0.0, "--min-improvement", help="Required gain in NAB points."),
    tracking_uri: str | None = TrackingUri,
    model_name: str | None = ModelName,
    env: str | None = Env,
) -> None:
    """Promotion gate: the challenger replaces the champion only if it scores better."""
    tracking_uri, model_name = registry_target(env, tracking_uri, model_name)
    decision = registry.promote_if_better(model_name=model_name, tracking_uri=tracking_uri, min_improvement=min_improvement)
    verdict = "PROMOTED" if decision.promoted else "kept champion"
    typer.echo(f"{verdict}: {decision.reason} ({decision.metric})")


@app.command()
def serve(
    port: int = typer.Option(5001, "--port", "-p"),
    host: str = typer.Option("127.0.0.1", "--host"),
    tracking_uri: str | None = TrackingUri,
    model_name: str | None = ModelName,
    env: str | None = Env,
) -> None:
    """Serve ``models:/<name>@champion`` over REST (``POST /invocations``)."""
    tracking_uri, model_name = registry_target(env, tracking_uri, model_name)
    raise typer.Exit(subprocess.call(serve_command(model_name, port, host), env=serve_environment(tracking_uri)))


def serve_command(model_name: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``mlflow models serve`` command line for the champion."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    return [
        str(mlflow_bin), "models", "serve", "-m", f"models:/{model_name}@{registry.CHAMPION}",
        "--env-manager", "local", "-p", str(port), "-h", host,
    ]  # fmt: skip


def serve_environment(tracking_uri: str | None = None) -> dict[str, str]:
    """Environment for serving: tracking URI set, the venv's bin first on PATH (uvicorn)."""
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = registry.resolve_tracking_uri(tracking_uri)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@app.command()
def score(
    input: Path = typer.Option(..., "--input", help="CSV with a timestamp and a value column."),
    output: Path = typer.Option(..., "--output", help="CSV to write."),
    timestamp_col: str = typer.Option(TIMESTAMP, "--timestamp-col"),
    value_col: str = typer.Option(VALUE, "--value-col"),
    tracking_uri: str | None = TrackingUri,
    model_name: str | None = ModelName,
    env: str | None = Env,
) -> None:
    """Score a CSV causally with the champion (row t sees only rows <= t)."""
    tracking_uri, model_name = registry_target(env, tracking_uri, model_name)
    try:
        scorer = registry.load_scorer(registry.CHAMPION, model_name=model_name, tracking_uri=tracking_uri)
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    frame = pd.read_csv(input)
    out = score_frame(scorer, frame, timestamp_col, value_col)
    out.to_csv(output, index=False)
    typer.echo(f"scored {len(out)} rows, {int(out['is_anomaly'].sum())} anomalies -> {output}")


def score_frame(scorer: KpiScorer, frame: pd.DataFrame, timestamp_col: str, value_col: str) -> pd.DataFrame:
    """Score one CSV's rows (kept in input order) and shape the CLI output columns."""
    scored = scorer.score(frame, timestamp_col=timestamp_col, value_col=value_col)
    out = pd.DataFrame({"timestamp": frame[timestamp_col], "value": frame[value_col]})
    for col in SCORE_COLUMNS[2:]:
        out[col] = scored[col].to_numpy()
    return out[SCORE_COLUMNS]


if __name__ == "__main__":
    app()
