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
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output: -v one level more of kubeedge's own (info for commands, debug for "
    "edge run and mapper run, which log at info by default) and libraries' info; -vv everything at debug.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Devices as Kubernetes resources, served at the edge by protocol mappers.

    \b
    Start here:
      kubeedge demo                       a live edge with simulated devices
      kubeedge validate -f manifests/     check Device/DeviceModel YAML offline
      kubeedge mapper list                installed protocol mappers
    """
    ctx.meta[VERBOSE_KEY] = verbose
    configure_logging(verbose)


VERBOSE_KEY = "kubeedge.verbose"
QUIET_LIBRARY_LOGGERS = ("transitions",)
"""Loggers quiet (warnings only) up to -v: amqtt's state machine logs every client's every state
change at info."""


def configure_logging(verbose: int, service: bool = False) -> None:
    """Log levels for kubeedge's loggers (and installed plugins'), and for every other library.

    A service (``edge run``, ``mapper run``) logs what it does at info: device state changes with
    their reason, mappers saying hello, snapshots, manifest problems, rejected messages. A one-shot
    command logs warnings only. ``-v`` adds a level of ours and the libraries' info, ``-vv`` turns
    everything to debug (amqtt's and its ``transitions`` state machine's too).
    """
    ours = (logging.INFO if service else logging.WARNING) - 10 * verbose
    libraries = logging.WARNING - 10 * verbose
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(max(libraries, logging.DEBUG))
    if ours != libraries:
        for name in _our_logger_names():
            logging.getLogger(name).setLevel(max(ours, logging.DEBUG))
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    if verbose >= 2:
        # the embedded broker otherwise keeps amqtt at errors (it logs late acknowledgements as warnings)
        logging.getLogger("amqtt").setLevel(logging.DEBUG)


def service_logging() -> None:
    """Called by long-running commands: their own log lines at info (see :func:`configure_logging`)."""
    ctx = click.get_current_context(silent=True)
    verbose = int(ctx.meta.get(VERBOSE_KEY, 0)) if ctx is not None else 0
    configure_logging(verbose, service=True)


def _our_logger_names() -> list[str]:
    """``kubeedge`` and the top-level packages of installed plugins (entry point metadata, no import)."""
    from kubeedge.plugins import ENTRY_POINT_GROUPS, installed_plugins

    names = {"kubeedge"}
    for kind in ENTRY_POINT_GROUPS:
        for entries in installed_plugins(kind).values():
            names.update(entry.target.split(":")[0].split(".")[0] for entry in entries)
    return sorted(names)


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
from kubeedge.cli import discover as _discover  # noqa: E402
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
_plugins.mapper.add_command(_discover.discover)
