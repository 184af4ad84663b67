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
every point with the Python type of its property (one point per DeviceModel type; a type the
protocol cannot carry is listed in ``unsupported_types`` with the reason); report a change made on
the device; write a desired value that the simulator, decoding by the protocol's own rules, holds
and the mapper reads back; refuse a write to a ReadOnly point (at the edge, and in the mapper when
a desired value reaches it around the edge); map a device error to the property, keeping the
device online; stay offline, with the reason, for a whole outage and for a device deployed while
down, and come back; reconnect to a device that restarted; ``close()`` that never raises and
leaves no connection open; writes while polling at the fastest cycle; refuse bad configData with
the field named.

While every test runs, the driver is watched (:mod:`kubeedge.testing.contract`,
:mod:`kubeedge.testing.watchdog`): a read returning the wrong Python type, a ``close()`` that
raises, or a driver call that blocks the event loop longer than ``blocked_ms`` fails the test,
naming the driver method. Waits fail as soon as their outcome is decided (an error reported, the
device offline, a wrong value reported steadily), with what was expected, what was reported and
when, the property's error, the device's states, and the runtime's last log lines.
"""

from __future__ import annotations

import asyncio
import faulthandler
import inspect
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import pytest

from kubeedge.api.values import MODEL_TO_TWIN_TYPE, format_value, parse_value
from kubeedge.client import EdgeRequestError
from kubeedge.testing.contract import DriverContract, instrument
from kubeedge.testing.edge import EdgeHandle
from kubeedge.testing.history import BusHistory, RuntimeLog
from kubeedge.testing.watchdog import LoopWatchdog

ModelType = Literal["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES"]
ALL_TYPES: tuple[ModelType, ...] = get_args(ModelType)
"""Every DeviceModel type a point can have (STREAM is a video stream, not a polled value)."""

SUITE_SETTINGS: dict[str, Any] = {"connectTimeout": 2, "readTimeout": 1, "maxBackoff": 0.5}
"""Runtime settings of the suite's edge (a simulator's ``mapper_settings`` go on top): short, so an
outage longer than a read timeout plus the back-off fits in a fast test."""


@dataclass(frozen=True)
class Point:
    """One property of the simulated device."""

    name: str
    type: ModelType
    visitor: dict[str, Any]
    """The property's ``visitors.configData``. Use addresses that differ from the property names
    and a scale other than 1 somewhere, so a driver that confuses them fails."""
    initial: Any
    """The value the device holds at start (as the driver returns it)."""
    writable: bool = False
    changed: Any = None
    """A different value, for change and write tests (required for writable points)."""
    loose_type: str | None = None
    """Why reads of this point may return another Python type than the property's (the runtime
    converts it); None: reads must return exactly int, float, bool, str or bytes."""


@dataclass(frozen=True)
class BadConfig:
    """configData the driver must refuse, and the field path its error must name."""

    config: dict[str, Any]
    field: str
    """e.g. ``spec.protocol.configData.port`` or ``spec.properties[0].visitors.configData.register``."""
    point: str | None = None
    """None: ``config`` replaces the protocol configData; else that point's visitor configData."""


class DeviceSimulator(ABC):
    """A simulated device of the mapper's protocol, reached over a real transport when one exists.

    It should hold values in the protocol's own form and decode what is written by the
    protocol's rules, independently of the driver's code, refusing a wrong wire form as the real
    device would: a simulator that reuses the driver's codec cannot show the driver's mistakes.
    """

    protocol: ClassVar[str]
    """The mapper's protocol name (its entry point name)."""
    mapper_settings: ClassVar[dict[str, Any]] = {}
    """Settings for ``mappers.NAME`` in the edge configuration of the tests (on top of
    :data:`SUITE_SETTINGS`)."""
    unsupported_types: ClassVar[dict[str, str]] = {}
    """DeviceModel types the protocol cannot carry, each with the reason (shown in the docs of
    the suite's result): every other type needs a point."""
    fastest_cycle_ms: ClassVar[int] = 10
    """The shortest ``collectCycle`` the device is polled at while the suite writes to it."""
    point_error: ClassVar[str | None] = None
    """Text the device's error (``fail_point``) carries, which the property's error must show
    (None: any error will do)."""

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
        """The value the device holds now, decoded on the device side by the protocol's rules
        (not with the driver's code)."""

    @abstractmethod
    async def set_device_value(self, point: str, value: Any) -> None:
        """Change a value on the device side, as the physical process would."""

    @abstractmethod
    async def fail_point(self, point: str, failing: bool) -> None:
        """Make the device answer reads (and writes) of ``point`` with a protocol error (or stop)."""

    @abstractmethod
    async def set_reachable(self, reachable: bool) -> None:
        """Make the device unreachable (new connections refused, open ones silent or lost), or
        reachable again."""

    @abstractmethod
    def bad_configs(self) -> list[BadConfig]:
        """Wrong configData the driver must refuse (at least one protocol-level, one visitor)."""

    def open_connections(self) -> int | None:
        """How many client connections the device has open now (None: it cannot tell). Checked
        after a Device is removed: ``close()`` must have closed every one."""
        return None


def manifests(
    simulator: DeviceSimulator,
    name: str = "conformance-device",
    cycle: int = 100,
    cycles: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """A DeviceModel and a Device for the simulator's points (``cycles``: per point, else ``cycle``)."""
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
                    "collectCycle": (cycles or {}).get(p.name, cycle),
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
    try:
        expected = parse_value(kind, _text(point, value))
        got = parse_value(kind, reported)
    except (ValueError, TypeError):
        return False
    if isinstance(expected, float) and isinstance(got, float):
        return abs(expected - got) <= 1e-6 * max(1.0, abs(expected))
    return bool(expected == got)


OFFLINE_PREFIX = "device offline:"

Decided = Callable[[], str | None]
"""A check that says why a wait's outcome is already decided (a failure), or None."""


class _Run:
    """One test's edge, its instrumented mapper, and what was seen: reports, states, log, stalls."""

    def __init__(self, suite: MapperConformance, simulator: DeviceSimulator, make_edge: Any) -> None:
        self.suite = suite
        self.simulator = simulator
        self.make_edge = make_edge
        self.points = {p.name: p for p in simulator.points()}
        self.contract = DriverContract({p.name: p.loose_type for p in self.points.values() if p.loose_type})
        self.history = BusHistory()
        package = type(simulator).__module__.split(".")[0]
        self.log = RuntimeLog(["kubeedge.mapper", "kubeedge.edge", package])
        self.watchdog: LoopWatchdog | None = None
        self.edge: EdgeHandle | None = None
        self.settings = {**SUITE_SETTINGS, **simulator.mapper_settings}
        self.driver_cls: type[Any] | None = None
        self._reported: set[str] = set()

    @property
    def outage_s(self) -> float:
        """Longer than a read timeout plus the longest back-off: what a lasting outage takes."""
        return float(self.settings["readTimeout"]) + float(self.settings["maxBackoff"]) + 0.1

    async def start(self) -> EdgeHandle:
        self.log.attach()
        edge: EdgeHandle = await self.make_edge(mappers={self.simulator.protocol: dict(self.settings)})
        self.edge = edge
        runtime = edge.core.module("mappers").runtimes[self.simulator.protocol]
        self.driver_cls = runtime.driver_cls
        runtime.driver_cls = instrument(runtime.driver_cls, self.contract)
        folder = Path(inspect.getfile(self.driver_cls)).parent
        self.watchdog = LoopWatchdog(asyncio.get_running_loop(), [folder], self.suite.blocked_ms / 1000)
        self.watchdog.start()
        await self.history.attach((await edge.client()).bus)
        return edge

    def finish(self) -> list[str]:
        """Stop watching; the problems no wait has reported yet."""
        if self.watchdog is not None:
            self.watchdog.stop()
        self.log.detach()
        return [p for p in self.problems() if p not in self._reported]

    def deploy(self, name: str = "conformance-device", **kwargs: Any) -> str:
        assert self.edge is not None
        self.edge.write_manifest(f"{name}.yaml", *manifests(self.simulator, name, **kwargs))
        return f"conformance/{name}"

    def remove(self, name: str = "conformance-device") -> None:
        assert self.edge is not None
        (self.edge.manifests / f"{name}.yaml").unlink()

    # ----------------------------------------------------------------- what went wrong

    def problems(self) -> list[str]:
        found = list(self.contract.violations)
        if self.watchdog is not None:
            found += [
                f"{stall.describe()}: a driver must never block; await an asyncio API, or run a "
                "blocking library call in a thread (await asyncio.to_thread(...))"
                for stall in self.watchdog.stalls
            ]
        return found

    def twin_error(self, key: str, point: str) -> str | None:
        assert self.edge is not None
        record = self.edge.record(key, point)
        return record.error if record is not None else None

    def state(self, key: str) -> str | None:
        assert self.edge is not None
        return self.edge.state(key)

    async def diagnose(self, headline: str, key: str, point: str | None = None, since: float = 0.0) -> str:
        assert self.edge is not None
        lines = [headline]
        if point is not None:
            lines.append(f"  reported: {self.history.describe_reports(key, point, since)}")
            lines.append(
                f"  the twin now: value {self.edge.reported(key, point)!r}, "
                f"error {self.twin_error(key, point)!r}"
            )
            try:
                held = await self.simulator.device_value(point)
                lines.append(f"  the device holds: {held!r} (decoded by the simulator)")
            except Exception as exc:  # the simulator may be down in this test
                lines.append(f"  the device holds: unknown ({type(exc).__name__}: {exc})")
        state = self.state(key)
        reason = next(
            (e for p in self.points if (e := self.twin_error(key, p)) and e.startswith(OFFLINE_PREFIX)),
            None,
        )
        lines.append(f"  device state: {state}" + (f" ({reason})" if reason and state == "offline" else ""))
        lines.append(f"  states reported: {self.history.describe_states(key)}")
        for problem in self.problems():
            if problem not in headline:
                lines.append(f"  driver: {problem}")
            self._reported.add(problem)
        tail = self.log.tail(containing=key) or self.log.tail()
        if tail:
            lines.append("  runtime log, last lines:")
            lines += [f"    {line}" for line in tail]
        return "\n".join(lines)

    async def until(
        self,
        what: str,
        ok: Callable[[], bool],
        key: str,
        point: str | None = None,
        decided: list[Decided] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Wait until ``ok()``; fail at once when a ``decided`` check or the driver contract says
        the outcome is a failure, else after ``timeout``."""
        loop = asyncio.get_running_loop()
        timeout = timeout or self.suite.timeout
        start = time.monotonic()
        deadline = loop.time() + timeout
        while True:
            if self.problems():
                raise AssertionError(
                    await self.diagnose(
                        f"{what}: the driver broke its contract: {self.problems()[0]}", key, point, start
                    )
                )
            if ok():
                return
            for check in decided or []:
                reason = check()
                if reason:
                    raise AssertionError(await self.diagnose(f"{what}: {reason}", key, point, start))
            if loop.time() > deadline:
                raise AssertionError(
                    await self.diagnose(f"{what}: timed out after {timeout:g}s", key, point, start)
                )
            await asyncio.sleep(0.02)

    # ----------------------------------------------------------------- decided outcomes

    def not_online(self, key: str) -> Decided:
        def check() -> str | None:
            state = self.state(key)
            return f"the device is {state}" if state in ("offline", "unhealthy") else None

        return check

    def has_error(self, key: str, point: str) -> Decided:
        """The mapper's last report for ``point`` is an error (other than the device being offline).
        (From the mapper's own reports: the edge's twin may add errors of its own, such as a
        desired value it is still re-sending, which are not the mapper's final word. A report made
        before the wait began counts too: the runtime reports an unchanged error only once.)"""

        def check() -> str | None:
            reports = self.history.of(key, point)
            last = reports[-1] if reports else None
            if last is None or not last.error or last.value is not None:
                return None
            if last.error.startswith(OFFLINE_PREFIX):
                return None
            return f"the mapper reported an error for {point}: {last.error}"

        return check

    def keeps_reporting_other(self, key: str, point: Point, value: Any) -> Decided:
        """The mapper went on reporting another value for ``settle`` seconds: it will not change."""
        since = time.monotonic() + 0.5
        settle = self.suite.settle

        def check() -> str | None:
            if time.monotonic() - since < settle:
                return None
            recent = [r for r in self.history.of(key, point.name, since) if r.value is not None]
            if len(recent) < 5 or any(_same(point, r.value, value) for r in recent):
                return None
            return f"the mapper kept reporting {recent[-1].value!r} for {settle:g}s"

        return check

    async def value(self, key: str, point: Point, value: Any, what: str) -> None:
        assert self.edge is not None
        edge = self.edge
        await self.until(
            f"{point.name} ({point.type}) {what}: expected {_text(point, value)!r}",
            lambda: _same(point, edge.reported(key, point.name), value),
            key,
            point.name,
            [
                self.not_online(key),
                self.has_error(key, point.name),
                self.keeps_reporting_other(key, point, value),
            ],
        )

    async def online(self, key: str, timeout: float | None = None) -> None:
        contract = self.contract
        failed, good = contract.failed_connects, contract.good_connects

        def connect_keeps_failing() -> str | None:
            tries = contract.failed_connects - failed
            if self.state(key) == "offline" and tries >= 3 and contract.good_connects == good:
                return f"connect() failed {tries} times in a row"
            return None

        unhealthy_since: list[float] = []

        def stays_unhealthy() -> str | None:
            if self.state(key) != "unhealthy":
                unhealthy_since.clear()
                return None
            unhealthy_since[:] = unhealthy_since or [time.monotonic()]
            if time.monotonic() - unhealthy_since[0] < 1.0:
                return None
            errors = {p: e for p in self.points if (e := self.twin_error(key, p))}
            return "the device stays unhealthy" + (f"; property errors: {errors}" if errors else "")

        await self.until(
            f"{key} to go online",
            lambda: self.state(key) == "online",
            key,
            decided=[connect_keeps_failing, stays_unhealthy],
            timeout=timeout,
        )


class MapperConformance:
    """Subclass as ``Test<Name>Conformance`` in a mapper's tests; needs a ``mapper_simulator`` fixture."""

    timeout: ClassVar[float] = 15.0
    """Longest wait for anything; most failures are decided (and reported) much sooner."""
    settle: ClassVar[float] = 2.0
    """A wrong value reported steadily for this long fails a wait at once."""
    blocked_ms: ClassVar[float] = 100.0
    """A driver call that blocks the event loop longer than this fails the test."""
    write_rounds: ClassVar[int] = 4
    """Rounds of writes to every writable point while it is polled at the fastest cycle."""
    hang_after: ClassVar[float] = 240.0
    """A test still running after this many seconds prints every thread's stack and exits."""

    @pytest.fixture(autouse=True)
    def _hang_guard(self) -> Iterator[None]:
        faulthandler.dump_traceback_later(self.hang_after, exit=True)
        yield
        faulthandler.cancel_dump_traceback_later()

    @pytest.fixture
    async def run(self, mapper_simulator: DeviceSimulator, edge: Any) -> AsyncIterator[_Run]:
        """An edge with the mapper, watched; fails the test on a contract problem no wait reported."""
        run = _Run(self, mapper_simulator, edge)
        await run.start()
        try:
            yield run
        finally:
            problems = run.finish()
        assert not problems, "the driver broke its contract: " + "\n  ".join(problems)

    @pytest.fixture
    async def deployed(self, run: _Run) -> tuple[_Run, str]:
        key = run.deploy()
        await run.online(key)
        return run, key

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
        assert all(p.loose_type is None or p.loose_type.strip() for p in points), (
            "loose_type needs the reason the point's reads may return another type"
        )

    async def test_connects_and_reads_every_point(self, deployed: tuple[_Run, str]) -> None:
        run, key = deployed
        assert run.edge is not None
        for point in run.points.values():
            await run.value(key, point, point.initial, "reported")
            assert run.edge.record(key, point.name).type == MODEL_TO_TWIN_TYPE[point.type]

    async def test_reports_a_change_made_on_the_device(
        self, deployed: tuple[_Run, str], mapper_simulator: DeviceSimulator
    ) -> None:
        run, key = deployed
        point = next(p for p in run.points.values() if p.changed is not None)
        await run.value(key, point, point.initial, "reported")
        await mapper_simulator.set_device_value(point.name, point.changed)
        await run.value(key, point, point.changed, "changed on the device")

    async def test_writes_a_desired_value_and_reads_it_back(
        self, deployed: tuple[_Run, str], mapper_simulator: DeviceSimulator
    ) -> None:
        run, key = deployed
        assert run.edge is not None
        client = await run.edge.client()
        for point in (p for p in run.points.values() if p.writable):
            await client.set_desired(key, point.name, _text(point, point.changed))
            await run.value(key, point, point.changed, "written and read back")
            held = await mapper_simulator.device_value(point.name)
            assert _same(point, _text(point, held), point.changed), await run.diagnose(
                f"{point.name} ({point.type}): wrote {point.changed!r} and the mapper read it back, but the "
                f"device holds {held!r}: the driver encodes and decodes the same wrong way",
                key,
                point.name,
            )

    async def test_read_only_points_are_not_written(
        self, deployed: tuple[_Run, str], mapper_simulator: DeviceSimulator
    ) -> None:
        run, key = deployed
        edge = run.edge
        assert edge is not None
        point = next((p for p in run.points.values() if not p.writable), None)
        assert point is not None, "declare at least one read-only point"
        client = await edge.client()
        await run.value(key, point, point.initial, "reported")
        before = await mapper_simulator.device_value(point.name)
        value = _text(point, point.changed if point.changed is not None else point.initial)
        # The edge refuses it ...
        with pytest.raises(EdgeRequestError, match="ReadOnly"):
            await client.set_desired(key, point.name, value)
        # ... and so does the mapper, when a desired value reaches it around the edge's check
        # (an older edge, a misbehaving cloud): the device is never written, the twin says why.
        namespace, name = key.split("/")
        delta = {"event_id": "conformance", "timestamp": 0, "twin": {}, "delta": {point.name: value}}
        client.bus.publish(
            f"$hw/events/device/{namespace}/{name}/twin/update/delta", json.dumps(delta), qos=1
        )
        await run.until(
            f"the mapper refusing to write ReadOnly {point.name}",
            lambda: "ReadOnly" in edge.error(key, point.name),
            key,
            point.name,
            [run.not_online(key)],
        )
        after = await mapper_simulator.device_value(point.name)
        assert after == before, await run.diagnose(
            f"ReadOnly {point.name} was written: the device held {before!r} and now holds {after!r}",
            key,
            point.name,
        )

    async def test_device_error_marks_the_property_and_not_the_device(
        self, deployed: tuple[_Run, str], mapper_simulator: DeviceSimulator
    ) -> None:
        run, key = deployed
        edge = run.edge
        assert edge is not None
        failing, *others = list(run.points.values())
        await run.value(key, failing, failing.initial, "reported")
        await mapper_simulator.fail_point(failing.name, True)
        expected = mapper_simulator.point_error
        other_error: list[float] = []

        def error_without_text() -> str | None:
            """An error that does not show the device's text, for a while: it will not come."""
            error = run.twin_error(key, failing.name)
            if not expected or not error or expected in error:
                return None
            other_error[:] = other_error or [time.monotonic()]
            if time.monotonic() - other_error[0] < 1.0:
                return None
            return f"its error {error!r} does not show what the device said ({expected!r})"

        await run.until(
            f"an error on {failing.name}" + (f" showing the device's {expected!r}" if expected else ""),
            lambda: (
                expected in (run.twin_error(key, failing.name) or "")
                if expected
                else bool(run.twin_error(key, failing.name))
            ),
            key,
            failing.name,
            [run.not_online(key), error_without_text],
        )
        assert edge.state(key) == "online", await run.diagnose(
            f"only {failing.name} fails, yet the device is {edge.state(key)}: a device error must mark "
            "the property (raise DeviceError), not the device",
            key,
            failing.name,
        )
        for point in others:
            assert run.twin_error(key, point.name) is None, await run.diagnose(
                f"{point.name} has an error while only {failing.name} fails", key, point.name
            )
        await mapper_simulator.fail_point(failing.name, False)
        await run.until(
            f"the error on {failing.name} to clear",
            lambda: run.twin_error(key, failing.name) is None,
            key,
            failing.name,
            [run.not_online(key)],
        )

    async def test_every_point_failing_makes_the_device_unhealthy(
        self, deployed: tuple[_Run, str], mapper_simulator: DeviceSimulator
    ) -> None:
        run, key = deployed
        for point in run.points.values():
            await mapper_simulator.fail_point(point.name, True)
        offline = run.not_online(key)
        await run.until(
            f"{key} to be unhealthy",
            lambda: run.state(key) == "unhealthy",
            key,
            decided=[lambda: offline() if run.state(key) == "offline" else None],
        )
        for point in run.points.values():
            await mapper_simulator.fail_point(point.name, False)
        await run.online(key)

    async def _stays_offline(self, run: _Run, key: str, what: str) -> None:
        """Offline, with the reason on the twin, for a whole outage: never online or unhealthy,
        no value reported (a value read from nowhere is a stale cache)."""
        edge = run.edge
        assert edge is not None
        first = next(iter(run.points))
        await run.until(
            f"{key} to go offline {what}",
            lambda: run.state(key) == "offline",
            key,
            first,
            [
                lambda: (
                    "the device went unhealthy, not offline: every read failed as a property error; "
                    "a lost device must raise DeviceUnreachable, OSError or TimeoutError"
                    if run.state(key) == "unhealthy"
                    else None
                )
            ],
        )
        await run.until(
            "the reason the device is offline, on its twin",
            lambda: edge.error(key, first).startswith(OFFLINE_PREFIX),
            key,
            first,
        )
        since = time.monotonic()
        deadline = since + run.outage_s
        while time.monotonic() < deadline:
            flips = [s for s in run.history.states_of(key, since) if s.state != "offline"]
            values = [
                r for r in run.history.reports if r.key == key and r.at >= since and r.value is not None
            ]
            reason = None
            if flips:
                reason = f"the device was reported {flips[0].state} while it was down"
            elif values:
                reason = f"{values[0].prop} was reported as {values[0].value!r} while the device was down"
            elif run.state(key) != "offline":
                reason = f"the device is {run.state(key)} while it is down"
            if reason or run.problems():
                raise AssertionError(
                    await run.diagnose(
                        f"{key} must stay offline {what} (checked for {run.outage_s:g}s: read timeout plus "
                        f"back-off): {reason or 'the driver broke its contract: ' + run.problems()[0]}",
                        key,
                        first,
                        since,
                    )
                )
            await asyncio.sleep(0.02)

    async def test_device_lost_stays_offline_until_it_returns(
        self, deployed: tuple[_Run, str], mapper_simulator: DeviceSimulator
    ) -> None:
        run, key = deployed
        point = next(p for p in run.points.values() if p.changed is not None)
        await run.value(key, point, point.initial, "reported")
        await mapper_simulator.set_reachable(False)
        await self._stays_offline(run, key, "while the device is lost")
        await mapper_simulator.set_reachable(True)
        await mapper_simulator.set_device_value(point.name, point.changed)
        await run.online(key, timeout=self.timeout + 30)
        await run.value(key, point, point.changed, "after the device came back")

    async def test_device_restart_is_reconnected(
        self, deployed: tuple[_Run, str], mapper_simulator: DeviceSimulator
    ) -> None:
        """The device goes away and is back at once (a reboot: its connections are gone): the
        mapper reconnects and reads it again, never stays with a dead connection."""
        run, key = deployed
        point = next(p for p in run.points.values() if p.changed is not None)
        await run.value(key, point, point.initial, "reported")
        await mapper_simulator.set_reachable(False)
        await mapper_simulator.set_reachable(True)
        await mapper_simulator.set_device_value(point.name, point.changed)
        unhealthy_since: list[float] = []

        def stays_unhealthy() -> str | None:
            if run.state(key) != "unhealthy":
                unhealthy_since.clear()
                return None
            unhealthy_since[:] = unhealthy_since or [time.monotonic()]
            if time.monotonic() - unhealthy_since[0] < 1.0:
                return None
            return "the device stays unhealthy: a dead connection must raise DeviceUnreachable or OSError"

        await run.until(
            f"{point.name} ({point.type}) read after the device restarted: "
            f"expected {_text(point, point.changed)!r}",
            lambda: (
                run.state(key) == "online" and _same(point, run.edge.reported(key, point.name), point.changed)
                if run.edge is not None
                else False
            ),
            key,
            point.name,
            [*(run.has_error(key, name) for name in run.points), stays_unhealthy],
            timeout=self.timeout + 30,
        )

    async def test_device_deployed_while_down_stays_offline_and_closes_cleanly(
        self, run: _Run, mapper_simulator: DeviceSimulator
    ) -> None:
        await mapper_simulator.set_reachable(False)
        key = run.deploy()
        await self._stays_offline(run, key, "when deployed while the device is down")
        await mapper_simulator.set_reachable(True)
        await run.online(key, timeout=self.timeout + 30)
        point = next(iter(run.points.values()))
        await run.value(key, point, point.initial, "reported once the device is up")
        # The Device is removed: close() after a failed and a good connect, no connection left.
        assert run.edge is not None
        runtime = run.edge.core.module("mappers").runtimes[mapper_simulator.protocol]
        closes = run.contract.closes
        run.remove()
        await run.until(
            f"the mapper to stop serving {key} after its Device was removed",
            lambda: key not in runtime.workers and run.contract.closes > closes,
            key,
        )
        open_now = mapper_simulator.open_connections()
        if open_now is None:
            return
        deadline = time.monotonic() + 2
        while (open_now := mapper_simulator.open_connections() or 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert open_now == 0, await run.diagnose(
            f"the device still has {open_now} connection(s) open 2s after its Device was removed: "
            f"{run.driver_cls.__qualname__ if run.driver_cls else 'the driver'}.close() must close them",
            key,
        )

    async def test_writes_while_polling_at_the_fastest_cycle(
        self, run: _Run, mapper_simulator: DeviceSimulator
    ) -> None:
        """Polls of two cycles and writes run at once on one connection, many times: a missing
        lock around a request and its answer shows as errors or wrong values every run."""
        fast = mapper_simulator.fastest_cycle_ms
        names = list(run.points)
        key = run.deploy(cycles={n: fast if i % 2 else fast * 3 // 2 for i, n in enumerate(names)})
        start = time.monotonic()
        await run.online(key)
        assert run.edge is not None
        client = await run.edge.client()
        writable = [p for p in run.points.values() if p.writable]
        for round_ in range(self.write_rounds):
            wanted = {p.name: (p.changed if round_ % 2 == 0 else p.initial) for p in writable}
            for point in writable:
                await client.set_desired(key, point.name, _text(point, wanted[point.name]))
            for point in writable:
                await run.value(key, point, wanted[point.name], f"written in round {round_ + 1} while polled")
        errors = [r for r in run.history.reports if r.key == key and r.at >= start and r.error]
        assert not errors, await run.diagnose(
            f"{errors[0].prop} had an error while written and polled at once: {errors[0].error}",
            key,
            errors[0].prop,
        )
        states = {s.state for s in run.history.states_of(key, start)} - {"online"}
        assert not states, await run.diagnose(f"the device was {', '.join(states)} while written", key)

    async def test_bad_config_data_is_refused_with_the_field_named(
        self, run: _Run, mapper_simulator: DeviceSimulator
    ) -> None:
        handle = run.edge
        assert handle is not None
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
                return bad.field in (run.twin_error(key, watched) or "")

            await run.until(f"an error naming {bad.field}", named, key, watched)
            if bad.point is None:

                def unhealthy(key: str = key) -> bool:
                    return run.state(key) == "unhealthy"

                await run.until(f"{key} to be unhealthy", unhealthy, key)
