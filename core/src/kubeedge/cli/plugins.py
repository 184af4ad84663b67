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
    """Protocol mappers: list them, run one in its own process, start a new one."""


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
    from kubeedge.cli.edge import wide_console

    console = wide_console()
    if statuses:
        console.print(table)
    else:
        console.print("No mappers installed (pip install kubeedge-mapper-NAME).")
    for s in statuses:
        if s.error:
            console.print(f"[red]✗[/] {escape(s.error)}")
    if any(s.enabled and s.error for s in statuses):
        sys.exit(1)


@mapper.command("new")
@click.argument("name")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder in which kubeedge-mapper-NAME/ is created.",
)
def new_mapper(name: str, dest: Path) -> None:
    """Create kubeedge-mapper-NAME: a complete mapper distribution to start from.

    NAME is the protocol name devices will use (spec.protocol.protocolName): lower-case letters
    and digits, words joined by hyphens. The result works at once against its simulated device;
    replace driver.py and simulator.py with your protocol and keep the tests (the conformance suite).
    """
    from kubeedge import __version__
    from kubeedge.mapper.scaffold import ScaffoldError, generate
    from kubeedge.plugins import installed_plugins

    installed = installed_plugins("mapper").get(name)
    if installed:
        raise click.ClickException(
            f"a mapper named {name!r} is already installed ({installed[0].distribution}); choose another name"
        )
    try:
        target = generate(name, dest, __version__)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    from kubeedge.cli.main import command_name
    from kubeedge.mapper.scaffold import names

    package = names(name, __version__)["package"]
    python = sys.executable
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"[green]created[/] {target}")
    console.print("next:")
    console.print(f"  {python} -m pip install -e {escape(str(target))}\\[test]")
    console.print(f"  {python} -m pytest {target}/tests     # the conformance suite against the simulator")
    console.print(f"  {command_name()} mapper list")
    console.print(
        f"then write your protocol in {target}/src/{package}/driver.py (and its simulator in simulator.py);"
    )
    console.print("the guide: docs/writing-a-mapper.md in the kubeedge repository")
