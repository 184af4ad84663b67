"""``kubeedge demo``: a live edge with simulated devices, in one command.

Starts the embedded broker, an edge in standalone mode with the virtual mapper and the demo's
devices, shows a refreshing table of twins, and sets a desired value to show it land on the
device. Everything lives in a temporary folder that is removed at the end (unless ``--keep``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import math
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from kubeedge.bus import free_port
from kubeedge.cli.edge import stop_on_signals
from kubeedge.client import EdgeClient
from kubeedge.config import load_config
from kubeedge.errors import KubeEdgeError
from kubeedge.plugins import installed_plugins

SHOWCASE_DEVICE = "demo/thermostat-living-room"
SHOWCASE_PROPERTY = "setpoint"
SHOWCASE_VALUE = "23.5"
SIGNIFICANT_DIGITS = {"float": 6, "double": 15}
"""Decimal digits a value of the type keeps through text and back (C's FLT_DIG and DBL_DIG): the
rest of a float32 reading printed as a double is noise."""
HEX_UP_TO = 16
"""Bytes values up to this length are shown in hex, longer ones in base64."""


@click.command()
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--port", type=int, default=0, help="Port of the embedded broker (default: a free one).")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Work in this folder and keep it (config, manifests, twin database).",
)
@click.option(
    "--with-cloud",
    is_flag=True,
    help="Run a cloud and an edge as two processes (needs kubeedge-cloud): the table is the status "
    "the cloud holds, and the desired value is set in the cloud's manifest.",
)
def demo(duration: float | None, port: int, keep: Path | None, with_cloud: bool) -> None:
    """A live edge with simulated devices: twins refresh, a desired value lands.

    Uses the embedded MQTT broker and the virtual mapper (kubeedge-mapper-virtual); nothing
    else is needed. While it runs, set desired values from another terminal with the command it
    prints, or edit the manifests it prints the path of: the edge follows changes.

    With --with-cloud, `kubeedge cloud run` serves the devices from a folder of manifests and an
    edge (`kubeedge edge run`) connects to it; both stop with the demo.
    """
    if "virtual" not in installed_plugins("mapper"):
        raise click.ClickException("the demo needs the virtual mapper: pip install -e mappers/virtual")
    if with_cloud:
        from kubeedge.cli import demo_cloud

        if not demo_cloud.cloud_installed():
            raise click.ClickException(
                "demo --with-cloud needs the cloud, kubeedge-cloud, which is not installed: "
                "pip install -e cloud (make demo and make test install it)"
            )
    workdir = keep or Path(tempfile.mkdtemp(prefix="kubeedge-demo-"))
    try:
        if with_cloud:
            asyncio.run(demo_cloud.run(workdir, port or free_port(), duration))
        else:
            config_path = _prepare(workdir, port or free_port())
            asyncio.run(_run(config_path, duration))
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    kept = f"kept in {keep}" if keep is not None else "its temporary folder removed"
    stopped = "cloud and edge" if with_cloud else "edge and broker"
    click.echo(f"demo stopped: {stopped} shut down, {kept}.")


def _prepare(workdir: Path, port: int) -> Path:
    manifests = workdir / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    source = resources.files("kubeedge.demo").joinpath("devices.yaml")
    (manifests / "devices.yaml").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    config = {
        "node": "demo",
        "bus": {"url": "embedded", "listen": f"127.0.0.1:{port}"},
        "dataDir": str(workdir / "data"),
        "manifests": str(manifests),
        "mappers": {"virtual": {}},
    }
    path = workdir / "edge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


async def _run(config_path: Path, duration: float | None) -> None:
    from kubeedge.edge.core import EdgeCore

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=140)
    config = load_config(config_path)
    core = EdgeCore(config)
    await core.start()
    stop = stop_on_signals()
    loop = asyncio.get_running_loop()
    if duration is not None:
        loop.call_later(duration, stop.set)
    showcase = _Showcase()
    intro = _intro(config_path, config.manifests)
    try:
        client_bus = core.context.new_bus_client("demo-cli")  # type: ignore[union-attr]
        await client_bus.start()
        client = EdgeClient(client_bus, config.node)
        task = asyncio.create_task(showcase.run(client))
        if console.is_terminal:
            with Live(console=console, refresh_per_second=4, screen=False) as live:
                while not stop.is_set():
                    if showcase.outcome is not None and not showcase.shown:
                        live.console.print(showcase.outcome)  # once, above the refreshing table
                        showcase.shown = True
                    live.update(Group(intro, _table(core), showcase.render()))
                    await _wait(stop, 0.25)
        else:
            console.print(intro)
            next_print = 0.0
            said = ""
            while not stop.is_set():
                if time.monotonic() >= next_print:
                    console.print(_table(core))
                    next_print = time.monotonic() + 5
                line = showcase.outcome or showcase.render()
                if line != said:  # each line once, the outcome too
                    console.print(line)
                    said = line
                await _wait(stop, 0.25)
            console.print(_table(core))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client_bus.stop()
    finally:
        await core.stop()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


class _Showcase:
    """Sets a desired value a few seconds in and reports how long it took to land.

    ``outcome`` is the one line that says how it went (printed once, not with every refresh);
    ``render()`` is what the refreshing display shows meanwhile.
    """

    def __init__(self) -> None:
        self.status = "in 3 s the demo sets a desired value, as `kubeedge twin set` does ..."
        self.outcome: str | None = None
        self.shown = False

    async def run(self, client: EdgeClient) -> None:
        await asyncio.sleep(3)
        started = time.monotonic()
        self.status = f"desired {SHOWCASE_PROPERTY}={SHOWCASE_VALUE} sent to {SHOWCASE_DEVICE} ..."
        try:
            await client.set_desired(SHOWCASE_DEVICE, SHOWCASE_PROPERTY, SHOWCASE_VALUE)
            await client.wait_reported(SHOWCASE_DEVICE, SHOWCASE_PROPERTY, SHOWCASE_VALUE, timeout=10)
        except KubeEdgeError as exc:
            self.outcome = f"[red]✗ desired value did not land: {escape(str(exc))}[/]"
            return
        took = (time.monotonic() - started) * 1000
        self.outcome = (
            f"[green]✓ desired {SHOWCASE_PROPERTY}={SHOWCASE_VALUE} landed on {SHOWCASE_DEVICE}: "
            f"written, read back and reported in {took:.0f} ms[/]"
        )

    def render(self) -> str:
        return "" if self.outcome is not None else self.status


def _intro(config_path: Path, manifests: Path | None) -> Panel:
    from kubeedge.cli.main import command_name

    kubeedge = command_name()
    text = (
        "[bold]kubeedge demo[/]: an edge with an embedded MQTT broker, the virtual mapper and three "
        "simulated devices.\n"
        f"Set a desired value from another terminal:\n"
        f"  [cyan]{kubeedge} twin set -c {config_path} demo/thermostat-office setpoint 22[/]\n"
        f"  [cyan]{kubeedge} device get -c {config_path} demo/thermostat-office[/]\n"
        f"Add or change devices in [cyan]{manifests}/devices.yaml[/]: the edge follows the file.\n"
        "Ctrl-C stops."
    )
    return Panel(text, expand=False)


def _table(core: Any) -> Table:
    twin = core.module("twin")
    table = Table(header_style="bold", expand=False)
    for column in ("DEVICE", "STATE", "PROPERTY", "TYPE", "DESIRED", "REPORTED", "UPDATED"):
        table.add_column(column)
    now = time.time() * 1000
    for key in sorted(twin.devices):
        device = twin.devices[key]
        first = True
        for name in sorted(device.twins):
            record = device.twins[name]
            if record.deleted:
                continue
            pending = record.expected is not None and record.expected != record.actual
            reported = escape(shown_value(record.type, record.actual) if record.actual is not None else "-")
            if record.error:
                reported = f"[red]{escape(record.error)}[/]"
            age = f"{(now - record.actual_ts) / 1000:.1f}s" if record.actual_ts else "-"
            table.add_row(
                key if first else "",
                _state(device.state) if first else "",
                name,
                record.type,
                f"[yellow]{escape(shown_value(record.type, record.expected))}[/]"
                if pending and record.expected
                else escape(shown_value(record.type, record.expected or "")),
                reported,
                age,
            )
            first = False
    return table


def _state(state: str | None) -> str:
    colour = {"online": "green", "offline": "red", "unhealthy": "yellow"}.get(state or "", "dim")
    return f"[{colour}]{state or 'unknown'}[/]"


def shown_value(kind: str, value: str) -> str:
    """A twin value as the demo's table shows it: a float or double to its type's precision
    (:data:`SIGNIFICANT_DIGITS`), bytes labelled as hex or base64; anything else as it is."""
    if not value:
        return value
    if kind in SIGNIFICANT_DIGITS:
        try:
            number = float(value)
        except ValueError:
            return value
        if not math.isfinite(number):
            return value
        return f"{number:.{SIGNIFICANT_DIGITS[kind]}g}"
    if kind == "bytes":
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
        if len(data) <= HEX_UP_TO:
            return f"hex {data.hex()}"
        return f"base64 {value} ({len(data)} bytes)"
    return value
