"""The mapper conformance suite: what every protocol mapper must do, checked against its simulator.

A mapper distribution gets it with two pieces in its tests::

    # tests/conftest.py
    import pytest
    from kubeedge_mapper_acme.simulator import AcmeSimulator

    @pytest.fixture
    async def mapper_simulator():
        simulator = AcmeSimulator()
        await simulator.start()
        yield simulator
        await simulator.stop()

    # tests/test_conformance.py
    from kubeedge.testing.conformance import MapperConformance

    class TestAcmeConformance(MapperConformance):
        pass

Each test starts a real edge in the test's event loop (embedded broker, standalone manifests),
with the mapper enabled by its protocol name through its installed entry point, and a Device and
DeviceModel built from what the simulator declares. The suite checks: connect and go online; read
every point (one per DeviceModel type; a type the protocol cannot carry is listed in
``unsupported_types`` with the reason); report a change made on the device; write a desired value
and read it back; refuse a write to a ReadOnly point (at the edge, and in the mapper when a desired
value reaches it around the edge); map a device error to
the property, keeping the device online; go offline when the device is lost and come back; refuse
bad configData with the field named.
"""

from __future__ import annotations

import faulthandler
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

import pytest

from kubeedge.api.values import MODEL_TO_TWIN_TYPE, format_value, parse_value
from kubeedge.client import EdgeRequestError
from kubeedge.testing.edge import EdgeHandle, wait_for

ModelType = Literal["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES"]
ALL_TYPES: tuple[ModelType, ...] = get_args(ModelType)
"""Every DeviceModel type a point can have (STREAM is a video stream, not a polled value)."""


@dataclass(frozen=True)
class Point:
    """One property of the simulated device."""

    name: str
    type: ModelType
    visitor: dict[str, Any]
    """The property's ``visitors.configData``."""
    initial: Any
    """The value the device holds at start (as the driver returns it)."""
    writable: bool = False
    changed: Any = None
    """A different value, for change and write tests (required for writable points)."""


@dataclass(frozen=True)
class BadConfig:
    """configData the driver must refuse, and the field path its error must name."""

    config: dict[str, Any]
    field: str
    """e.g. ``spec.protocol.configData.port`` or ``spec.properties[0].visitors.configData.register``."""
    point: str | None = None
    """None: ``config`` replaces the protocol configData; else that point's visitor configData."""


class DeviceSimulator(ABC):
    """A simulated device of the mapper's protocol, reached over a real transport when one exists."""

    protocol: ClassVar[str]
    """The mapper's protocol name (its entry point name)."""
    mapper_settings: ClassVar[dict[str, Any]] = {}
    """Settings for ``mappers.NAME`` in the edge configuration of the tests."""
    unsupported_types: ClassVar[dict[str, str]] = {}
    """DeviceModel types the protocol cannot carry, each with the reason (shown in the docs of
    the suite's result): every other type needs a point."""

    async def start(self) -> None:
        """Start the simulated device."""

    async def stop(self) -> None:
        """Stop it."""

    @abstractmethod
    def protocol_config(self) -> dict[str, Any]:
        """The Device's ``spec.protocol.configData`` that reaches the simulated device."""

    @abstractmethod
    def points(self) -> list[Point]:
        """The device's points: one per DeviceModel type the protocol supports, some writable."""

    @abstractmethod
    async def device_value(self, point: str) -> Any:
        """The value the device holds now (read on the device side, not through the driver)."""

    @abstractmethod
    async def set_device_value(self, point: str, value: Any) -> None:
        """Change a value on the device side, as the physical process would."""

    @abstractmethod
    async def fail_point(self, point: str, failing: bool) -> None:
        """Make the device answer reads of ``point`` with a protocol error (or stop doing so)."""

    @abstractmethod
    async def set_reachable(self, reachable: bool) -> None:
        """Make the device unreachable (connection refused or lost), or reachable again."""

    @abstractmethod
    def bad_configs(self) -> list[BadConfig]:
        """Wrong configData the driver must refuse (at least one protocol-level, one visitor)."""


@dataclass
class _Deployment:
    edge: EdgeHandle
    key: str
    points: dict[str, Point] = field(default_factory=dict)


def manifests(
    simulator: DeviceSimulator, name: str = "conformance-device", cycle: int = 100
) -> list[dict[str, Any]]:
    """A DeviceModel and a Device for the simulator's points."""
    points = simulator.points()
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": f"{name}-model", "namespace": "conformance"},
        "spec": {
            "protocol": simulator.protocol,
            "properties": [
                {"name": p.name, "type": p.type, "accessMode": "ReadWrite" if p.writable else "ReadOnly"}
                for p in points
            ],
        },
    }
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "conformance"},
        "spec": {
            "deviceModelRef": {"name": f"{name}-model"},
            "protocol": {"protocolName": simulator.protocol, "configData": simulator.protocol_config()},
            "properties": [
                {
                    "name": p.name,
                    "collectCycle": cycle,
                    "visitors": {"protocolName": simulator.protocol, "configData": p.visitor},
                }
                for p in points
            ],
        },
    }
    return [model, device]


def _text(point: Point, value: Any) -> str:
    return format_value(MODEL_TO_TWIN_TYPE[point.type], value)


def _same(point: Point, reported: str | None, value: Any) -> bool:
    if reported is None:
        return False
    kind = MODEL_TO_TWIN_TYPE[point.type]
    expected = parse_value(kind, _text(point, value))
    got = parse_value(kind, reported)
    if isinstance(expected, float) and isinstance(got, float):
        return abs(expected - got) <= 1e-6 * max(1.0, abs(expected))
    return bool(expected == got)


class MapperConformance:
    """Subclass as ``Test<Name>Conformance`` in a mapper's tests; needs a ``mapper_simulator`` fixture."""

    timeout: ClassVar[float] = 15.0
    hang_after: ClassVar[float] = 240.0
    """A test still running after this many seconds prints every thread's stack and exits."""

    @pytest.fixture(autouse=True)
    def _hang_guard(self) -> Iterator[None]:
        faulthandler.dump_traceback_later(self.hang_after, exit=True)
        yield
        faulthandler.cancel_dump_traceback_later()

    @pytest.fixture
    async def deployed(self, mapper_simulator: DeviceSimulator, edge: Any) -> _Deployment:
        simulator = mapper_simulator
        handle: EdgeHandle = await edge(mappers={simulator.protocol: dict(simulator.mapper_settings)})
        handle.write_manifest("conformance.yaml", *manifests(simulator))
        deployment = _Deployment(
            handle, "conformance/conformance-device", {p.name: p for p in simulator.points()}
        )
        await handle.wait_state(deployment.key, "online", timeout=self.timeout)
        return deployment

    async def _wait_value(self, deployed: _Deployment, point: Point, value: Any, what: str) -> None:
        def reported() -> bool:
            return _same(point, deployed.edge.reported(deployed.key, point.name), value)

        await wait_for(reported, self.timeout, what=f"{what}: {value!r}")

    def test_simulator_declares_points(self, mapper_simulator: DeviceSimulator) -> None:
        points = mapper_simulator.points()
        assert points, "the simulator declares no points"
        declared = {p.type for p in points} | set(mapper_simulator.unsupported_types)
        missing = sorted(set(ALL_TYPES) - declared)
        assert not missing, (
            f"declare a point of each DeviceModel type, or list the type in `unsupported_types` "
            f"with the reason the protocol cannot carry it; missing: {', '.join(missing)}"
        )
        both = sorted({p.type for p in points} & set(mapper_simulator.unsupported_types))
        assert not both, f"declared as points and as unsupported: {', '.join(both)}"
        assert any(p.writable for p in points), "at least one point must be writable"
        assert all(p.changed is not None for p in points if p.writable), (
            "writable points need a `changed` value"
        )
        assert {b.point is None for b in mapper_simulator.bad_configs()} == {True, False}, (
            "bad_configs() needs at least one protocol-level and one visitor-level case"
        )

    async def test_connects_and_reads_every_point(self, deployed: _Deployment) -> None:
        edge = deployed.edge
        for point in deployed.points.values():
            await self._wait_value(deployed, point, point.initial, f"{point.name} ({point.type}) reported")
            assert edge.record(deployed.key, point.name).type == MODEL_TO_TWIN_TYPE[point.type]

    async def test_reports_a_change_made_on_the_device(
        self, deployed: _Deployment, mapper_simulator: DeviceSimulator
    ) -> None:
        point = next(p for p in deployed.points.values() if p.changed is not None)
        await deployed.edge.wait_reported(deployed.key, point.name, timeout=self.timeout)
        await mapper_simulator.set_device_value(point.name, point.changed)
        await self._wait_value(deployed, point, point.changed, f"{point.name} changed on the device")

    async def test_writes_a_desired_value_and_reads_it_back(
        self, deployed: _Deployment, mapper_simulator: DeviceSimulator
    ) -> None:
        client = await deployed.edge.client()
        for point in (p for p in deployed.points.values() if p.writable):
            await client.set_desired(deployed.key, point.name, _text(point, point.changed))
            await self._wait_value(deployed, point, point.changed, f"{point.name} written and read back")
            assert _same(point, _text(point, await mapper_simulator.device_value(point.name)), point.changed)

    async def test_read_only_points_are_not_written(
        self, deployed: _Deployment, mapper_simulator: DeviceSimulator
    ) -> None:
        point = next((p for p in deployed.points.values() if not p.writable), None)
        assert point is not None, "declare at least one read-only point"
        edge = deployed.edge
        client = await edge.client()
        await edge.wait_reported(deployed.key, point.name, timeout=self.timeout)
        before = await mapper_simulator.device_value(point.name)
        value = _text(point, point.changed if point.changed is not None else point.initial)
        # The edge refuses it ...
        with pytest.raises(EdgeRequestError, match="ReadOnly"):
            await client.set_desired(deployed.key, point.name, value)
        # ... and so does the mapper, when a desired value reaches it around the edge's check
        # (an older edge, a misbehaving cloud): the device is never written, the twin says why.
        namespace, name = deployed.key.split("/")
        delta = {"event_id": "conformance", "timestamp": 0, "twin": {}, "delta": {point.name: value}}
        client.bus.publish(
            f"$hw/events/device/{namespace}/{name}/twin/update/delta", json.dumps(delta), qos=1
        )
        await wait_for(
            lambda: "ReadOnly" in edge.error(deployed.key, point.name),
            self.timeout,
            what=f"the mapper refusing to write ReadOnly {point.name}",
        )
        assert await mapper_simulator.device_value(point.name) == before

    async def test_device_error_marks_the_property_and_not_the_device(
        self, deployed: _Deployment, mapper_simulator: DeviceSimulator
    ) -> None:
        failing, *others = list(deployed.points.values())
        edge = deployed.edge
        await edge.wait_reported(deployed.key, failing.name, timeout=self.timeout)
        await mapper_simulator.fail_point(failing.name, True)
        await wait_for(
            lambda: edge.record(deployed.key, failing.name).error,
            self.timeout,
            what=f"an error on {failing.name}",
        )
        assert edge.state(deployed.key) == "online"
        for point in others:
            assert edge.record(deployed.key, point.name).error is None, point.name
        await mapper_simulator.fail_point(failing.name, False)
        await wait_for(
            lambda: edge.record(deployed.key, failing.name).error is None,
            self.timeout,
            what=f"the error on {failing.name} to clear",
        )

    async def test_every_point_failing_makes_the_device_unhealthy(
        self, deployed: _Deployment, mapper_simulator: DeviceSimulator
    ) -> None:
        edge = deployed.edge
        for point in deployed.points.values():
            await mapper_simulator.fail_point(point.name, True)
        await edge.wait_state(deployed.key, "unhealthy", timeout=self.timeout)
        for point in deployed.points.values():
            await mapper_simulator.fail_point(point.name, False)
        await edge.wait_state(deployed.key, "online", timeout=self.timeout)

    async def test_device_lost_and_back(
        self, deployed: _Deployment, mapper_simulator: DeviceSimulator
    ) -> None:
        edge = deployed.edge
        await mapper_simulator.set_reachable(False)
        await edge.wait_state(deployed.key, "offline", timeout=self.timeout)
        first = next(iter(deployed.points))
        await wait_for(
            lambda: edge.error(deployed.key, first).startswith("device offline:"),
            self.timeout,
            what="the reason the device is offline, on its twin",
        )
        point = next(p for p in deployed.points.values() if p.changed is not None)
        await mapper_simulator.set_reachable(True)
        await mapper_simulator.set_device_value(point.name, point.changed)
        await edge.wait_state(deployed.key, "online", timeout=self.timeout + 30)
        await self._wait_value(deployed, point, point.changed, f"{point.name} after the device came back")

    async def test_bad_config_data_is_refused_with_the_field_named(
        self, mapper_simulator: DeviceSimulator, edge: Any
    ) -> None:
        handle: EdgeHandle = await edge(
            mappers={mapper_simulator.protocol: dict(mapper_simulator.mapper_settings)}
        )
        for i, bad in enumerate(mapper_simulator.bad_configs()):
            model, device = manifests(mapper_simulator, name=f"bad-{i}")
            if bad.point is None:
                device["spec"]["protocol"]["configData"] = bad.config
            else:
                for prop in device["spec"]["properties"]:
                    if prop["name"] == bad.point:
                        prop["visitors"]["configData"] = bad.config
            handle.write_manifest(f"bad-{i}.yaml", model, device)
            key = f"conformance/bad-{i}"
            watched = bad.point or device["spec"]["properties"][0]["name"]

            def named(key: str = key, watched: str = watched, bad: BadConfig = bad) -> bool:
                record = handle.record(key, watched)
                return record is not None and bad.field in (record.error or "")

            await wait_for(named, self.timeout, what=f"an error naming {bad.field}")
            if bad.point is None:
                await handle.wait_state(key, "unhealthy", timeout=self.timeout)
