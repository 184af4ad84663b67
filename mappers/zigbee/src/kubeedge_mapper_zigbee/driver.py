"""The Zigbee driver: one device of the coordinator's network, through zigpy.

Properties with ``reporting`` are pushed: when the device is assigned (and after every
reconnection) the driver sends ZCL Configure Reporting, reads the value once, and hands every
Report Attributes the device sends to the runtime as it arrives (zigpy's
``AttributeReportedEvent``). The others are read on their ``collectCycle``. Writes are a ZCL Write
Attributes, or a cluster command (``command``/``commands``) with its ``args``.

Errors: a ZCL status other than SUCCESS (UNSUPPORTED_ATTRIBUTE, READ_ONLY, ...) is a
:class:`DeviceError` with the status name and code (the property shows it, the device stays
online); no route, no answer within ``requestTimeout``, the device leaving the network, or the
radio lost, is :class:`DeviceUnreachable` (offline with the reason, reconnected with back-off).
Each request waits only for its own device, so a sleepy or gone device never holds the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import zigpy.exceptions
from zigpy.zcl import AttributeReportedEvent, foundation

from kubeedge import DeviceError, DeviceUnreachable, Driver, Emit, Property
from kubeedge_mapper_zigbee import coordinator as coordinators
from kubeedge_mapper_zigbee.config import (
    VALUE_ARGUMENT,
    ZigbeeConfig,
    ZigbeeSettings,
    ZigbeeVisitor,
    command_def,
)

log = logging.getLogger(__name__)


def status_error(status: Any, what: str) -> DeviceError:
    """A ZCL status as a property error: its name and its code."""
    try:
        named = foundation.Status(int(status))
        return DeviceError(f"{what}: {named.name}", code=f"0x{int(named):02x}")
    except ValueError:
        return DeviceError(f"{what}: ZCL status 0x{int(status):02x}", code=f"0x{int(status):02x}")


def to_twin(prop: Property[ZigbeeVisitor], value: Any) -> Any:
    """A ZCL value (zigpy's type) as the property's type, with scale and offset."""
    visitor = prop.visitor
    if prop.type == "boolean":
        return bool(int(value))
    if prop.type == "string":
        return value.name if hasattr(value, "name") and not isinstance(value, str) else str(value)
    if prop.type == "bytes":
        return bytes(value)
    number = float(int(value) if not isinstance(value, float) else value) * visitor.scale + visitor.offset
    return round(number) if prop.type == "int" else number


def to_zcl(prop: Property[ZigbeeVisitor], value: Any) -> Any:
    """A desired value as the attribute's raw value (scale and offset undone)."""
    visitor = prop.visitor
    if isinstance(value, bool) or prop.type in ("string", "bytes"):
        return value
    raw = (float(value) - visitor.offset) / visitor.scale
    kind = visitor.attribute_def().type
    if issubclass(kind, float):
        return raw
    return round(raw)


class ZigbeeDriver(Driver[ZigbeeConfig, ZigbeeVisitor]):
    protocol = "zigbee"
    config_model = ZigbeeConfig
    visitor_model = ZigbeeVisitor
    settings_model = ZigbeeSettings
    max_batch = 16
    """Attributes of one cluster due together are read in one Read Attributes request."""

    _coordinator: coordinators.Coordinator | None = None

    @property
    def who(self) -> str:
        return f"{self.device.key} ({self.config.ieee})"

    @property
    def _settings(self) -> ZigbeeSettings:
        assert isinstance(self.settings, ZigbeeSettings)
        return self.settings

    # ------------------------------------------------------------- connection

    async def connect(self) -> None:
        self._coordinator = await coordinators.acquire(self._settings)
        self._coordinator.left[self.config.ieee] = asyncio.Event()
        device = self._coordinator.device(self.config.ieee)
        if not device.is_initialized:
            raise DeviceUnreachable(f"{self.who}: joined, but its interview has not finished")
        if not self.config.sleepy:
            await self._probe(device)

    async def _probe(self, device: Any) -> None:
        """Ask the device something (Basic's ZCL version): a device that left or is out of range
        stays offline instead of going online until its first read fails."""
        for endpoint_id, endpoint in device.endpoints.items():
            basic = getattr(endpoint, "in_clusters", {}).get(0x0000) if endpoint_id else None
            if basic is not None:
                try:
                    await self._request("a ZCL version read", basic.read_attributes(["zcl_version"]))
                except zigpy.exceptions.ZigbeeException as exc:  # it answered, with an error
                    log.debug("%s: probe answered with %s", self.who, exc)
                return

    async def close(self) -> None:
        coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None:
            coordinator.left.pop(self.config.ieee, None)
            await coordinators.release(coordinator)

    async def state(self) -> str:
        if self._coordinator is None or self._coordinator.lost.is_set():
            return "offline"
        return "online"

    def _cluster(self, prop: Property[ZigbeeVisitor]) -> Any:
        if self._coordinator is None:
            raise DeviceUnreachable(f"{self.who}: not connected")
        device = self._coordinator.device(self.config.ieee)
        visitor = prop.visitor
        endpoint = device.endpoints.get(visitor.endpoint)
        cluster_id = visitor.cluster_class().cluster_id
        if endpoint is None or not hasattr(endpoint, "in_clusters"):
            raise DeviceError(f"the device has no endpoint {visitor.endpoint}")
        cluster = endpoint.in_clusters.get(cluster_id)
        if cluster is None:
            raise DeviceError(f"endpoint {visitor.endpoint} has no server cluster 0x{cluster_id:04x}")
        return cluster

    async def _request(self, what: str, call: Any) -> Any:
        try:
            return await asyncio.wait_for(call, self._settings.request_timeout)
        except TimeoutError:
            raise DeviceUnreachable(
                f"{self.who}: no answer to {what} within {self._settings.request_timeout:g}s"
            ) from None
        except zigpy.exceptions.DeliveryError as exc:
            raise DeviceUnreachable(f"{self.who}: {what}: {exc}") from exc

    # ------------------------------------------------------------- reads

    async def read(self, prop: Property[ZigbeeVisitor]) -> Any:
        (value,) = await self.read_many([prop])
        if isinstance(value, Exception):
            raise value
        return value

    async def read_many(self, props: Sequence[Property[ZigbeeVisitor]]) -> list[Any]:
        groups: dict[tuple[int, int, int | None], list[Property[ZigbeeVisitor]]] = {}
        for prop in props:
            v = prop.visitor
            groups.setdefault((v.endpoint, v.cluster_class().cluster_id, v.manufacturer_code), []).append(
                prop
            )
        values: dict[str, Any] = {}
        for group in groups.values():
            values.update(await self._read_group(group))
        return [values[p.name] for p in props]

    async def _read_group(self, props: list[Property[ZigbeeVisitor]]) -> dict[str, Any]:
        try:
            cluster = self._cluster(props[0])
        except DeviceError as exc:
            return {p.name: exc for p in props}
        defs = [p.visitor.attribute_def() for p in props]
        code = props[0].visitor.manufacturer_code
        extra = {} if code is None else {"manufacturer": code}
        what = f"reading {cluster.ep_attribute} " + ", ".join(d.name for d in defs)
        try:
            result = await self._request(what, cluster.read_attributes(defs, allow_cache=False, **extra))
        except DeviceUnreachable:
            raise
        except (zigpy.exceptions.ZigbeeException, ValueError, KeyError) as exc:
            return {p.name: DeviceError(f"{what}: {exc}") for p in props}
        good, failed = result
        values: dict[str, Any] = {}
        for prop, attr in zip(props, defs, strict=True):
            if attr in good or attr.name in good:
                raw = good.get(attr, good.get(attr.name))
                try:
                    values[prop.name] = to_twin(prop, raw)
                except (TypeError, ValueError) as exc:
                    values[prop.name] = DeviceError(
                        f"{prop.visitor.describe()}: unusable value {raw!r}: {exc}"
                    )
            else:
                status = failed.get(attr, failed.get(attr.name, foundation.Status.FAILURE))
                values[prop.name] = status_error(status, f"reading {prop.visitor.describe()}")
        return values

    # ------------------------------------------------------------- writes

    async def write(self, prop: Property[ZigbeeVisitor], value: Any) -> None:
        visitor = prop.visitor
        cluster = self._cluster(prop)
        command = visitor.command
        if visitor.commands is not None:
            key = str(value).lower() if isinstance(value, bool) else str(value)
            command = visitor.commands.get(key)
            if command is None:
                raise DeviceError(f"{prop.name}: no command for the value {key!r} in commands")
        if command is not None:
            await self._command(prop, cluster, command, value)
            return
        raw = to_zcl(prop, value)
        code = visitor.manufacturer_code
        extra = {} if code is None else {"manufacturer": code}
        what = f"writing {visitor.describe()}"
        try:
            (records,) = await self._request(
                what, cluster.write_attributes({visitor.attribute_def(): raw}, **extra)
            )
        except (zigpy.exceptions.ZigbeeException, ValueError, TypeError) as exc:
            if isinstance(exc, zigpy.exceptions.DeliveryError):
                raise
            raise DeviceError(f"{what}: {exc}") from exc
        for record in records:
            if record.status != foundation.Status.SUCCESS:
                raise status_error(record.status, what)

    async def _command(self, prop: Property[ZigbeeVisitor], cluster: Any, name: str, value: Any) -> None:
        visitor = prop.visitor
        definition = command_def(type(cluster), name)
        raw = to_zcl(prop, value)
        args = {k: (raw if a == VALUE_ARGUMENT else a) for k, a in visitor.args.items()}
        what = f"command {definition.name} on {cluster.ep_attribute}"
        extra = {} if visitor.manufacturer_code is None else {"manufacturer": visitor.manufacturer_code}
        try:
            answer = await self._request(what, cluster.command(definition.id, **args, **extra))
        except (zigpy.exceptions.ZigbeeException, ValueError, TypeError, KeyError) as exc:
            if isinstance(exc, zigpy.exceptions.DeliveryError):
                raise
            raise DeviceError(f"{what}: {exc}") from exc
        status = getattr(answer, "status", foundation.Status.SUCCESS)
        if status != foundation.Status.SUCCESS:
            raise status_error(status, what)

    # ------------------------------------------------------------- push

    def pushes(self, prop: Property[ZigbeeVisitor]) -> bool:
        return prop.visitor.reporting is not None

    async def subscribe(self, props: Sequence[Property[ZigbeeVisitor]], emit: Emit) -> None:
        coordinator = self._coordinator
        if coordinator is None:
            raise DeviceUnreachable(f"{self.who}: not connected")
        left = coordinator.left.setdefault(self.config.ieee, asyncio.Event())
        stops = []
        try:
            for prop in props:
                try:
                    cluster = self._cluster(prop)
                except DeviceError as exc:
                    emit(prop.name, exc)
                    continue
                stops.append(cluster.on_event(AttributeReportedEvent.event_type, self._on_report(prop, emit)))
                await self._configure(prop, cluster, emit)
            for prop, value in zip(props, await self.read_many(props), strict=True):
                emit(prop.name, value)  # a value now: a report comes only at a change or maxInterval
            waits = [asyncio.ensure_future(left.wait()), asyncio.ensure_future(coordinator.lost.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            if coordinator.lost.is_set():
                raise DeviceUnreachable(coordinator.lost_reason)
            raise DeviceUnreachable(f"{self.who}: left the network")
        finally:
            for stop in stops:
                stop()

    def _on_report(self, prop: Property[ZigbeeVisitor], emit: Emit) -> Any:
        attr = prop.visitor.attribute_def()

        def on_report(event: AttributeReportedEvent) -> None:
            if event.attribute_id != attr.id:
                return
            try:
                emit(prop.name, to_twin(prop, event.value))
            except (TypeError, ValueError) as exc:
                emit(
                    prop.name,
                    DeviceError(f"{prop.visitor.describe()}: unusable report {event.value!r}: {exc}"),
                )

        return on_report

    async def _configure(self, prop: Property[ZigbeeVisitor], cluster: Any, emit: Emit) -> None:
        reporting = prop.visitor.reporting
        assert reporting is not None
        attr = prop.visitor.attribute_def()
        change: Any = reporting.reportable_change
        if not issubclass(attr.type, float):
            change = round(change)
        what = f"configuring reporting of {prop.visitor.describe()}"
        try:
            answer = await self._request(
                what,
                cluster.configure_reporting(attr, reporting.min_interval, reporting.max_interval, change),
            )
        except (zigpy.exceptions.ZigbeeException, ValueError, TypeError) as exc:
            if isinstance(exc, zigpy.exceptions.DeliveryError):
                raise
            emit(prop.name, DeviceError(f"{what}: {exc}"))
            return
        statuses = answer.values() if isinstance(answer, dict) else []
        for status in statuses:
            if status != foundation.Status.SUCCESS:
                emit(prop.name, status_error(status, what))
