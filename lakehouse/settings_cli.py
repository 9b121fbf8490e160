"""``trivas config show`` and the ``--env`` option every ``trivas`` command takes.

``--env E`` is added to every command and group of the typer tree that does not declare its
own (see :func:`with_env_options`): it sets ``TRIVAS_ENV`` for this process before the command runs, so
every settings read in it (and every process it starts) sees environment ``E``. A command that
declares ``--env`` itself keeps its own option, which means the same.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import typing
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from lakehouse import conf_dir

config_app = typer.Typer(help="The settings tree: what each value is and where it came from.", no_args_is_help=True)
console = Console()
ENV_HELP = "environment (conf/<env>.yaml; default $TRIVAS_ENV or local)"


@config_app.command("show")
def config_show(
    env: str = typer.Option(None, "--env", help=ENV_HELP),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line: key, value, origin"),
) -> None:
    """Print the effective settings, secrets masked, with the layer each value came from
    (default, base.yaml, a section file, <env>.yaml, an overlay, an environment variable)."""
    from lakehouse.config import provenance

    rows = provenance(env)
    if as_json:
        for key, value, origin in rows:
            typer.echo(json.dumps({"key": key, "value": value, "origin": origin}))
        return
    table = Table("key", "value", "from")
    for column in table.columns:
        column.overflow = "fold"
    for key, value, origin in rows:
        table.add_row(key, value, origin)
    console.print(table)


def select_environment(env: str | None) -> None:
    """Make ``env`` this process's environment (``TRIVAS_ENV``) after checking it exists."""
    if env is None:
        return
    if not (conf_dir() / f"{env}.yaml").exists():
        raise typer.BadParameter(f"unknown environment {env!r}: {conf_dir() / (env + '.yaml')} does not exist")
    os.environ["TRIVAS_ENV"] = env
    from lakehouse.config import settings

    settings.cache_clear()


def with_env_parameter(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` with an ``--env`` option, unless it declares ``env`` itself."""
    signature = inspect.signature(callback, eval_str=True)
    if "env" in signature.parameters:
        return callback

    @functools.wraps(callback)
    def with_env(*args: Any, env: str | None = None, **kwargs: Any) -> Any:
        select_environment(env)
        return callback(*args, **kwargs)

    option = inspect.Parameter(
        "env", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--env", help=ENV_HELP), annotation=str | None
    )
    with_env.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])  # type: ignore[attr-defined]
    with_env.__annotations__ = {**typing.get_type_hints(callback), "env": str | None}
    return with_env


def with_env_options(app: typer.Typer) -> typer.Typer:
    """Give every command and group callback of ``app`` an ``--env`` option (in place)."""
    for info in app.registered_commands:
        if callable(info.callback):
            info.callback = with_env_parameter(info.callback)
    if app.registered_callback is not None and callable(app.registered_callback.callback):
        app.registered_callback.callback = with_env_parameter(app.registered_callback.callback)
    for group in app.registered_groups:
        if callable(group.callback):
            group.callback = with_env_parameter(group.callback)
        if group.typer_instance is not None:
            with_env_options(group.typer_instance)
    return app


def walk_commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of a click tree (``typer.main.get_command``) with the words
    that invoke it."""
    found = [(path, command)]
    for name, child in sorted(getattr(command, "commands", {}).items()):
        found.extend(walk_commands(child, (*path, name)))
    return found
