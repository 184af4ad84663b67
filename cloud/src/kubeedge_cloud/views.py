"""``device list --cloud`` and ``device get --cloud``: devices and their status as the cloud holds them.

The configured source is opened read-only (:meth:`Source.open_view`): for the files source, the
cloud's database, whether the cloud runs or not.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from kubeedge.api.device import Device
from kubeedge.api.twin import now_ms
from kubeedge.cli.edge import console
from kubeedge.errors import KubeEdgeError
from kubeedge_cloud.config import CloudConfig, error_line
from kubeedge_cloud.module import CloudContext
from kubeedge_cloud.sources.source import DeviceStatusRecord, Source


async def _snapshot(config: CloudConfig) -> tuple[list[Device], dict[str, DeviceStatusRecord]]:
    from pydantic import ValidationError

    context = CloudContext(config)
    kind = config.source.kind
    context.host.require("cloud_module", [kind], origin="named by source.kind")
    classes = {cls.name: cls for cls in context.host.collect("kubeedge_register_cloud_modules")}
    cls = classes.get(kind)
    if cls is None or not issubclass(cls, Source):
        raise KubeEdgeError(f"source.kind: cloud module {kind!r} is not a device source")
    try:
        settings = cls.settings_model.model_validate(config.source.settings)
    except ValidationError as exc:
        raise KubeEdgeError("\n".join(f"source.{error_line(e)}" for e in exc.errors())) from None
    source = cls(context, settings)
    await source.open_view()
    try:
        listing = await source.list()
        devices = sorted((o.obj for o in listing.objects if isinstance(o.obj, Device)), key=lambda d: d.key)
        return devices, await source.read_status()
    finally:
        await source.stop()


def _fetch(config: CloudConfig) -> tuple[list[Device], dict[str, DeviceStatusRecord]]:
    try:
        return asyncio.run(_snapshot(config))
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None


def _ago(stamp: int | None) -> str:
    if not stamp:
        return "-"
    seconds = max(0.0, (now_ms() - stamp) / 1000)
    if seconds < 120:
        return f"{seconds:.1f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _state(state: str | None) -> str:
    colours = {"online": "green", "ok": "green", "offline": "red", "unhealthy": "yellow"}
    colour = colours.get(state or "", "dim")
    return f"[{colour}]{escape(state or 'unknown')}[/]"


def _as_json(device: Device, status: DeviceStatusRecord | None) -> dict[str, Any]:
    return {
        "id": device.key,
        "node": device.spec.node_name or "",
        "desired": {p.name: p.desired.value for p in device.spec.properties or [] if p.desired is not None},
        "status": None
        if status is None
        else {
            "node": status.node,
            "state": status.state,
            "lastOnlineTime": status.last_online_time,
            "updatedAt": status.updated_at,
            "twins": {k: t.model_dump() for k, t in status.twins.items()},
        },
    }


def device_list(config: CloudConfig, output: str) -> None:
    devices, statuses = _fetch(config)
    if output == "json":
        click.echo(json.dumps([_as_json(d, statuses.get(d.key)) for d in devices], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("DEVICE", "NODE", "STATE", "LAST ONLINE", "PROPERTIES", "REPORTED", "LAST REPORT"):
        table.add_column(column)
    for device in devices:
        status = statuses.get(device.key)
        twins = status.twins if status else {}
        table.add_row(
            escape(device.key),
            escape(device.spec.node_name or "-"),
            _state(status.state if status else None),
            escape((status.last_online_time if status else None) or "-"),
            str(len(device.spec.properties or [])),
            str(sum(1 for t in twins.values() if t.reported is not None)),
            _ago(status.updated_at if status else None),
        )
    if devices:
        console.print(table)
    else:
        console.print("no devices in the cloud's source")


def device_get(config: CloudConfig, name: str, output: str) -> None:
    namespace, _, short = name.rpartition("/")
    key = f"{namespace or 'default'}/{short}"
    devices, statuses = _fetch(config)
    device = next((d for d in devices if d.key == key), None)
    if device is None:
        raise click.ClickException(f"device {key} is not in the cloud's source")
    status = statuses.get(key)
    if output == "json":
        click.echo(json.dumps(_as_json(device, status), indent=2))
        return
    console.print(
        f"[bold]{escape(key)}[/]  node {escape(device.spec.node_name or '-')}  "
        f"state {_state(status.state if status else None)}  "
        f"last online {escape((status.last_online_time if status else None) or '-')}  "
        f"last report {_ago(status.updated_at if status else None)}"
    )
    table = Table(box=None, header_style="bold")
    for column in ("PROPERTY", "TYPE", "DESIRED", "REPORTED", "AGE", "OBSERVED DESIRED", "AGE", "ERROR"):
        table.add_column(column)
    twins = status.twins if status else {}
    names = [p.name for p in device.spec.properties or []]
    names += sorted(n for n in twins if n not in names)
    for prop in names:
        spec = next((p for p in device.spec.properties or [] if p.name == prop), None)
        desired = spec.desired.value if spec is not None and spec.desired is not None else None
        twin = twins.get(prop)
        table.add_row(
            escape(prop),
            escape(twin.type if twin else "-"),
            escape(desired if desired is not None else "-"),
            escape(twin.reported if twin and twin.reported is not None else "-"),
            _ago(twin.reported_at if twin else None),
            escape(twin.observed_desired if twin and twin.observed_desired is not None else "-"),
            _ago(twin.observed_desired_at if twin else None),
            f"[red]{escape(twin.error)}[/]" if twin and twin.error else "",
        )
    console.print(table)
