"""``kubeedge mapper ...``: the installed protocol mappers."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kubeedge.config import load_config
from kubeedge.errors import ConfigError, PluginError
from kubeedge.plugins import PluginHost

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Edge configuration file (its mappers: section says what is enabled).",
)


@click.group()
def mapper() -> None:
    """Protocol mappers: list what is installed and enabled."""


@mapper.command("list")
@CONFIG_OPTION
def list_mappers(config_path: Path | None) -> None:
    """Installed mappers: name (= protocol), distribution, version, enabled, status.

    Enabled mappers are imported to check that they load; the others are not imported.
    Exit status 1 if an enabled mapper is missing or broken.
    """
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    host = PluginHost()
    statuses = host.load("mapper", config.enabled_mappers())
    if any(s.loaded for s in statuses):
        with contextlib.suppress(PluginError):  # each status now carries its own error
            host.drivers(statuses)
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "DISTRIBUTION", "VERSION", "ENABLED", "STATUS"):
        table.add_column(column, no_wrap=column in ("NAME", "ENABLED", "STATUS"))
    for s in statuses:
        if s.error:
            state = "[red]not installed[/]" if not s.installed else "[red]error[/]"
        elif s.loaded:
            state = "[green]loaded[/]"
        else:
            state = "[dim]not loaded[/]"
        table.add_row(s.name, s.distribution, s.version, "yes" if s.enabled else "no", state)
    console = Console(soft_wrap=True)
    if statuses:
        console.print(table)
    else:
        console.print("No mappers installed (pip install kubeedge-mapper-NAME).")
    for s in statuses:
        if s.error:
            console.print(f"[red]✗[/] {escape(s.error)}")
    if any(s.enabled and s.error for s in statuses):
        sys.exit(1)
