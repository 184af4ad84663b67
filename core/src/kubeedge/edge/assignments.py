"""Tells mappers which devices they serve (the edge side of :mod:`kubeedge.api.assignment`)."""

from __future__ import annotations

import logging
import re
import uuid

import orjson

from kubeedge.api import topics
from kubeedge.api.assignment import (
    ASSIGNMENT_VERSION,
    SNAPSHOT_PART_SIZE,
    EdgeStatus,
    MapperGoodbye,
    MapperHello,
)
from kubeedge.api.manifests import quote, text_of
from kubeedge.api.twin import now_ms
from kubeedge.bus import BusClient
from kubeedge.ratelimit import ThrottledLog
from kubeedge.registry import DeviceRegistry, ServedDevice

log = logging.getLogger(__name__)

MAX_PROTOCOLS = 256
"""Distinct protocols whose mappers the edge remembers; any bus client can say hello, so a hello
for yet another name past this is refused (the edge's memory stays bounded)."""
PROTOCOL_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")


def status_payload(
    state: str, instance: str, mappers: list[str] | None = None, problems: list[str] | None = None
) -> bytes:
    return EdgeStatus.model_validate(
        {
            "state": state,
            "instance": instance,
            "timestamp": now_ms(),
            "mappers": mappers or [],
            "problems": problems or [],
        }
    ).to_json()


class AssignmentPublisher:
    """A registry listener that publishes each protocol's devices to its mappers."""

    def __init__(
        self, node: str, bus: BusClient, registry: DeviceRegistry, instance: str | None = None
    ) -> None:
        self.node = node
        self.bus = bus
        self.registry = registry
        self.instance = instance or uuid.uuid4().hex
        self.hellos: dict[str, MapperHello] = {}
        self._refusals = ThrottledLog(log)
        self.in_process: list[str] = []
        """Protocols served by mappers in the edge process (announced in the edge status)."""
        self.problems: list[str] = []
        """The edge's health problems (announced in the edge status; empty when healthy)."""

    def start(self) -> None:
        self.bus.subscribe(topics.mapper_topic(self.node, "+", topics.MAPPER_HELLO), self._on_hello, qos=1)
        self.bus.subscribe(
            topics.mapper_topic(self.node, "+", topics.MAPPER_GOODBYE), self._on_goodbye, qos=1
        )
        self.bus.on_connect(self.announce)
        if self.bus.connected:
            self.announce()
        self.registry.add_listener(self)

    def stop(self) -> None:
        payload = status_payload("offline", self.instance, problems=self.problems)
        self.bus.publish(self.status_topic, payload, qos=1, retain=True)

    @property
    def status_topic(self) -> str:
        return topics.edge_topic(self.node, topics.EDGE_STATUS)

    def announce(self) -> None:
        self.bus.publish(
            self.status_topic,
            status_payload("online", self.instance, self.in_process, self.problems),
            qos=1,
            retain=True,
        )

    # ----------------------------------------------------------------- registry listener

    def device_added(self, served: ServedDevice) -> None:
        if served.protocol in self.hellos:  # else its mapper gets it in the snapshot after hello
            assignment = _encoded(served)
            if assignment is not None:
                self._send(served.protocol, "upsert", [assignment])

    def device_updated(self, served: ServedDevice, previous: ServedDevice) -> None:
        if previous.protocol != served.protocol:
            self.device_removed(previous)
        self.device_added(served)

    def device_removed(self, served: ServedDevice) -> None:
        if served.protocol in self.hellos:
            self._send(served.protocol, "delete", keys=[served.key])

    def registry_synced(self, keys: set[str]) -> None:
        pass

    # ----------------------------------------------------------------- hello -> snapshot

    def _on_goodbye(self, topic: str, payload: bytes) -> None:
        protocol = topic.split("/")[-2]
        hello = self.hellos.get(protocol)
        if hello is None:
            return  # not a mapper we count as serving (or a name we refused)
        try:
            goodbye = MapperGoodbye.model_validate_json(payload)
        except ValueError:
            log.warning("assignments: unreadable goodbye on %s: %r", quote(topic), payload[:100])
            return
        if goodbye.instance != hello.instance:
            return  # an older process's will, arriving after its successor said hello
        del self.hellos[protocol]
        self.registry.mapper_said_goodbye(protocol, goodbye.reason)

    def _on_hello(self, topic: str, payload: bytes) -> None:
        protocol = topic.split("/")[-2]
        if not PROTOCOL_NAME.match(protocol):
            self._refusals.log(
                ("name",), f"assignments: hello refused: protocol {quote(protocol)} is not a name"
            )
            return
        if protocol not in self.hellos and len(self.hellos) >= MAX_PROTOCOLS:
            self._refusals.log(
                ("count",),
                f"assignments: hello for protocol {quote(protocol)} refused: "
                f"{MAX_PROTOCOLS} protocols have mappers already",
            )
            return
        try:
            hello = MapperHello.model_validate_json(payload)
        except ValueError:
            log.warning("assignments: unreadable hello on %s: %r", topic, payload[:100])
            return
        self.hellos[protocol] = hello
        self.registry.mapper_said_hello(protocol)
        served = [s for s in self.registry if s.protocol == protocol]
        parts = max(1, -(-len(served) // SNAPSHOT_PART_SIZE))
        log.info(
            "assignments: mapper %s (%s %s) says hello; %d device(s)",
            protocol,
            hello.distribution or hello.name,
            hello.distribution_version,
            len(served),
        )
        models: dict[str, bytes] = {}
        for part in range(parts):
            # Built and sent a part at a time: a snapshot of thousands of devices is never
            # all in memory at once.
            chunk = served[part * SNAPSHOT_PART_SIZE : (part + 1) * SNAPSHOT_PART_SIZE]
            # A device that cannot be encoded is left out (and named); the others are sent.
            encoded = [a for a in (_encoded(s, models) for s in chunk) if a is not None]
            self._send(protocol, "snapshot", encoded, part=part + 1, parts=parts)

    def _send(
        self,
        protocol: str,
        kind: str,
        devices: list[bytes] | None = None,
        keys: list[str] | None = None,
        part: int = 1,
        parts: int = 1,
    ) -> None:
        """An :class:`AssignmentMessage`, written as JSON directly (devices are JSON already)."""
        if not protocol:
            return
        head = orjson.dumps(
            {
                "version": ASSIGNMENT_VERSION,
                "kind": kind,
                "instance": self.instance,
                "part": part,
                "parts": parts,
                "keys": keys or [],
            }
        )
        payload = head[:-1] + b',"devices":[' + b",".join(devices or []) + b"]}"
        self.bus.publish(topics.mapper_topic(self.node, protocol, topics.MAPPER_ASSIGNMENTS), payload, qos=1)


def _encoded(served: ServedDevice, models: dict[str, bytes] | None = None) -> bytes | None:
    """:func:`_assignment`, or None (logged with the device's name) if its data cannot be JSON.

    Manifests cannot carry such data (the reader refuses recursive aliases and non-JSON tags), but
    a source in Python can; one such device must never cost the other devices their snapshot.
    """
    try:
        return _assignment(served, models)
    except (ValueError, TypeError, RecursionError) as exc:
        log.error(
            "assignments: device %s (protocol %s) cannot be sent to its mapper and is left out: %s",
            served.key,
            quote(served.protocol),
            text_of(str(exc), 200),
        )
        return None


def _assignment(served: ServedDevice, models: dict[str, bytes] | None = None) -> bytes:
    """``{"device": ..., "model": ...}`` as JSON: the device with its model's defaults merged in."""
    device = served.merged().model_dump_json(by_alias=True, exclude_none=True).encode()
    model = models.get(served.model.key) if models is not None else None
    if model is None:
        model = served.model.model_dump_json(by_alias=True, exclude_none=True).encode()
        if models is not None:
            models[served.model.key] = model
    return b'{"device":' + device + b',"model":' + model + b"}"
