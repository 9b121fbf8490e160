"""``trivas cluster up|down|status|submit``: a Spark standalone cluster and a three-broker Kafka
on this machine (:mod:`lakehouse.runtime.cluster`), for trying trivas beyond one JVM.

    trivas cluster up                       # 3 KRaft brokers (RF 3, min.insync 2), master + 2 workers
    trivas cluster submit -- pipeline run --available-now
    trivas cluster status
    trivas cluster down

The commands default to ``--env cluster`` (conf/cluster.yaml points Kafka and Spark here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console

from lakehouse.config import Settings, load_settings

console = Console()
cluster_app = typer.Typer(help="A Spark standalone cluster and a 3-broker Kafka on this machine.", no_args_is_help=True)
ENV_HELP = "environment (default: cluster, conf/cluster.yaml)"


def _settings(env: str | None) -> Settings:
    return load_settings(env or "cluster")


@cluster_app.command("up")
def cluster_up(env: str = typer.Option(None, help=ENV_HELP)) -> None:
    """Start (or reuse) the brokers, the master and the workers; create the topics."""
    from lakehouse.catalog import catalog
    from lakehouse.runtime import cluster

    status = cluster.up(_settings(env), catalog())
    console.print(f"spark master {status.master_url} with {status.alive_workers} workers; kafka {status.bootstrap}")
    console.print(f"topics: {', '.join(status.topics)}")


@cluster_app.command("down")
def cluster_down(env: str = typer.Option(None, help=ENV_HELP)) -> None:
    """Stop the workers, the master and the brokers."""
    from lakehouse.runtime import cluster

    stopped = cluster.down(_settings(env))
    console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@cluster_app.command("status")
def cluster_status(env: str = typer.Option(None, help=ENV_HELP)) -> None:
    """Which processes run, the workers the master counts alive, the topics."""
    from lakehouse.runtime import cluster

    status = cluster.status(_settings(env))
    console.print_json(json.dumps(asdict(status)))
    if any(service.pid is None for service in status.services):
        raise typer.Exit(1)


@cluster_app.command(
    "submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def cluster_submit(
    ctx: typer.Context,
    wheel: Path = typer.Option(None, help="the trivas wheel to ship (default: built from this checkout)"),
    env: str = typer.Option(None, help=ENV_HELP),
) -> None:
    """Run ``trivas <ARGS>`` on the cluster with spark-submit, e.g. ``-- pipeline run --available-now``."""
    from lakehouse.runtime import cluster

    settings = _settings(env)
    args = list(ctx.args)
    if not args:
        raise typer.BadParameter("give the trivas command to run, e.g. `-- pipeline run --available-now`")
    if "--env" not in args:
        args += ["--env", settings.env]
    if wheel is None:
        wheel = cluster.build_wheel(cluster.cluster_dir(settings) / "dist")
        console.print(f"built {wheel.name}")
    log_file = cluster.cluster_dir(settings) / "submit" / "driver.log"
    console.print(f"submitting `trivas {' '.join(args)}` to {cluster.master_url(settings)}; driver log {log_file}")
    driver = cluster.start_submit(settings, wheel, args, log_file)
    try:
        code = follow(driver, log_file)
    except KeyboardInterrupt:  # Ctrl-C: let `pipeline run` finish its micro-batches
        driver.terminate()
        code = driver.wait()
    if code != 0:
        console.print(f"[red]failed with exit code {code}[/] (driver log {log_file})")
        raise typer.Exit(code)
    console.print("done")


def follow(driver: subprocess.Popen[bytes], log_file: Path) -> int:
    """Echo the driver's log as it grows (as spark-submit in a terminal would) until it exits."""
    with log_file.open("rb") as log:
        while True:
            exited = driver.poll() is not None
            chunk = log.read()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            if exited:
                return driver.returncode
            time.sleep(0.5)


@cluster_app.command("probe")
def cluster_probe(tasks: int = typer.Option(4, help="tasks to spread over the executors"), env: str = typer.Option(None, help=ENV_HELP)) -> None:
    """Where executors load trivas and its conf/ from (run it with `submit -- cluster probe`): one JSON line per task."""
    from lakehouse.runtime import cluster
    from lakehouse.runtime.spark import get_spark

    spark = get_spark(_settings(env), app_name="trivas-probe")
    for view in cluster.probe_executors(spark, tasks):
        print(json.dumps(view))  # plain lines: the caller parses them
