"""The top-level ``kubeedge`` group and the loading of command plugins."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console

from kubeedge import __version__
from kubeedge.plugins import PluginHost

log = logging.getLogger(__name__)
err_console = Console(stderr=True)


class KubeEdgeGroup(click.Group):
    """A group that adds the commands of ``kubeedge.cli`` plugins the first time it is asked."""

    _plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        host = PluginHost()
        for status in host.load("cli", _installed_cli_names()):
            if status.error:
                # A broken command plugin is named, and the rest of the CLI keeps working.
                err_console.print(f"[yellow]warning:[/] {status.error}")
        host.pm.hook.kubeedge_register_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load_plugins()
        return super().get_command(ctx, cmd_name)


def _installed_cli_names() -> list[str]:
    from kubeedge.plugins import installed_plugins

    return list(installed_plugins("cli"))


@click.group(cls=KubeEdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubeedge")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Devices as Kubernetes resources, served at the edge by protocol mappers.

    \b
    Start here:
      kubeedge demo                       a live edge with simulated devices
      kubeedge validate -f manifests/     check Device/DeviceModel YAML offline
      kubeedge mapper list                installed protocol mappers
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def command_name() -> str:
    """How to run kubeedge again from a shell: the bare name if it is on PATH, else its full path."""
    found = shutil.which("kubeedge")
    if found and Path(found).resolve() == Path(sys.argv[0]).resolve():
        return "kubeedge"
    beside = Path(sys.executable).parent / "kubeedge"
    return str(beside) if beside.exists() else f"{sys.executable} -m kubeedge"


def main() -> None:
    cli(prog_name="kubeedge")


from kubeedge.cli import demo as _demo  # noqa: E402
from kubeedge.cli import edge as _edge  # noqa: E402
from kubeedge.cli import manifests as _manifests  # noqa: E402
from kubeedge.cli import plugins as _plugins  # noqa: E402

cli.add_command(_manifests.validate)
cli.add_command(_manifests.crds)
cli.add_command(_plugins.mapper)
cli.add_command(_edge.edge)
cli.add_command(_edge.device)
cli.add_command(_edge.twin)
cli.add_command(_demo.demo)
_plugins.mapper.add_command(_edge.mapper_run)
