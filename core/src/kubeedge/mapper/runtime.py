"""The mapper runtime: everything a protocol mapper needs except its driver.

One :class:`MapperRuntime` per protocol, in the edge process or in its own (``kubeedge mapper
run NAME``); it learns its devices from the edge over the bus (:mod:`kubeedge.api.assignment`)
and runs one :class:`DeviceWorker` per device:

* connect, and reconnect with exponential back-off and jitter after the device was unreachable;
* read each property every ``collectCycle`` (batched through ``Driver.read_many`` up to the
  driver's ``max_batch``), or take pushed values from ``Driver.subscribe``;
* convert to the DeviceModel type, check ``minimum``/``maximum``, apply the report policy
  (:mod:`kubeedge.mapper.policy`) and send one ``twin/update`` per device and cycle;
* write desired values from ``twin/update/delta``: only the changed property, never a device
  restart; ReadOnly refused; the value read back and reported;
* report the device state (online, offline, unhealthy) on ``state/update``: online once connected;
  offline while it cannot be reached; unhealthy while every polled property fails or the driver's
  health check (``Driver.state``, asked every ``stateReport.reportCycle`` of the Device, else
  every ``stateInterval`` seconds of the mapper's settings) says so or fails.

A driver error marks a property (``metadata.error`` in its twin) or the device (its state); it
never stops the mapper or another device.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import random
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from kubeedge.api import topics
from kubeedge.api.assignment import Assignment, AssignmentMessage, EdgeStatus, MapperGoodbye, MapperHello
from kubeedge.api.device import Device, DeviceModel
from kubeedge.api.manifests import format_path
from kubeedge.api.twin import now_ms
from kubeedge.api.values import check_range, format_value, parse_value, twin_type, values_equal
from kubeedge.backoff import backoff_delay
from kubeedge.bus import BusClient
from kubeedge.driver import DeviceUnreachable, Driver, Property
from kubeedge.errors import WireError
from kubeedge.mapper.policy import REPORT_KEY, ReportPolicy, ReportState, cycle_ms

T = TypeVar("T")
log = logging.getLogger(__name__)

UNREACHABLE = (DeviceUnreachable, OSError, asyncio.TimeoutError, ConnectionError)
STOP_TIMEOUT = 5.0
STABLE_CONNECTION_S = 10.0
"""A connection that served this long resets the reconnect back-off."""


class MapperSettings(BaseModel):
    """Runtime settings every mapper has, besides its driver's own (``mappers.NAME.*``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds a device may take to connect."""
    read_timeout: float = Field(default=10.0, gt=0)
    """Seconds a read (of one batch) or a write may take before the device counts as unreachable."""
    max_backoff: float = Field(default=30.0, gt=0)
    """Longest wait between reconnection attempts, seconds."""
    state_interval: float = Field(default=30.0, gt=0)
    """Seconds between health checks (``Driver.state``) of a connected device, for devices whose
    Device sets no ``spec.stateReport.reportCycle``."""


@dataclass
class PropertyPlan:
    prop: Property[Any]
    collect_s: float
    report: ReportState
    polled: bool = True


@dataclass
class DevicePlan:
    """A device made ready for its driver: typed configData, typed visitors, schedules."""

    device: Device
    model: DeviceModel
    config: BaseModel | None
    properties: dict[str, PropertyPlan] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """configData errors, each naming the field; the device is not served while there are any."""
    property_problems: dict[str, str] = field(default_factory=dict)
    located: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)
    """Every problem above as (field path, message): what ``kubeedge validate`` reports."""

    @property
    def key(self) -> str:
        return self.device.key


DEFAULT_POLICY = ReportPolicy()


def fingerprint(device: Device, model: DeviceModel) -> bytes:
    """What requires a device restart when it changes: not desired values, not status (a digest:
    a mapper keeps one per device)."""
    spec = device.spec.model_dump(mode="json", exclude_none=True)
    for prop in spec.get("properties", []):
        prop.pop("desired", None)
    text = _canonical([spec, model.spec.model_dump(mode="json", exclude_none=True)])
    return hashlib.blake2b(text, digest_size=16).digest()


def _canonical(value: Any) -> bytes:
    """JSON with sorted keys, also for an integer beyond 64 bits in configData (which orjson
    refuses: it once stopped a whole snapshot at the device that had one)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True).encode()


def plan_device(driver_cls: type[Driver[Any, Any]], device: Device, model: DeviceModel) -> DevicePlan:
    """Validate a device's configData against the driver's models; errors name the field.

    ``device`` has its model's defaults merged in (:func:`~kubeedge.api.device.apply_model_defaults`).
    ``kubeedge validate`` calls this too, so it refuses what the mapper would refuse, in the same words.
    """
    plan = DevicePlan(device, model, None)
    config_data = (device.spec.protocol.config_data if device.spec.protocol else None) or {}
    try:
        plan.config = driver_cls.config_model.model_validate(config_data)
    except ValidationError as exc:
        plan.problems += _problems(exc, ("spec", "protocol", "configData"), plan.located)
    for i, spec_prop in enumerate(device.spec.properties or []):
        model_prop = model.property(spec_prop.name)
        kind = twin_type(model_prop.type if model_prop else None)
        where = ("spec", "properties", i, "visitors", "configData")
        raw = dict((spec_prop.visitors.config_data if spec_prop.visitors else None) or {})
        try:
            given = raw.pop(REPORT_KEY, None)
            policy = ReportPolicy.model_validate(given) if given else DEFAULT_POLICY
        except ValidationError as exc:
            plan.property_problems[spec_prop.name] = "; ".join(
                _problems(exc, (*where, REPORT_KEY), plan.located)
            )
            continue
        try:
            visitor = driver_cls.visitor_model.model_validate(raw)
        except ValidationError as exc:
            plan.property_problems[spec_prop.name] = "; ".join(_problems(exc, where, plan.located))
            continue
        collect = cycle_ms(spec_prop.collect_cycle)
        max_interval = policy.max_interval or max(cycle_ms(spec_prop.report_cycle), collect)
        plan.properties[spec_prop.name] = PropertyPlan(
            prop=Property(
                name=spec_prop.name,
                type=kind,
                visitor=visitor,
                read_only=bool(model_prop and model_prop.access_mode == "ReadOnly"),
                unit=model_prop.unit if model_prop else None,
                minimum=model_prop.minimum if model_prop else None,
                maximum=model_prop.maximum if model_prop else None,
            ),
            collect_s=collect / 1000,
            report=ReportState(policy, max_interval / 1000),
            polled=kind != "stream",
        )
    return plan


def _problems(
    exc: ValidationError, prefix: tuple[Any, ...], located: list[tuple[tuple[Any, ...], str]]
) -> list[str]:
    """Each error as ``path: message``; also appended to ``located`` as ``(path, message)``."""
    out = []
    for error in exc.errors():
        kind = error["type"]
        message = (
            "unknown key"
            if kind == "extra_forbidden"
            else "required key is missing"
            if kind == "missing"
            else error["msg"]
        )
        located.append(((*prefix, *error["loc"]), message))
        out.append(f"{format_path((*prefix, *error['loc']))}: {message}")
    return out


class DeviceWorker:
    """Serves one device with one driver instance, for as long as the device is assigned."""

    def __init__(self, runtime: MapperRuntime, plan: DevicePlan) -> None:
        self.runtime = runtime
        self.plan = plan
        self.key = plan.key
        self.namespace = plan.device.namespace
        self.name = plan.device.name
        self._update_topic = topics.device_topic(self.namespace, self.name, topics.TWIN_UPDATE)
        self.state: str | None = None
        self.state_reason = ""
        """Why the device is in its state (logged with every change of either)."""
        self.driver: Driver[Any, Any] | None = None
        self._desired: dict[str, str] = {}
        self._last_read: dict[str, str] = {}
        """The value each property last read as (reported or not), since the last (re)connect."""
        self._write_errors: dict[str, str] = {}
        """Why the last write of a property failed; shown with its reports until a write succeeds."""
        self._health_problem: str | None = None
        """Why the driver's health check says the device is unhealthy (None: it says online)."""
        self._reads_failing = False
        """Every polled property failed at its last read."""
        self._polled: list[PropertyPlan] = []
        self._desired_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"device:{self.key}")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            # A driver stuck in a library call that swallows cancellation must not hang shutdown.
            done, _ = await asyncio.wait([task], timeout=STOP_TIMEOUT)
            if not done:
                log.warning(
                    "device %s: its driver did not stop within %gs; abandoned", self.key, STOP_TIMEOUT
                )

    # ----------------------------------------------------------------- desired values

    def want(self, desired: dict[str, str]) -> None:
        """Desired values from a delta (or a twin/get at start); written by the serving loop."""
        for name, value in desired.items():
            plan = self.plan.properties.get(name)
            if plan is None:
                continue
            if plan.prop.read_only:
                self._publish_twins(
                    {name: {"metadata": {"type": plan.prop.type, "error": "ReadOnly: not written"}}}
                )
                continue
            if value == "":
                # an empty desired value: relinquish where the driver can, else nothing to write
                if self.runtime.driver_cls.relinquishes:
                    self._desired[name] = value
                    self._write_errors.pop(name, None)
                continue
            if (
                name not in self._desired
                and name not in self._write_errors
                and values_equal(plan.prop.type, self._last_read.get(name), value)
            ):
                # The device holds it already (a delta and a twin/get for one value, or an edge
                # re-send that crossed a good read-back). Whenever the reading differs, the edge's
                # twin sends the delta again (level-triggered, with back-off) and it is written.
                continue
            self._desired[name] = value
            self._write_errors.pop(name, None)  # a new attempt
        if self._desired:
            self._desired_event.set()

    # ----------------------------------------------------------------- the serving loop

    async def _run(self) -> None:
        if self.plan.problems:
            log.error("device %s cannot be served:\n  %s", self.key, "\n  ".join(self.plan.problems))
            # Shown on every property's twin, so `kubeedge device get` says why nothing comes.
            error = "device not served: " + "; ".join(self.plan.problems)
            self._publish_twins(
                {p.name: {"metadata": {"error": error}} for p in self.plan.device.spec.properties or []}
            )
            self._set_state("unhealthy", error)
            return
        for name, problem in self.plan.property_problems.items():
            log.error("device %s property %s cannot be served: %s", self.key, name, problem)
            self._publish_twins({name: {"metadata": {"error": problem}}})
        attempt = 0
        settings = self.runtime.settings
        while True:
            driver = self.runtime.driver_cls(
                self.plan.device, self.plan.model, self.plan.config, self.runtime.driver_settings
            )
            self.driver = driver
            try:
                await _within(settings.connect_timeout, driver.connect())
            except asyncio.CancelledError:
                await _close(driver)
                raise
            except Exception as exc:
                self._offline(f"cannot connect: {_describe(exc)}")
                await _close(driver)
                attempt += 1
                await asyncio.sleep(backoff_delay(attempt, first=0.4, limit=settings.max_backoff))
                continue
            self.connects += 1
            self._last_read.clear()
            self._health_problem = None
            self._reads_failing = False
            self._set_state("online", "connected")
            self.runtime.request_twin(self)
            connected_at = asyncio.get_running_loop().time()
            try:
                await self._serve(driver)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._offline(f"lost: {_describe(_first_leaf(exc))}")
            finally:
                await _close(driver)
                self.driver = None
            # The back-off starts over only after a connection that served for a while: a device
            # that accepts connections and is lost at once (its health check says offline, its
            # first read fails) is retried less and less often, not a few times a second.
            if asyncio.get_running_loop().time() - connected_at >= STABLE_CONNECTION_S:
                attempt = 0
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, first=0.4, limit=settings.max_backoff))

    async def _serve(self, driver: Driver[Any, Any]) -> None:
        served = [p for p in self.plan.properties.values() if p.polled]
        pushed = [p for p in served if driver.supports_push() and driver.pushes(p.prop)]
        groups: dict[float, list[PropertyPlan]] = {}
        self._polled = [p for p in served if p not in pushed]
        for plan in self._polled:
            groups.setdefault(plan.collect_s, []).append(plan)
        async with asyncio.TaskGroup() as group:
            if pushed:
                group.create_task(self._push(driver, pushed))
            for cycle, plans in groups.items():
                group.create_task(self._poll(driver, plans, cycle))
            group.create_task(self._write_loop(driver))
            if type(driver).state is not Driver.state:  # the default always answers online
                group.create_task(self._check_health(driver))

    async def _poll(self, driver: Driver[Any, Any], plans: list[PropertyPlan], cycle: float) -> None:
        loop = asyncio.get_running_loop()
        # Read once now, then on a grid offset at random: devices that started together do not
        # all hit the bus (and a shared gateway) in the same instant every cycle.
        await self._read(driver, plans)
        due = loop.time() + random.uniform(0, cycle)  # noqa: S311 - spreading load, not security
        await asyncio.sleep(due - loop.time())
        while True:
            await self._read(driver, plans)
            due += cycle
            now = loop.time()
            if due < now:  # overran: skip the missed ticks rather than bunch them up
                due = now + cycle - ((now - due) % cycle)
            await asyncio.sleep(due - now)

    async def _read(self, driver: Driver[Any, Any], plans: list[PropertyPlan]) -> None:
        batch = max(1, driver.max_batch)
        props = [p.prop for p in plans]
        results: list[Any] = []
        read_at = now_ms()
        for start in range(0, len(props), batch):
            chunk = props[start : start + batch]
            results += await _within(self.runtime.settings.read_timeout, driver.read_many(chunk))
        loop_now = asyncio.get_running_loop().time()
        updates: dict[str, dict[str, Any]] = {}
        for plan, result in zip(plans, results, strict=True):
            if isinstance(result, UNREACHABLE):
                raise result
            entry = self._convert(plan, result, loop_now, read_at)
            if entry is not None:
                updates[plan.prop.name] = entry
        self._publish_twins(updates, read_at)
        # Every polled property of the device, not only this cycle's group: a device whose
        # properties are read on two cycles must not flip between online and unhealthy.
        polled = self._polled
        self._reads_failing = bool(polled) and all(p.report.error is not None for p in polled)
        self._update_state()

    def _convert(self, plan: PropertyPlan, result: Any, now: float, read_at: int) -> dict[str, Any] | None:
        """The twin entry to report for one read result, or None if nothing needs reporting."""
        prop, report = plan.prop, plan.report
        if isinstance(result, BaseException):
            return self._property_error(plan, _describe(result))
        try:
            text = format_value(prop.type, result)
            value = parse_value(prop.type, text)
            check_range(value, prop.minimum, prop.maximum)
        except (ValueError, TypeError) as exc:
            return self._property_error(plan, f"read {result!r}: {exc}")
        self._last_read[prop.name] = text
        had_error = report.error is not None
        if not had_error and not report.should_report(value, text, now):
            return None
        report.reported(value, text, now)
        metadata = {"type": prop.type}
        if prop.name in self._write_errors:  # the reading is good, the desired value did not land
            metadata["error"] = self._write_errors[prop.name]
        return {"actual": {"value": text, "metadata": {"timestamp": read_at}}, "metadata": metadata}

    def _property_error(self, plan: PropertyPlan, message: str) -> dict[str, Any] | None:
        if plan.report.error == message:
            return None
        log.info("device %s property %s: %s", self.key, plan.prop.name, message)
        plan.report.error = message
        return {"metadata": {"type": plan.prop.type, "error": message}}

    async def _push(self, driver: Driver[Any, Any], plans: list[PropertyPlan]) -> None:
        by_name = {p.prop.name: p for p in plans}
        loop = asyncio.get_running_loop()

        def emit(name: str, value: Any) -> None:
            plan = by_name.get(name)
            if plan is None:
                return
            read_at = now_ms()
            entry = self._convert(plan, value, loop.time(), read_at)
            if entry is not None:
                self._publish_twins({name: entry}, read_at)

        await driver.subscribe([p.prop for p in plans], emit)
        raise DeviceUnreachable("the push subscription ended")

    def _state_interval(self) -> float:
        """Seconds between health checks: the Device's ``stateReport.reportCycle``, else the mapper's."""
        report = self.plan.device.spec.state_report
        if report is not None and report.report_cycle is not None:
            return cycle_ms(report.report_cycle) / 1000
        return self.runtime.settings.state_interval

    async def _check_health(self, driver: Driver[Any, Any]) -> None:
        """Ask ``driver.state()`` now and then every interval, while connected.

        ``online`` (or ``ok``): healthy; ``offline`` or an unreachable error (``DeviceUnreachable``,
        ``OSError``, a timeout): the device is lost, as when a read says so; ``unhealthy``, any other
        answer, or any other exception: unhealthy until the next check says online."""
        interval = self._state_interval()
        while True:
            try:
                answer = await _within(self.runtime.settings.read_timeout, driver.state())
            except UNREACHABLE:
                raise
            except Exception as exc:  # a broken health check marks the device, never the mapper
                problem: str | None = f"health check failed: {_describe(exc)}"
            else:
                state = str(answer).lower()
                if state == "offline":
                    raise DeviceUnreachable("the health check says the device is offline")
                if state in ("online", "ok"):
                    problem = None
                elif state == "unhealthy":
                    problem = "the health check says unhealthy"
                else:
                    problem = f"the health check answered {answer!r} (expected online, unhealthy or offline)"
            self._health_problem = problem  # logged with the state change it causes
            self._update_state()
            await asyncio.sleep(interval)

    async def _write_loop(self, driver: Driver[Any, Any]) -> None:
        while True:
            await self._desired_event.wait()
            self._desired_event.clear()
            while self._desired:
                name, value = next(iter(self._desired.items()))
                await self._write(driver, name, value)
                if self._desired.get(name) == value:
                    del self._desired[name]

    async def _write(self, driver: Driver[Any, Any], name: str, text: str) -> None:
        plan = self.plan.properties[name]
        prop = plan.prop
        try:
            if text == "":  # relinquish (want() keeps it only for a driver that can)
                value = None
            else:
                value = parse_value(prop.type, text)
                check_range(value, prop.minimum, prop.maximum)
        except ValueError as exc:
            self._publish_twins(
                {name: {"metadata": {"type": prop.type, "error": f"desired {text!r}: {exc}"}}}
            )
            return
        shown = "(relinquish)" if value is None else repr(text)
        try:
            await _within(self.runtime.settings.read_timeout, driver.write(prop, value))
            read_back = await _within(self.runtime.settings.read_timeout, driver.read(prop))
        except UNREACHABLE:
            raise
        except Exception as exc:
            log.info("device %s: writing %s=%s failed: %s", self.key, name, shown, _describe(exc))
            error = f"write of {shown} failed: {_describe(exc)}"
            self._write_errors[name] = error
            self._publish_twins({name: {"metadata": {"type": prop.type, "error": error}}})
            return
        self._write_errors.pop(name, None)
        read_at = now_ms()
        plan.report.error = None
        entry = self._convert(plan, read_back, asyncio.get_running_loop().time(), read_at)
        if entry is None:  # unchanged by policy: still confirm the read-back
            entry = {
                "actual": {"value": plan.report.text, "metadata": {"timestamp": read_at}},
                "metadata": {"type": prop.type},
            }
        self._publish_twins({name: entry}, read_at)

    # ----------------------------------------------------------------- bus output

    def _publish_twins(self, twins: dict[str, dict[str, Any]], timestamp: int | None = None) -> None:
        if not twins:
            return
        body = {"event_id": "", "timestamp": timestamp or now_ms(), "twin": twins}
        self.runtime.bus.publish(self._update_topic, orjson.dumps(body))

    def _offline(self, reason: str) -> None:
        """State offline, and the reason on every property's twin (so ``device get`` says why);
        the next good read of a property clears it."""
        self._set_state("offline", reason)
        message = f"device offline: {reason}"
        updates = {}
        for plan in self.plan.properties.values():
            if plan.report.error != message:
                plan.report.error = message
                updates[plan.prop.name] = {"metadata": {"type": plan.prop.type, "error": message}}
        self._publish_twins(updates)

    def _update_state(self) -> None:
        """While connected: unhealthy if every polled property fails or the health check says so."""
        if self._health_problem:
            self._set_state("unhealthy", self._health_problem)
        elif self._reads_failing:
            first = next((p for p in self._polled if p.report.error), None)
            why = f": {first.prop.name}: {first.report.error}" if first is not None else ""
            self._set_state("unhealthy", "every polled property fails to read" + why)
        else:
            self._set_state("online", "healthy again" if self.state == "unhealthy" else self.state_reason)

    def _set_state(self, state: str, reason: str) -> None:
        """Tell the edge about a new state; log a change of state or reason at info (a device
        retried while offline for the same reason is logged once)."""
        if (state, reason) == (self.state, self.state_reason):
            return
        log.info("device %s: %s -> %s: %s", self.key, self.state or "unknown", state, reason)
        self.state, self.state_reason = state, reason
        # the reason travels too (our extension), so `kubeedge device list` can say why
        body = {"event_id": "", "timestamp": now_ms(), "state": state, "reason": reason}
        self.runtime.bus.publish(
            topics.device_topic(self.namespace, self.name, topics.STATE_UPDATE),
            json.dumps(body).encode(),
            qos=1,
        )


def goodbye_will(node: str, protocol: str, instance: str) -> tuple[str, bytes, int, bool]:
    """The MQTT will of a mapper process's bus connection (``BusClient(will=...)``): a goodbye
    the broker publishes if the mapper's connection drops without one, so the edge stops
    counting a crashed mapper as serving its devices."""
    goodbye = MapperGoodbye(instance=instance, reason="connection lost")
    return topics.mapper_topic(node, protocol, topics.MAPPER_GOODBYE), goodbye.to_json(), 1, False


class MapperRuntime:
    """All devices of one protocol on one edge node."""

    def __init__(
        self,
        driver_cls: type[Driver[Any, Any]],
        bus: BusClient,
        node: str,
        driver_settings: BaseModel | None = None,
        settings: MapperSettings | None = None,
        name: str = "",
        distribution: tuple[str, str] = ("", ""),
        instance: str | None = None,
    ) -> None:
        self.driver_cls = driver_cls
        self.protocol = driver_cls.protocol
        self.bus = bus
        self.node = node
        self.driver_settings = driver_settings if driver_settings is not None else driver_cls.settings_model()
        self.settings = settings or MapperSettings()
        self.name = name or f"{self.protocol}-mapper"
        self.distribution = distribution
        """(name, version) of the distribution the driver comes from, told to the edge."""
        self.instance = instance or uuid.uuid4().hex
        """New on every start; the one in ``goodbye_will`` when the bus connection has that will."""
        self.workers: dict[str, DeviceWorker] = {}
        self._fingerprints: dict[str, bytes] = {}
        self._edge_instance: str | None = None
        self._snapshot: dict[str, tuple[Device, DeviceModel]] = {}
        """The devices of the snapshot being received, until its last part."""
        self._models: dict[bytes, DeviceModel] = {}
        self._inbox: asyncio.Queue[AssignmentMessage] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe and say hello; devices arrive as the edge answers. Call after ``bus.start``."""
        self._consumer = asyncio.create_task(self._consume(), name=f"mapper-{self.protocol}-assignments")
        self.bus.subscribe(topics.edge_topic(self.node, topics.EDGE_STATUS), self._on_edge_status, qos=1)
        self.bus.subscribe(
            topics.mapper_topic(self.node, self.protocol, topics.MAPPER_ASSIGNMENTS),
            self._on_assignments,
            qos=1,
        )
        self.bus.subscribe(f"{topics.DEVICE_PREFIX}+/+/{topics.TWIN_UPDATE_DELTA}", self._on_delta, qos=1)
        self.bus.subscribe(f"{topics.DEVICE_PREFIX}+/+/{topics.TWIN_GET_RESULT}", self._on_twin, qos=1)
        self.bus.on_connect(self._hello)
        if self.bus.connected:
            self._hello()

    async def stop(self) -> None:
        """Stop every device worker and say goodbye (the edge then shows the devices unserved)."""
        if self.bus.connected:
            goodbye = MapperGoodbye(instance=self.instance)
            self.bus.publish(
                topics.mapper_topic(self.node, self.protocol, topics.MAPPER_GOODBYE), goodbye.to_json(), qos=1
            )
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        workers, self.workers = list(self.workers.values()), {}
        self._fingerprints.clear()
        await asyncio.gather(*(w.stop() for w in workers))

    async def _consume(self) -> None:
        """Apply assignment messages one after another, in arrival order."""
        while True:
            message = await self._inbox.get()
            try:
                await self._apply(message)
            except Exception:  # one bad message must not stop the mapper
                log.exception("mapper %s: applying a %s assignment failed", self.protocol, message.kind)
            del message  # not kept alive (with every device it carried) until the next one

    def _hello(self) -> None:
        hello = MapperHello(
            instance=self.instance,
            name=self.name,
            distribution=self.distribution[0],
            distribution_version=self.distribution[1],
        )
        self.bus.publish(
            topics.mapper_topic(self.node, self.protocol, topics.MAPPER_HELLO), hello.to_json(), qos=1
        )
        log.info("mapper %s: hello to edge node %s; waiting for its snapshot", self.protocol, self.node)

    def request_twin(self, worker: DeviceWorker) -> None:
        """Ask the edge for a device's twin, to write desired values that are still pending."""
        body = json.dumps({"event_id": f"{self.instance}:{worker.key}", "timestamp": now_ms()}).encode()
        self.bus.publish(topics.device_topic(worker.namespace, worker.name, topics.TWIN_GET), body, qos=1)

    # ----------------------------------------------------------------- bus handlers

    def _on_edge_status(self, _topic: str, payload: bytes) -> None:
        try:
            status = EdgeStatus.model_validate_json(payload)
        except ValidationError:
            log.warning("mapper %s: unreadable edge status %r", self.protocol, payload[:100])
            return
        if status.state == "online" and status.instance != self._edge_instance:
            self._edge_instance = status.instance
            self._hello()

    def _on_assignments(self, _topic: str, payload: bytes) -> None:
        try:
            message = AssignmentMessage.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("mapper %s: unreadable assignment message: %s", self.protocol, exc)
            return
        if message.version != 1:
            log.warning("mapper %s: assignment version %s not understood", self.protocol, message.version)
            return
        self._inbox.put_nowait(message)

    async def _apply(self, message: AssignmentMessage) -> None:
        """Only the consumer task calls this, so changes to the workers never overlap."""
        if message.kind == "snapshot":
            if message.part == 1:
                self._snapshot = {}
                self._models.clear()
            # Parsed part by part, so only one part's JSON is ever in memory, not the fleet's.
            for assignment in message.devices:
                parsed = self._parse(assignment)
                if parsed is not None:
                    self._snapshot[parsed[0].key] = parsed
            message.devices.clear()
            if message.part < message.parts:
                return
            wanted, self._snapshot = self._snapshot, {}
            stopped = [k for k in self.workers if k not in wanted]
            for key in stopped:
                await self._remove(key, quiet=True)
            started = [
                key for key, (device, model) in wanted.items() if await self._serve(device, model, quiet=True)
            ]
            log.info(
                "mapper %s: snapshot from edge node %s: %d device(s); %d (re)started, %d stopped, "
                "%d unchanged",
                self.protocol,
                self.node,
                len(wanted),
                len(started),
                len(stopped),
                len(wanted) - len(started),
            )
            # The devices just set up live until the next snapshot: keep them out of the garbage
            # collector's full scans, which would otherwise delay readings by tens of ms. What an
            # earlier snapshot froze and has become garbage since (a replaced worker's cycles) is
            # unfrozen and collected first: frozen garbage is never freed, and every hello on the
            # bus brings a snapshot (found by hack/fuzz_manifests.py: about 100 objects per snapshot).
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        elif message.kind == "upsert":
            for assignment in message.devices:
                parsed = self._parse(assignment)
                if parsed is not None:
                    await self._serve(*parsed)
        else:
            for key in message.keys:
                await self._remove(key)

    def _parse(self, assignment: Assignment) -> tuple[Device, DeviceModel] | None:
        try:
            device = Device.model_validate(assignment.device)
            # Many devices share a model: parse each distinct one once.
            key = _canonical(assignment.model)
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = DeviceModel.model_validate(assignment.model)
            return device, model
        except (ValueError, TypeError) as exc:  # one device: the others of the message are served
            log.warning("mapper %s: assignment with an invalid device: %s", self.protocol, exc)
            return None

    async def _serve(self, device: Device, model: DeviceModel, quiet: bool = False) -> bool:
        """:meth:`_upsert`, with a failure confined to this device: the others of the message are
        still served."""
        try:
            return await self._upsert(device, model, quiet=quiet)
        except Exception:
            log.exception("mapper %s: device %s could not be set up", self.protocol, device.key)
            return False

    async def _upsert(self, device: Device, model: DeviceModel, quiet: bool = False) -> bool:
        """Serve a device (again, if it changed); False if it is served unchanged already.
        ``quiet``: per-device lines at debug (a snapshot logs one summary line)."""
        key = device.key
        mark = fingerprint(device, model)
        if self._fingerprints.get(key) == mark:
            return False  # only desired values or status changed: deltas handle those, no restart
        await self._remove(key, quiet=True)
        worker = DeviceWorker(self, plan_device(self.driver_cls, device, model))
        self.workers[key] = worker
        self._fingerprints[key] = mark
        worker.start()
        log.log(logging.DEBUG if quiet else logging.INFO, "mapper %s: serving %s", self.protocol, key)
        return True

    async def _remove(self, key: str, quiet: bool = False) -> None:
        worker = self.workers.pop(key, None)
        self._fingerprints.pop(key, None)
        if worker is not None:
            await worker.stop()
            log.log(
                logging.DEBUG if quiet else logging.INFO, "mapper %s: stopped serving %s", self.protocol, key
            )

    def _on_delta(self, topic: str, payload: bytes) -> None:
        worker = self._worker_for(topic)
        if worker is None:
            return
        try:
            body = json.loads(payload)
            delta = body.get("delta") or {}
        except (ValueError, AttributeError):
            log.warning("mapper %s: unreadable delta on %s", self.protocol, topic)
            return
        worker.want({k: v for k, v in delta.items() if isinstance(v, str)})

    def _on_twin(self, topic: str, payload: bytes) -> None:
        worker = self._worker_for(topic)
        if worker is None:
            return
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if body.get("event_id") != f"{self.instance}:{worker.key}":
            return
        pending = {}
        for name, twin in (body.get("twin") or {}).items():
            expected = ((twin or {}).get("expected") or {}).get("value")
            actual = ((twin or {}).get("actual") or {}).get("value")
            if expected and expected != actual:
                pending[name] = expected
        worker.want(pending)

    def _worker_for(self, topic: str) -> DeviceWorker | None:
        try:
            where = topics.parse_topic(topic)
        except WireError:
            return None
        key = getattr(where, "device_key", None)
        return self.workers.get(key) if key else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, asyncio.TimeoutError) and not text:
        return "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_leaf(exc: BaseException) -> BaseException:
    """The first real exception inside the groups a TaskGroup wraps it in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _within(seconds: float, call: Awaitable[T]) -> T:
    """The driver's ``call``, or ``TimeoutError`` after ``seconds``.

    Not ``asyncio.wait_for``: on Python 3.11 it drops a cancellation that arrives as the call
    finishes, and a device told to stop goes on serving. Not ``asyncio.timeout`` either: a
    protocol library that swallows the cancellation it uses (pymodbus waits with ``wait_for``)
    would leave the timeout unsignalled and this task marked as being cancelled. The call runs in
    its own task; a cancellation of ours is always passed on to it and always raised here.
    """
    task = asyncio.ensure_future(call)
    # Retrieved whatever happens (we may stop waiting for it), so it is never logged as lost;
    # task.result() below still raises what it raised.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task})  # raises only if we are cancelled meanwhile
        if task.cancelled():
            raise TimeoutError(f"no answer within {seconds:g}s")
    return task.result()


async def _close(driver: Driver[Any, Any]) -> None:
    try:
        await driver.close()
    except Exception as exc:  # the device is being let go of anyway; say so, never raise
        device = getattr(getattr(driver, "device", None), "key", "?")
        log.warning("device %s: the driver's close() failed: %s", device, _describe(exc))
