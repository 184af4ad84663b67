"""Tells mappers which devices they serve (the edge side of :mod:`kubeedge.api.assignment`)."""

from __future__ import annotations

import json
import logging
import uuid

from kubeedge.api import topics
from kubeedge.api.assignment import (
    SNAPSHOT_PART_SIZE,
    Assignment,
    AssignmentMessage,
    EdgeStatus,
    MapperHello,
)
from kubeedge.api.twin import now_ms
from kubeedge.bus import BusClient
from kubeedge.registry import DeviceRegistry, ServedDevice

log = logging.getLogger(__name__)


def status_payload(state: str, instance: str, mappers: list[str] | None = None) -> bytes:
    return EdgeStatus.model_validate(
        {"state": state, "instance": instance, "timestamp": now_ms(), "mappers": mappers or []}
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
        self.in_process: list[str] = []
        """Protocols served by mappers in the edge process (announced in the edge status)."""

    def start(self) -> None:
        self.bus.subscribe(topics.mapper_topic(self.node, "+", topics.MAPPER_HELLO), self._on_hello, qos=1)
        self.bus.on_connect(self.announce)
        if self.bus.connected:
            self.announce()
        self.registry.add_listener(self)

    def stop(self) -> None:
        self.bus.publish(self.status_topic, status_payload("offline", self.instance), qos=1, retain=True)

    @property
    def status_topic(self) -> str:
        return topics.edge_topic(self.node, topics.EDGE_STATUS)

    def announce(self) -> None:
        self.bus.publish(
            self.status_topic, status_payload("online", self.instance, self.in_process), qos=1, retain=True
        )

    # ----------------------------------------------------------------- registry listener

    def device_added(self, served: ServedDevice) -> None:
        self._send(served.protocol, AssignmentMessage(kind="upsert", devices=[_assignment(served)]))

    def device_updated(self, served: ServedDevice, previous: ServedDevice) -> None:
        if previous.protocol != served.protocol:
            self.device_removed(previous)
        self.device_added(served)

    def device_removed(self, served: ServedDevice) -> None:
        self._send(served.protocol, AssignmentMessage(kind="delete", keys=[served.key]))

    def registry_synced(self, keys: set[str]) -> None:
        pass

    # ----------------------------------------------------------------- hello -> snapshot

    def _on_hello(self, topic: str, payload: bytes) -> None:
        protocol = topic.split("/")[-2]
        try:
            hello = MapperHello.model_validate_json(payload)
        except ValueError:
            log.warning("assignments: unreadable hello on %s: %r", topic, payload[:100])
            return
        self.hellos[protocol] = hello
        devices = [_assignment(s) for s in self.registry if s.protocol == protocol]
        parts = max(1, -(-len(devices) // SNAPSHOT_PART_SIZE))
        log.info(
            "assignments: mapper %s (%s %s) says hello; %d device(s)",
            protocol,
            hello.distribution or hello.name,
            hello.distribution_version,
            len(devices),
        )
        for part in range(parts):
            chunk = devices[part * SNAPSHOT_PART_SIZE : (part + 1) * SNAPSHOT_PART_SIZE]
            self._send(
                protocol, AssignmentMessage(kind="snapshot", part=part + 1, parts=parts, devices=chunk)
            )

    def _send(self, protocol: str, message: AssignmentMessage) -> None:
        if not protocol or (message.kind != "snapshot" and protocol not in self.hellos):
            return  # no mapper has said hello yet: it gets a snapshot when it does
        message.instance = self.instance
        self.bus.publish(
            topics.mapper_topic(self.node, protocol, topics.MAPPER_ASSIGNMENTS), message.to_json(), qos=1
        )


def _assignment(served: ServedDevice) -> Assignment:
    return Assignment(
        device=json.loads(served.merged().model_dump_json(by_alias=True, exclude_none=True)),
        model=json.loads(served.model.model_dump_json(by_alias=True, exclude_none=True)),
    )
