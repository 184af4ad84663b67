"""The MQTT-device driver: devices that publish their state on a broker and take commands there.

* **Push.** Values come by subscription (:meth:`MqttDriver.subscribe`), never by polling; one
  JSON parse per message serves every property on its topic. Retained state is a first value.
* **Shared broker.** Devices on the same broker with the same credentials and client id share
  one connection (:data:`kubeedge_mapper_mqtt.broker.LINKS`).
* **Device state.** Online while the broker connection is up and the device's availability
  topic (if any) says so; offline with the reason when the broker is lost, the availability topic
  says the not-available payload, or nothing came from the device for ``staleAfter`` (default:
  the largest ``collectCycle`` set on its properties). After going silent, a device is back
  online at its first new message (each reconnection attempt listens up to 5 s for one).
  Unhealthy while every property's last payload was bad.
* **Bad payloads** (oversized, not JSON, missing path, wrong type) are counted per property and
  shown on it, with the topic and the payload quoted; the device and the mapper go on.
* **Writes** publish the command and wait up to ``readBackTimeout`` for the device to publish
  the property's state again: that value is the read-back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from kubeedge import DeviceError, DeviceUnreachable, Driver, Emit, Property, Shared
from kubeedge_mapper_mqtt.broker import LINKS, BrokerLink, Message
from kubeedge_mapper_mqtt.config import MqttConfig, MqttVisitor
from kubeedge_mapper_mqtt.payloads import BadPayload, coerce, decode_raw, encode_command, lookup, parse_json
from kubeedge_mapper_mqtt.routes import DeviceRoutes, Route, plan_routes

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 5.0
SILENT_WAIT = 5.0
"""Longest a reconnection of a silent device listens for a message before it stays offline."""
BAD_REPORT_INTERVAL = 1.0
"""A property's bad-payload error is re-reported (with its new count) at most this often."""

_SILENT: dict[str, float] = {}
"""Devices (by key) last lost for saying nothing (time.monotonic() of it): their next connection
waits for a new message. Kept here, not in a driver: the runtime makes a new driver for every
connection attempt."""


class _Property:
    """What the driver knows of one property between messages."""

    __slots__ = ("bad", "bad_reported_at", "bad_text", "changed", "failing", "route", "value", "written")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.value: Any = None
        self.failing = False
        self.bad = 0
        """Bad payloads since the connection."""
        self.bad_text: str | None = None
        self.bad_reported_at = 0.0
        self.changed = asyncio.Event()
        """Set at each good value: a write's read-back waits for it."""
        self.written: Any = None


class MqttDriver(Driver[MqttConfig, MqttVisitor]):
    protocol = "mqtt"
    config_model = MqttConfig
    visitor_model = MqttVisitor

    _link: Shared[BrokerLink] | None = None

    async def connect(self) -> None:
        self._emit: Emit | None = None
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop_lost: Any = None
        self._watched: list[str] = []
        self._available: bool | None = None
        self._routes = self._plan()
        self._props = {name: _Property(route) for name, route in self._routes.routes.items()}
        self._by_topic: dict[str, list[_Property]] = {}
        for prop in self._props.values():
            for topic in prop.route.state_topics:
                self._by_topic.setdefault(topic, []).append(prop)
        self._stale_s = self._staleness()
        self._last_seen = time.monotonic()
        self._fresh = asyncio.Event()
        """Set at the first message that is not retained (a silent device is back)."""
        self._link = await LINKS.acquire(self.config)
        link = self._link.connection
        self._stop_lost = link.on_lost(self._on_lost)
        acks = []
        for topic in sorted(self._routes.topics()):
            qos = max((p.route.qos for p in self._by_topic.get(topic, [])), default=self.config.qos)
            acks.append(link.subscribe_filter(topic, self._on_message, qos))
            self._watched.append(topic)
            if link.retained_for_new_listener(topic):
                acks.append(link.resubscribe(topic, qos))
        await asyncio.gather(*acks)
        await link.sync(SYNC_TIMEOUT)  # retained availability and state are in
        if self._available is False:
            raise DeviceUnreachable(self._unavailable_reason())
        silent_since = _SILENT.get(self.device.key)
        if silent_since is not None and self._available is None:
            wait = min(self._stale_s or SILENT_WAIT, SILENT_WAIT)
            try:
                await asyncio.wait_for(self._fresh.wait(), wait)
            except TimeoutError:
                raise DeviceUnreachable(self._silence_reason(time.monotonic() - silent_since)) from None
        _SILENT.pop(self.device.key, None)
        self._last_seen = time.monotonic()

    def _plan(self) -> DeviceRoutes:
        specs = {p.name: p for p in self.device.spec.properties or []}
        properties = []
        for spec in specs.values():
            model_prop = self.model.property(spec.name)
            raw = (spec.visitors.config_data if spec.visitors else None) or {}
            visitor = MqttVisitor.model_validate({k: v for k, v in raw.items() if k != "report"})
            kind = _twin_type(model_prop.type if model_prop else None)
            properties.append((spec.name, kind, visitor))
        routes = plan_routes(self.config, self.device.namespace, self.device.name, properties)
        for name, problem in routes.problems.items():
            log.warning("device %s property %s: %s", self.device.key, name, problem)
        return routes

    def _staleness(self) -> float | None:
        if self.config.stale_after is not None:
            return self.config.stale_after / 1000 or None
        cycles = [
            int(p.collect_cycle)
            for p in self.device.spec.properties or []
            if p.collect_cycle and p.name in self._props and self._props[p.name].route.state_topics
        ]
        return max(cycles) / 1000 if cycles else None

    async def close(self) -> None:
        if self._link is None:
            return
        entry, self._link = self._link, None
        if self._ended.done() and not self._ended.cancelled():
            self._ended.exception()  # seen: asyncio would log it as never retrieved
        link = entry.connection
        if self._stop_lost is not None:
            self._stop_lost()
        for topic in self._watched:
            link.unsubscribe_filter(topic, self._on_message)
        self._watched = []
        try:
            if link.alive:
                await LINKS.pool.release(entry)
            else:
                entry.users -= 1
                await LINKS.pool.discard(entry)
        except Exception as exc:  # close() never raises
            log.warning("device %s: closing its broker connection: %s", self.device.key, exc)

    # ----------------------------------------------------------------- messages

    def _on_lost(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_exception(DeviceUnreachable(reason))

    def _on_message(self, message: Message) -> None:
        if message.topic == self._routes.availability_topic:
            self._on_availability(message)
            if message.topic not in self._by_topic:
                return
        if not message.retain:
            self._last_seen = time.monotonic()
            self._fresh.set()
        props = self._by_topic.get(message.topic)
        if props is None:  # a wildcard state topic: find who it is for
            from paho.mqtt.client import topic_matches_sub

            props = [p for t, ps in self._by_topic.items() if topic_matches_sub(t, message.topic) for p in ps]
        document: Any = None
        parsed: BadPayload | None = None
        for prop in props:
            route = prop.route
            try:
                if route.path is None:
                    value = decode_raw(
                        route.kind, message.payload, self.config.max_payload, **route.coerce_options()
                    )
                else:
                    if document is None and parsed is None:
                        try:
                            document = parse_json(message.payload, self.config.max_payload)
                        except BadPayload as exc:
                            parsed = exc
                    if parsed is not None:
                        raise parsed
                    assert route.path_text is not None
                    try:
                        found = lookup(document, route.path, route.path_text)
                    except BadPayload:
                        if route.skips_missing:
                            continue
                        raise
                    value = coerce(route.kind, found, **route.coerce_options())
            except BadPayload as exc:
                self._bad(prop, message.topic, exc)
                continue
            prop.value = value
            prop.failing = False
            prop.changed.set()
            if self._emit is not None:
                self._emit(route.name, value)

    def _bad(self, prop: _Property, topic: str, exc: BadPayload) -> None:
        prop.bad += 1
        prop.failing = True
        text = f"bad payload on {topic}: {exc} ({prop.bad} bad since connected)"
        now = time.monotonic()
        kind = exc.kind
        if self._emit is not None and (
            prop.bad_text != kind or now - prop.bad_reported_at >= BAD_REPORT_INTERVAL
        ):
            prop.bad_text, prop.bad_reported_at = kind, now
            self._emit(prop.route.name, DeviceError(text))

    def _on_availability(self, message: Message) -> None:
        text = message.payload.decode("utf-8", errors="replace").strip()
        if text.startswith("{"):
            try:
                state = parse_json(message.payload, self.config.max_payload).get("state")
            except (BadPayload, AttributeError):
                state = None
            text = str(state) if state is not None else text
        word = text.lower()
        if word == self._routes.payload_available.lower():
            self._available = True
            if not message.retain:
                self._fresh.set()
                self._last_seen = time.monotonic()
        elif word == self._routes.payload_not_available.lower():
            self._available = False
            self._unavailable_text = text
            if not self._ended.done():
                self._ended.set_exception(DeviceUnreachable(self._unavailable_reason()))
        else:
            log.info(
                "device %s: %s says %r, neither %r nor %r; ignored",
                self.device.key,
                message.topic,
                text[:80],
                self._routes.payload_available,
                self._routes.payload_not_available,
            )

    def _unavailable_reason(self) -> str:
        return f"{self._routes.availability_topic} says {getattr(self, '_unavailable_text', 'offline')!r}"

    def _silence_reason(self, seconds: float) -> str:
        limit = f"staleAfter {self.config.stale_after} ms" if self.config.stale_after else "collectCycle"
        return f"no message from the device for {seconds:.1f}s (limit: {limit})"

    # ----------------------------------------------------------------- the driver contract

    def pushes(self, prop: Property[MqttVisitor]) -> bool:
        return True

    async def subscribe(self, props: Sequence[Property[MqttVisitor]], emit: Emit) -> None:
        for problem_prop, problem in self._routes.problems.items():
            emit(problem_prop, DeviceError(problem))
        self._emit = emit
        for prop in self._props.values():  # what came before (retained state), now reported
            if prop.value is not None:
                emit(prop.route.name, prop.value)
            elif prop.failing:
                prop.bad_reported_at = 0.0
                prop.bad_text = None
        while True:
            timeout = None
            if self._stale_s is not None:
                timeout = max(0.0, self._last_seen + self._stale_s - time.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(self._ended), timeout)
            except TimeoutError:
                silent = time.monotonic() - self._last_seen
                if self._stale_s is not None and silent >= self._stale_s:
                    _SILENT[self.device.key] = self._last_seen
                    raise DeviceUnreachable(self._silence_reason(silent)) from None
            else:
                raise DeviceUnreachable("the subscription ended")

    async def state(self) -> str:
        readable = [p for p in self._props.values() if p.route.state_topics]
        if readable and all(p.failing for p in readable):
            return "unhealthy"
        return "online"

    async def read(self, prop: Property[MqttVisitor]) -> Any:
        state = self._props.get(prop.name)
        if state is None:
            raise DeviceError(self._routes.problems.get(prop.name, f"property {prop.name} has no route"))
        if not state.route.state_topics:
            if state.written is None:
                raise DeviceError(f"{prop.name} has no stateTopic and was never written")
            return state.written  # write-only: what was last sent is all there is to know
        if state.written is not None or state.value is None:
            try:
                await asyncio.wait_for(state.changed.wait(), state.route.read_back_s)
            except TimeoutError:
                raise DeviceError(
                    f"the device published no value of {prop.name} on {', '.join(state.route.state_topics)} "
                    f"within {state.route.read_back_s * 1000:g} ms (readBackTimeout)"
                ) from None
            finally:
                state.written = None
        return state.value

    async def write(self, prop: Property[MqttVisitor], value: Any) -> None:
        state = self._props.get(prop.name)
        if state is None:
            raise DeviceError(self._routes.problems.get(prop.name, f"property {prop.name} has no route"))
        route = state.route
        if route.command_topic is None:
            raise DeviceError(f"{prop.name} has no commandTopic: it cannot be written over MQTT")
        payload = encode_command(
            route.command_payload, route.kind, value, route.fields, **route.coerce_options()
        )
        assert self._link is not None
        state.changed.clear()
        state.written = value
        self._link.connection.publish(route.command_topic, payload, route.qos, route.retain)


def _twin_type(model_type: str | None) -> str:
    """The twin type of a DeviceModel type (INT -> int ...)."""
    return (model_type or "STRING").lower()
