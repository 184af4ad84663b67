"""``kubeedge edge run``, ``kubeedge mapper run``, ``kubeedge device ...`` and ``kubeedge twin set``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kubeedge.api import topics
from kubeedge.api.assignment import EdgeStatus
from kubeedge.bus import BusClient
from kubeedge.client import EdgeClient, EdgeRequestError
from kubeedge.config import EdgeConfig, load_config
from kubeedge.errors import KubeEdgeError
from kubeedge.memory import trim_periodically
from kubeedge.plugins import PluginHost

T = TypeVar("T")


def wide_console() -> Console:
    """A console for tables: the terminal's width, or wide enough not to cut columns when piped."""
    plain = Console()
    return Console(highlight=False, soft_wrap=True, width=None if plain.is_terminal else 250)


console = wide_console()


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: (
            os.environ.get("KUBEEDGE_CONFIG") or ("edge.yaml" if Path("edge.yaml").exists() else None)
        ),
        help="Edge configuration file [env KUBEEDGE_CONFIG; default ./edge.yaml if present].",
    )(func)


def _config(path: Path | None) -> EdgeConfig:
    try:
        return load_config(path)
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------- edge run


@click.group()
def edge() -> None:
    """Run the edge core."""


@edge.command("run")
@config_option
def edge_run(config_path: Path | None) -> None:
    """Run the edge: bus, device twin, device sources and the enabled mappers, until Ctrl-C.

    \b
    A minimal edge.yaml for standalone mode:
      node: edge-1
      manifests: ./manifests      # Device/DeviceModel YAML, followed live
      mappers:
        virtual: {}
    """
    from kubeedge.cli.main import service_logging
    from kubeedge.edge.core import EdgeCore

    service_logging()
    config = _config(config_path)
    core = EdgeCore(config)

    async def main() -> None:
        stop = stop_on_signals()
        await core.start()
        _print_started(core)
        try:
            # A signal, or a task of the edge that failed beyond repair (its supervisor says why).
            await _first(stop.wait(), core.failed.wait())
        finally:
            console.print("stopping ...")
            await core.stop()
        if core.failure is not None:
            raise KubeEdgeError(f"edge {config.node} stopped: {core.failure}")

    _run(main())


async def _first(*waits: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


@edge.command("status")
@config_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def edge_status(config_path: Path | None, output: str) -> None:
    """The edge's health: online or offline, its instance, in-process mappers and problems.

    Read from the edge's retained status message. Exit status 1 when the edge is offline or
    reports a problem (a task that failed, or why it stopped), so a health check can call it.
    """
    config = _config(config_path)

    from kubeedge.edge.edgehub import CLOUD_STATUS, CloudLinkStatus

    link: dict[str, CloudLinkStatus] = {}

    async def fetch(client: EdgeClient) -> EdgeStatus | None:
        got: asyncio.Future[EdgeStatus] = asyncio.get_running_loop().create_future()
        got_link = asyncio.Event()

        def on_status(_topic: str, payload: bytes) -> None:
            with contextlib.suppress(ValueError):
                if not got.done():
                    got.set_result(EdgeStatus.model_validate_json(payload))

        def on_link(_topic: str, payload: bytes) -> None:
            with contextlib.suppress(ValueError):
                link["cloud"] = CloudLinkStatus.model_validate_json(payload)
                got_link.set()

        if config.cloud is not None:  # the edge hub's link and outbox (retained, like the status)
            client.bus.subscribe(topics.edge_topic(config.node, CLOUD_STATUS), on_link, qos=1)
        client.bus.subscribe(topics.edge_topic(config.node, topics.EDGE_STATUS), on_status, qos=1)
        try:
            status = await asyncio.wait_for(got, 2)  # retained: here at once if the edge ever ran
        except TimeoutError:
            return None
        if config.cloud is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(got_link.wait(), 1)
        return status

    status = _run(_with_edge(config, fetch))
    if status is None:
        raise click.ClickException(f"edge node {config.node} has never said its status on this bus")
    cloud = link.get("cloud")
    if output == "json":
        body = status.model_dump(mode="json")
        if cloud is not None:
            body["cloud"] = cloud.model_dump(mode="json")
        click.echo(json.dumps(body, indent=2))
    else:
        colour = "green" if status.state == "online" and not status.problems else "red"
        console.print(f"edge {config.node} [{colour}]{status.state}[/]  instance {status.instance}")
        console.print(f"  mappers   {', '.join(status.mappers) or 'none in process'}")
        for problem in status.problems:
            console.print(f"  [red]problem[/]   {escape(problem)}")
        if not status.problems:
            console.print("  problems  none")
        if cloud is not None:
            _print_cloud_link(cloud)
        elif config.cloud is not None:
            hubs = escape(", ".join(config.cloud.hubs))
            console.print(f"  cloud     {hubs}: [yellow]no link status from the edge[/]")
    if status.state != "online" or status.problems:
        sys.exit(1)


def _print_cloud_link(cloud: Any) -> None:
    """The edge hub's link and outbox (an edge in cloud mode)."""
    colour = {"connected": "green", "refused": "red"}.get(cloud.state, "yellow")
    synced = ", synced" if cloud.synced else ""
    console.print(
        f"  cloud     {escape(cloud.url)} [{colour}]{cloud.state}[/]{synced}, {cloud.objects} object(s) held"
    )
    if cloud.reason and cloud.state != "connected":
        console.print(f"            {escape(cloud.reason)}")
    box = cloud.outbox
    dropped = box.get("dropped_entries", 0)
    size = f"{box.get('bytes', 0)} of {box.get('max_bytes', 0)} bytes"
    console.print(
        f"  outbox    {box.get('entries', 0)} entr(y/ies), {size}; "
        f"dropped {'[red]' if dropped else ''}{dropped}{'[/]' if dropped else ''} "
        f"({box.get('dropped_bytes', 0)} bytes), refused by the cloud {box.get('refused_entries', 0)}"
    )


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (installed first, so an early signal is not lost).

    SIGUSR1 prints every asyncio task's stack to stderr: what a stuck process is waiting for.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    return stop


def _dump_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


def _print_started(core: Any) -> None:
    config = core.config
    ctx = core.context
    console.print(f"[bold green]edge {config.node} running[/]")
    console.print(f"  bus       {ctx.bus_url}{' (embedded)' if core.broker else ''}")
    console.print(f"  data      {config.data_dir}")
    if config.manifests:
        console.print(f"  manifests {config.manifests} ({len(ctx.registry)} device(s))")
    if config.cloud is not None:
        console.print(f"  cloud     {', '.join(config.cloud.hubs)} ({len(ctx.registry)} device(s) known)")
    console.print(f"  modules   {', '.join(m.name for m in core.modules)}")
    console.print(f"  mappers   {', '.join(config.enabled_mappers()) or 'none in process'}")


# --------------------------------------------------------------------------- mapper run


@click.command("run")
@click.argument("name")
@config_option
def mapper_run(name: str, config_path: Path | None) -> None:
    """Run one mapper in its own process, against a running edge's bus.

    NAME is the protocol (the mapper's entry point name). Its settings come from mappers.NAME
    in the edge configuration; the bus address from bus.url (or bus.listen when embedded).
    """
    from kubeedge.cli.main import service_logging
    from kubeedge.edge.mappers import mapper_settings
    from kubeedge.mapper.runtime import MapperRuntime, goodbye_will

    service_logging()
    config = _config(config_path)
    host = PluginHost()
    try:
        statuses = host.require("mapper", [name], origin="asked for on the command line")
        driver_cls = host.drivers(statuses)[name]
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None
    entry = config.mappers.get(name)
    runtime_settings, driver_settings = mapper_settings(name, driver_cls, entry.settings if entry else {})

    async def main() -> None:
        stop = stop_on_signals()
        instance = uuid.uuid4().hex
        bus = BusClient.from_config(
            config.bus,
            f"{config.node}-mapper-{name}-{os.getpid()}",
            will=goodbye_will(config.node, name, instance),
        )
        await bus.start(timeout=None)
        await _refuse_if_served_in_process(bus, config.node, name)
        origin = next((s.distribution, s.version) for s in statuses if s.name == name)
        runtime = MapperRuntime(
            driver_cls,
            bus,
            config.node,
            driver_settings,
            runtime_settings,
            distribution=origin,
            instance=instance,
        )
        await runtime.start()
        console.print(
            f"[bold green]mapper {name} running[/] for node {config.node} "
            f"on {bus.address.host}:{bus.address.port}"
        )
        trimmer = asyncio.create_task(trim_periodically(), name="memory-trim")
        try:
            await stop.wait()
        finally:
            trimmer.cancel()
            await runtime.stop()
            await bus.stop()

    _run(main())


async def _refuse_if_served_in_process(bus: BusClient, node: str, protocol: str) -> None:
    """Two mappers for one protocol would both serve every device: refuse to be the second."""
    status: asyncio.Future[EdgeStatus] = asyncio.get_running_loop().create_future()

    def on_status(_topic: str, payload: bytes) -> None:
        with contextlib.suppress(ValueError):
            if not status.done():
                status.set_result(EdgeStatus.model_validate_json(payload))

    bus.subscribe(topics.edge_topic(node, topics.EDGE_STATUS), on_status, qos=1)
    try:
        await asyncio.wait_for(bus.wait_connected(), 5)
        seen = await asyncio.wait_for(status, 1)  # retained: here at once if the edge ever ran
    except TimeoutError:
        return  # no edge (yet): nothing to compare with
    if seen.state == "online" and protocol in seen.mappers:
        await bus.stop()
        raise click.ClickException(
            f"edge node {node} already runs the {protocol} mapper in its own process; set "
            f"mappers.{protocol}.enabled: false in that edge's configuration to run it here instead"
        )


def _bus(config: EdgeConfig, name: str) -> BusClient:
    return BusClient.from_config(config.bus, f"{config.node}-{name}")


async def _with_edge(config: EdgeConfig, action: Callable[[EdgeClient], Awaitable[T]]) -> T:
    bus = _bus(config, f"cli-{os.getpid()}")
    try:
        await bus.start(timeout=5, refused_is_final=True)
    except ConnectionError as exc:
        raise KubeEdgeError(
            f"{exc}\nIs the edge running? Start it with: kubeedge edge run -c EDGE.yaml"
        ) from None
    try:
        return await action(EdgeClient(bus, config.node))
    finally:
        await bus.stop()


# --------------------------------------------------------------------------- device / twin


@click.group()
def device() -> None:
    """Devices served by a running edge."""


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="json: the edge's answers as they are on the wire (membership entry and twin), for scripts.",
    )(func)


@device.command("list")
@config_option
@output_option
@click.option(
    "-A",
    "--all",
    "show_all",
    is_flag=True,
    help="Also the devices in the manifests that are for other nodes (greyed, not served here).",
)
def device_list(config_path: Path | None, output: str, show_all: bool) -> None:
    """Devices, their state, protocol and twins.

    NOTES points to the lines under the table: why a device's state is unknown (no mapper for
    its protocol is enabled), or the problem of its manifest (kept at its last good version).
    """
    config = _config(config_path)

    async def fetch(client: EdgeClient) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        membership = await client.membership(other_nodes=show_all)
        devices = list(membership.get("devices") or [])
        twins = await asyncio.gather(*(client.twin(d["id"]) for d in devices))
        return membership, list(twins)

    membership, twins = _run(_with_edge(config, fetch))
    rows = sorted(zip(membership.get("devices") or [], twins, strict=True), key=lambda r: r[0]["id"])
    others = sorted(membership.get("other_nodes") or [], key=lambda d: d["id"])
    if output == "json":
        listed = [{"device": entry, "twin": twin} for entry, twin in rows]
        listed += [{"device": _other_node_entry(other), "twin": {}} for other in others]
        click.echo(json.dumps(listed, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in (
        "DEVICE",
        "PROTOCOL",
        "MODEL",
        "STATE",
        "LAST ONLINE",
        "PROPERTIES",
        "PENDING",
        "ERRORS",
        "NOTES",
    ):
        table.add_column(column)
    notes: dict[str, int] = {}  # note text -> its number (devices with the same note share it)
    for entry, twin in rows:
        attrs = _attributes(entry)
        pending = sum(1 for t in twin.values() if _desired(t) and _desired(t) != _reported(t))
        errors = sum(1 for t in twin.values() if (t.get("metadata") or {}).get("error"))
        marks = [
            f"[{notes.setdefault(text, len(notes) + 1)}]"
            for text in (attrs.get("stateReason"), attrs.get("problem"))
            if text
        ]
        table.add_row(
            escape(entry["id"]),
            escape(attrs.get("protocol", "")),
            escape(attrs.get("model", "")),
            _state(entry.get("state")),
            entry.get("last_online") or "-",
            str(len(twin)),
            str(pending) if pending else "-",
            f"[red]{errors}[/]" if errors else "-",
            " ".join(marks),
        )
    for other in others:
        table.add_row(
            escape(other["id"]),
            escape(other.get("protocol", "")),
            escape(other.get("model", "")),
            escape(f"other node: {other.get('node', '')}"),
            *["-"] * 4,
            "",
            style="dim",
        )
    if rows or others:
        console.print(table)
    else:
        console.print(f"no devices on edge node {config.node}")
    for text, number in notes.items():
        console.print(f"[{number}] {text}", markup=False, highlight=False)
    problems = membership.get("problems") or []
    if problems:
        console.print("[yellow]manifest problems[/] (also in the edge's log):")
        for problem in problems:
            console.print(f"  {escape(problem)}")
    hidden = int(membership.get("other_nodes_count") or 0)
    if hidden and not show_all:
        console.print(
            f"[dim]{hidden} device(s) in the manifests are for other nodes (device list --all shows them)[/]"
        )


def _attributes(entry: dict[str, Any]) -> dict[str, str]:
    return {k: str((v or {}).get("value", "")) for k, v in (entry.get("attributes") or {}).items()}


def _other_node_entry(other: dict[str, Any]) -> dict[str, Any]:
    """A device for another node, shaped as a membership entry (for -o json)."""
    return {
        "id": other["id"],
        "name": other["id"].rpartition("/")[2],
        "state": f"other node: {other.get('node', '')}",
        "attributes": {
            "protocol": {"value": other.get("protocol", "")},
            "model": {"value": other.get("model", "")},
            "node": {"value": other.get("node", "")},
        },
    }


@device.command("get")
@click.argument("name")
@config_option
@output_option
def device_get(name: str, config_path: Path | None, output: str) -> None:
    """One device's twin: desired and reported value of every property.

    NAME is namespace/name (or name, in the default namespace).
    """
    config = _config(config_path)

    async def fetch(client: EdgeClient) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        key = "/".join(_split(name))
        try:
            twin = await client.twin(name)
        except EdgeRequestError as exc:
            if exc.code != 404:
                raise
            membership = await client.membership(other_nodes=True)
            other = next((d for d in membership.get("other_nodes") or [] if d["id"] == key), None)
            if other is None:
                raise
            raise KubeEdgeError(
                f"device {key} is for node {other['node']} (spec.nodeName), not served by edge node "
                f"{config.node}"
            ) from None
        devices = {d["id"]: d for d in await client.devices()}
        return devices.get(key), twin

    entry, twin = _run(_with_edge(config, fetch))
    if output == "json":
        click.echo(json.dumps({"device": entry, "twin": twin}, indent=2))
        return
    if entry is not None:
        console.print(
            f"[bold]{escape(entry['id'])}[/]  state {_state(entry.get('state'))}  "
            f"last online {entry.get('last_online') or '-'}"
        )
        attrs = _attributes(entry)
        if attrs.get("stateReason"):
            console.print(f"  state reason: {escape(attrs['stateReason'])}")
        if attrs.get("problem"):
            console.print(f"  [yellow]problem:[/] {escape(attrs['problem'])}")
    table = Table(box=None, header_style="bold")
    for column in ("PROPERTY", "TYPE", "DESIRED", "REPORTED", "UPDATED", "ERROR"):
        table.add_column(column)
    for prop, t in sorted(twin.items()):
        meta = t.get("metadata") or {}
        stamp = (t.get("actual") or {}).get("metadata", {}).get("timestamp")
        table.add_row(
            prop,
            meta.get("type", ""),
            escape(_desired(t) or "-"),
            escape(_reported(t) or "-"),
            _ago(stamp),
            f"[red]{escape(meta['error'])}[/]" if meta.get("error") else "",
        )
    console.print(table)


@click.group()
def twin() -> None:
    """Device twins: set desired values."""


@twin.command("set")
@click.argument("name")
@click.argument("prop")
@click.argument("value")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until the device reports the value."
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the device.")
@config_option
def twin_set(name: str, prop: str, value: str, wait: bool, timeout: float, config_path: Path | None) -> None:
    """Set a desired value and (by default) wait for the device to report it.

    \b
    Example:
      kubeedge twin set plant-a/boiler-room-meter setpoint 65
    """
    config = _config(config_path)

    async def act(client: EdgeClient) -> float | None:
        await client.set_desired(name, prop, value)
        console.print(f"desired {prop}={escape(value)} accepted by edge {config.node}")
        if not wait:
            return None
        key = "/".join(_split(name))
        state = next((d.get("state") for d in await client.devices() if d["id"] == key), None)
        if state == "offline":
            twin = (await client.twin(key)).get(prop) or {}
            reason = (twin.get("metadata") or {}).get("error") or "device offline"
            raise KubeEdgeError(f"{key} is offline ({reason}); the value is written when it comes back")
        return await client.wait_reported(name, prop, value, timeout)

    took = _run(_with_edge(config, act))
    if took is not None:
        console.print(f"[green]✓[/] device reports {prop}={escape(value)} after {took * 1000:.0f} ms")


def _split(name: str) -> tuple[str, str]:
    namespace, _, short = name.rpartition("/")
    return namespace or "default", short


def _desired(twin: dict[str, Any]) -> str | None:
    return (twin.get("expected") or {}).get("value")


def _reported(twin: dict[str, Any]) -> str | None:
    return (twin.get("actual") or {}).get("value")


def _state(state: str | None) -> str:
    colour = {"online": "green", "ok": "green", "offline": "red", "unhealthy": "yellow"}.get(
        state or "", "dim"
    )
    return f"[{colour}]{state or 'unknown'}[/]"


def _ago(stamp: int | None) -> str:
    if not stamp:
        return "-"
    from kubeedge.api.twin import now_ms

    seconds = max(0.0, (now_ms() - stamp) / 1000)
    return f"{seconds:.1f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"
