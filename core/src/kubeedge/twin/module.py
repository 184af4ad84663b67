"""The device twin module: KubeEdge's DeviceTwin semantics on the edge bus, done better.

For every served device it keeps, per property, the expected (desired) and actual (reported)
value, its type, whether it is optional, and edge/cloud versions; SQLite (WAL) keeps them across
restarts. It answers ``twin/update``, ``twin/get``, ``state/update`` and ``membership/get`` and
publishes ``update/result``, ``update/document``, ``update/delta`` and ``membership/updated`` as
KubeEdge does. Where KubeEdge is weak it does better (docs/design.md, "Twin module"):

* values are compared: an unchanged value does not bump versions, write the database or publish
  a document;
* updates are applied in arrival order by one consumer, so per-property order holds at any rate;
* typed values (double, bytes, free text) are accepted and checked against the DeviceModel type;
* a malformed message gets an error result with code and reason and nothing else is disturbed.

Durability: changes are written in group commits (one transaction per batch, in a dedicated
database thread), and results, documents and deltas are published only after their commit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from kubeedge.api import topics
from kubeedge.api.topics import DeviceTopic, NodeTopic
from kubeedge.api.twin import (
    DEVICE_STATES,
    BaseMessage,
    DeviceStateUpdate,
    MsgTwin,
    TwinUpdate,
    find_event_id,
    new_event_id,
    now_ms,
    parse,
)
from kubeedge.api.values import check_range, normalize_type, parse_value, twin_type, values_equal
from kubeedge.errors import WireError
from kubeedge.module import EdgeContext, EdgeModule
from kubeedge.ratelimit import ThrottledLog, TokenBuckets
from kubeedge.registry import DeviceRegistry, ServedDevice
from kubeedge.supervisor import Supervised
from kubeedge.twin.convergence import NOT_HOLDING, Convergence, ConvergenceSettings
from kubeedge.twin.store import Batch, DeviceRecord, TwinRecord, TwinStore

log = logging.getLogger(__name__)

MAX_STATE_REASON = 500
"""Characters of a state/update's reason kept (it is shown by `device list`)."""
TWIN_NAME = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,128}$")
_RESERVED_METADATA = ("type", "error")
MAX_REASON = 2000
MEMBERSHIP_GET_RATE = 20.0
"""membership/get requests a second the edge answers (bursts of twice as many)."""
"""Characters of an error reason sent back; the rest is cut (it quotes what the sender sent)."""
_UNKNOWN_DEVICES = "(devices this edge does not serve)"
_NODE_TOPICS = "(node topics)"
_BAD_TOPICS = "(topics it cannot parse)"
"""Rate-limit and log keys of senders the edge cannot tell apart: a sender must not be able to
make new keys (and memory) by making up device names."""


class TwinSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database: str = "twins.db"
    """File name of the twin database inside the edge's data folder."""
    latency_samples: int = Field(default=10_000, alias="latencySamples", ge=0)
    """How many recent read-to-commit latencies are kept for metrics and benchmarks."""
    max_optional_twins: int = Field(default=256, alias="maxOptionalTwins", ge=0)
    """Optional twins (added by a mapper, not in the device spec) a device may have."""
    convergence: ConvergenceSettings = Field(default_factory=ConvergenceSettings)
    """Re-sending desired values that do not hold (:mod:`kubeedge.twin.convergence`)."""


@dataclass
class TwinStats:
    """Counters the benchmark and the metrics read."""

    messages: int = 0
    property_updates: int = 0
    changed: int = 0
    errors: int = 0
    commits: int = 0
    write_failures: int = 0
    persisted_rows: int = 0
    rate_limited: int = 0
    """Messages dropped because their sender was over ``bus.maxMessageRate``."""
    resent_desired: int = 0
    """Desired values sent again because the device's reading did not hold them."""
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


@dataclass
class _Pending:
    """What happened since the last commit: rows to write, messages to publish after writing."""

    twins: set[tuple[str, str]] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    deleted_devices: set[str] = field(default_factory=set)
    deleted_twins: set[tuple[str, str]] = field(default_factory=set)
    outputs: list[tuple[str, bytes, int]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    """Devices added since the last commit: announced in one membership/updated message."""
    stamps: list[int] = field(default_factory=list)


class TwinModule(EdgeModule):
    name = "twin"
    settings_model = TwinSettings

    def __init__(self, context: EdgeContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        assert isinstance(settings, TwinSettings)
        self.node = context.node
        self.bus = context.bus
        self.max_payload = context.config.bus.max_payload
        self.max_topic_length = context.config.bus.max_topic_length
        self.max_optional_twins = settings.max_optional_twins
        self._rate = TokenBuckets(context.config.bus.max_message_rate)
        # membership/get answers with every device: a flood of it would cost far more than it sends
        self._membership_rate = TokenBuckets(min(MEMBERSHIP_GET_RATE, context.config.bus.max_message_rate))
        self._rate_answered: dict[str, int] = {}
        """Sender -> the second (monotonic) in which it last got a 429: one answer per second."""
        self._rejections = ThrottledLog(log)
        self.store = TwinStore(context.config.data_dir / settings.database)
        self.devices: dict[str, DeviceRecord] = {}
        self.stats = TwinStats(latencies_ms=deque(maxlen=settings.latency_samples or None))
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin-db")
        self._checkpoints = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin-checkpoint")
        self._checkpointer: Supervised | None = None
        self._writer: Supervised | None = None
        self._writing = False
        self._stopping = False
        self.convergence = Convergence(settings.convergence)
        self._converge_wake = asyncio.Event()
        self.convergence.on_armed = self._converge_wake.set
        self._converger: Supervised | None = None
        self._change_listeners: list[Callable[[set[tuple[str, str]], set[str]], None]] = []

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # SQLite runs in its own thread, deliberately: a commit must never stall the event loop.
        await loop.run_in_executor(self._db, self.store.open)
        self.devices = await loop.run_in_executor(self._db, self.store.load)
        log.info("twin: %d device(s) loaded from %s", len(self.devices), self.store.path)
        supervise = self.context.supervisor.spawn  # a task that fails is logged and restarted
        self._writer = supervise("twin-writer", self._run_writer)
        self._checkpointer = supervise("twin-checkpoint", self._checkpoint_loop)
        self._converger = supervise("twin-convergence", self._converge_loop)
        for topic_filter in topics.EDGE_SUBSCRIPTIONS:
            self.bus.subscribe(topic_filter, self.on_message, qos=1)
        self.context.registry.add_listener(self)

    async def stop(self) -> None:
        self._stopping = True  # from here on, messages are not taken (they could not be stored)
        for topic_filter in topics.EDGE_SUBSCRIPTIONS:
            self.bus.unsubscribe(topic_filter)
        try:
            await asyncio.wait_for(self.flush(), 10)
        except TimeoutError:
            log.error("twin: could not store the last changes within 10s (see earlier errors)")
        for task in (self._writer, self._checkpointer, self._converger):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpoints, self.store.close_checkpointer)
        self._checkpoints.shutdown(wait=True)
        await loop.run_in_executor(self._db, self.store.close)
        self._db.shutdown(wait=True)

    def add_change_listener(self, listener: Callable[[set[tuple[str, str]], set[str]], None]) -> None:
        """Call ``listener(twins, devices)`` after each commit: the ``(device key, property)``
        pairs and the device keys (state, lastOnlineTime) whose stored state may have changed;
        it reads them from :attr:`devices`. Called on the event loop; it must not block (the edge
        hub queues what changed for the cloud)."""
        self._change_listeners.append(listener)

    def _tell_changes(self, pending: _Pending) -> None:
        for listener in self._change_listeners:
            try:
                listener(pending.twins, pending.devices)
            except Exception:  # a listener's bug must not stop the writer
                log.exception("twin: change listener %r failed", listener)

    async def flush(self) -> None:
        """Wait until everything applied so far is committed and published."""
        while self._has_pending() or self._wake.is_set() or self._writing:
            if self._writer is None or self._writer.done():
                raise RuntimeError("the twin writer is not running")
            await asyncio.sleep(0.002)

    def _has_pending(self) -> bool:
        p = self._pending
        return bool(p.twins or p.devices or p.deleted_devices or p.deleted_twins or p.outputs or p.added)

    # ----------------------------------------------------------------- bus entry point

    def on_message(self, topic: str, payload: bytes) -> None:
        """Handle one message from the bus; never raises (a bad message is answered, not fatal)."""
        if self._stopping:
            return
        self.stats.messages += 1
        try:
            where = topics.parse_topic(topic, self.max_topic_length)
        except WireError as exc:
            errors = topics.edge_topic(self.node, topics.EDGE_ERRORS)
            if self._within_rate(_BAD_TOPICS, errors, payload):
                self._error_to(errors, find_event_id(payload), 400, exc.reason)
            return
        try:
            if isinstance(where, DeviceTopic):
                self._device_message(where, payload)
            elif isinstance(where, NodeTopic) and where.action == topics.MEMBERSHIP_GET:
                result_topic = topics.node_topic(self.node, topics.MEMBERSHIP_GET_RESULT)
                if self._within_rate(_NODE_TOPICS, result_topic, payload, self._membership_rate):
                    self._membership_get(where, payload)
        except Exception:  # a bug must cost one message, not the module
            log.exception("twin: failed on a message to %s", topics.quote(topic))
            self.stats.errors += 1

    def _within_rate(
        self, sender: str, result_topic: str, payload: bytes, buckets: TokenBuckets | None = None
    ) -> bool:
        """Whether ``sender`` is within ``bus.maxMessageRate`` (or ``buckets``' rate); if not, the
        message is dropped and counted, and the first one in each second is answered with 429."""
        buckets = buckets or self._rate
        if buckets.allow(sender):
            return True
        self.stats.rate_limited += 1
        second = int(time.monotonic())
        if self._rate_answered.get(sender) != second:
            if len(self._rate_answered) > 10_000:
                self._rate_answered.clear()
            self._rate_answered[sender] = second
            why = "bus.maxMessageRate" if buckets is self._rate else "membership/get answers with all devices"
            self._error_to(
                result_topic,
                find_event_id(payload),
                429,
                f"{sender}: more than {buckets.rate:g} messages/s ({why}); messages over the limit are "
                "dropped, one answer per second says so",
            )
        return False

    def _device_message(self, where: DeviceTopic, payload: bytes) -> None:
        action = where.action
        result_topic = topics.device_topic(where.namespace, where.name, action + "/result")
        key = where.device_key
        if not self._within_rate(key if key in self.devices else _UNKNOWN_DEVICES, result_topic, payload):
            return
        if len(payload) > self.max_payload:
            limit = f"the {self.max_payload}-byte limit (bus.maxPayload)"
            reason = f"device {key}: message of {len(payload)} bytes exceeds {limit}"
            self._error_to(result_topic, find_event_id(payload), 413, reason)
            return
        if action == topics.TWIN_UPDATE:
            self._twin_update(where, payload, result_topic)
        elif action == topics.TWIN_GET:
            self._twin_get(where, payload, result_topic)
        elif action == topics.STATE_UPDATE:
            self._state_update(where, payload, result_topic)
        elif action == topics.TWIN_CLOUD_UPDATED:
            self._error_to(
                result_topic, _event_id(payload), 501, "twin/cloud_updated comes from the cloud hub"
            )
        else:
            known = ", ".join(sorted(topics.INBOUND_DEVICE_ACTIONS))
            self._error_to(
                result_topic, _event_id(payload), 400, f"unknown action {action!r} (known: {known})"
            )

    # ----------------------------------------------------------------- twin/update

    def _known_device(self, model: type[Any], where: DeviceTopic, payload: bytes, result_topic: str) -> Any:
        """``(message, device)``, or None after answering 400 (malformed) or 404 (unknown device)."""
        key = where.device_key
        try:
            message = parse(model, payload)
        except WireError as exc:
            self._error_to(result_topic, find_event_id(payload), 400, f"device {key}: {exc.reason}")
            return None
        device = self.devices.get(key)
        if device is None:
            self._error_to(
                result_topic, message.event_id, 404, f"device {key} does not exist on node {self.node}"
            )
            return None
        if isinstance(message, TwinUpdate) and not self._room_for_new_twins(device, message, result_topic):
            return None
        return message, device

    def _room_for_new_twins(self, device: DeviceRecord, message: TwinUpdate, result_topic: str) -> bool:
        """Whether the optional twins an update adds fit ``maxOptionalTwins``; else a 413 answer.

        Deleted twins are kept as tombstones; once there are more of them than the limit they
        are dropped, so adding and deleting new names cannot grow the device either.
        """
        twins = device.twins
        new = 0
        for name, twin in message.twin.items():
            if twin is not None:
                record = twins.get(name)
                if record is None or record.deleted:
                    new += 1
        if not new:
            return True
        optional = sum(1 for r in twins.values() if r.optional and not r.deleted)
        limit = self.max_optional_twins
        if optional + new > limit:
            self._error_to(
                result_topic,
                message.event_id,
                413,
                f"device {device.id}: {new} new twin(s) would make {optional + new} optional twins, more "
                f"than the limit of {limit} per device (modules.twin.maxOptionalTwins)",
            )
            return False
        tombstones = [name for name, r in twins.items() if r.deleted]
        if len(tombstones) > limit:
            for name in tombstones:
                del twins[name]
                self._pending.deleted_twins.add((device.id, name))
                self._pending.twins.discard((device.id, name))
        return True

    def _twin_update(self, where: DeviceTopic, payload: bytes, result_topic: str) -> None:
        known = self._known_device(TwinUpdate, where, payload, result_topic)
        if known is None:
            return
        message, device = known
        key = where.device_key
        problems = [p for name, twin in message.twin.items() for p in self._check(device, name, twin)]
        if problems:
            self._error_to(result_topic, message.event_id, 400, f"device {key}: " + "; ".join(problems))
            return
        now = now_ms()
        clock = time.monotonic()
        fallback_ts = message.timestamp or now
        document: dict[str, Any] = {}
        expected_changed = False
        resend: list[str] = []
        for name, twin in message.twin.items():
            self.stats.property_updates += 1
            last = device.twins.get(name)
            before = _wire(last) if last is not None and not last.deleted else None
            record, changed, expected = self._apply(device, name, twin, fallback_ts)
            if twin is not None:
                # A desired value set again (no reading with it: not a mapper's report) while the
                # reading differs is retried at once.
                desired_set = twin.actual is None and twin.expected is not None
                if desired_set and record.error and record.error.startswith(_WRITE_ERRORS):
                    record.error = None  # a new attempt: the last one's failure is history
                    changed = True
                again = desired_set and not expected
                # When the reading (or a failure to write or read) was taken: what may prove that
                # a write did not hold.
                read_ms = (
                    _value_ts(twin.actual.metadata, fallback_ts)
                    if twin.actual is not None and twin.actual.value is not None
                    else fallback_ts
                    if twin.metadata is not None and (twin.metadata.model_extra or {}).get("error")
                    else None
                )
                due, error_changed = self._converge(device, record, clock, retry=again, read_ms=read_ms)
                if due:
                    resend.append(name)
                changed |= error_changed
                if changed and before is not None and _wire(record) == before:
                    changed = False  # an error cleared by the report and put back: nothing new
            if changed:
                self.stats.changed += 1
                self._mark(key, name)
                document[name] = {"last": before, "current": None if record.deleted else _wire(record)}
            expected_changed |= expected
        result = {
            name: (None if device.twins[name].deleted else _wire(device.twins[name])) for name in message.twin
        }
        self._emit(result_topic, {"event_id": message.event_id, "timestamp": now, "twin": result})
        if document:
            self._emit(
                topics.device_topic(where.namespace, where.name, topics.TWIN_UPDATE_DOCUMENT),
                {"event_id": message.event_id, "timestamp": now, "twin": document},
            )
        if expected_changed:
            self._emit_delta(device)
        elif resend:
            self._emit_delta(device, resend)
        if message.timestamp:
            self._pending.stamps.append(message.timestamp)
        self._wake.set()

    def _check(self, device: DeviceRecord, name: str, twin: MsgTwin | None) -> list[str]:
        if not TWIN_NAME.match(name):
            return [f"twin name {name[:40]!r} must match {TWIN_NAME.pattern}"]
        record = device.twins.get(name)
        if twin is None:
            if record is None or record.deleted:
                return [f"{name}: no such twin to delete"]
            if not record.optional:
                return [f"{name}: the property is in the device spec and cannot be deleted"]
            return []
        if record is not None and not record.deleted:
            type_name = record.type
        else:
            if twin.expected is not None and twin.expected.value:
                names = sorted(n for n, r in device.twins.items() if not r.deleted)
                known = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
                known = known or "none"
                return [f"{name}: no such property on device {device.id} (it has: {known})"]
            type_name = normalize_type(twin.metadata.type if twin.metadata else None)
        problems = []
        for side, value in (("desired", twin.expected), ("reported", twin.actual)):
            if value is None or not value.value:
                continue
            try:
                typed = parse_value(type_name, value.value)
                if side == "desired" and record is not None:
                    check_range(typed, record.minimum, record.maximum)
            except ValueError as exc:
                problems.append(f"{name}: {side} value {exc} (type {type_name})")
        if twin.expected is not None and twin.expected.value and record is not None and record.read_only:
            problems.append(f"{name}: the property is ReadOnly; a desired value cannot be set")
        return problems

    @staticmethod
    def _apply(
        device: DeviceRecord, name: str, twin: MsgTwin | None, ts: int
    ) -> tuple[TwinRecord, bool, bool]:
        """Apply one twin of an update (already checked); returns (record, changed, expected changed)."""
        record = device.twins.get(name)
        if twin is None:
            assert record is not None
            record.type = "deleted"
            record.expected = record.actual = None
            record.expected_edge += 1
            record.actual_edge += 1
            return record, True, False
        changed = expected_changed = False
        metadata = twin.metadata.model_dump(exclude_none=True) if twin.metadata else {}
        if record is None or record.deleted:
            record = TwinRecord(
                name=name,
                type=normalize_type(metadata.get("type")),
                optional=twin.optional if twin.optional is not None else True,
            )
            device.twins[name] = record
            changed = True
        elif twin.optional is False and record.optional:
            record.optional = False
            changed = True
        if (
            twin.expected is not None
            and twin.expected.value is not None
            and twin.expected.value != record.expected
        ):
            record.expected = twin.expected.value
            record.expected_ts = _value_ts(twin.expected.metadata, ts)
            record.expected_edge += 1
            changed = expected_changed = True
        if twin.actual is not None and twin.actual.value is not None:
            if twin.actual.value != record.actual:
                record.actual = twin.actual.value
                record.actual_ts = _value_ts(twin.actual.metadata, ts)
                record.actual_edge += 1
                changed = True
            if record.error is not None and "error" not in metadata:
                record.error = None
                changed = True
        if "error" in metadata and metadata["error"] != record.error:
            record.error = str(metadata["error"]) or None
            changed = True
        extra = {k: v for k, v in metadata.items() if k not in _RESERVED_METADATA}
        if extra and extra != record.metadata:
            record.metadata = extra
            changed = True
        return record, changed, expected_changed

    def _emit_delta(
        self, device: DeviceRecord, names: list[str] | None = None, relinquished: Sequence[str] = ()
    ) -> None:
        """A delta with every property (of ``names``, else all) whose reading differs from its
        desired value; each counts as a write attempt for the back-off of re-sends. The
        ``relinquished`` ones (desired value just emptied) go with ``""``, once: nothing to
        compare a reading with, so nothing to re-send."""
        twins = {
            name: r for name, r in device.twins.items() if (names is None or name in names) and _diverged(r)
        }
        clock, wall = time.monotonic(), now_ms()
        for name, record in twins.items():
            assert record.expected is not None
            self.convergence.sent(device.id, name, record.expected, clock, wall)
        for name in relinquished:
            record = device.twins[name]
            if record.expected == "" and not record.read_only:
                self.convergence.forget(device.id, name)
                twins[name] = record
        if not twins:
            return
        if names is not None:
            self.stats.resent_desired += len(twins)
        self._emit(
            topics.device_topic(device.namespace, device.name, topics.TWIN_UPDATE_DELTA),
            {
                "event_id": new_event_id(),
                "timestamp": now_ms(),
                "twin": {name: _wire(r) for name, r in twins.items()},
                "delta": {name: r.expected for name, r in twins.items()},
            },
            qos=1,
        )

    # ----------------------------------------------------------------- convergence

    def _converge(
        self,
        device: DeviceRecord,
        record: TwinRecord,
        clock: float,
        retry: bool = False,
        read_ms: int | None = None,
    ) -> tuple[bool, bool]:
        """Whether the property's desired value must be sent again now, and whether its
        "does not hold" error changed (see :mod:`kubeedge.twin.convergence`)."""
        key, name = device.id, record.name
        if record.deleted or record.read_only or not record.expected:
            self.convergence.forget(key, name)
            return False, self._not_holding(record, 0)
        diverged = _diverged(record)
        if retry and diverged:
            self.convergence.retry_now(key, name)
        due = self.convergence.observe(key, name, record.expected, diverged, clock, read_ms)
        error_changed = self._not_holding(record, self.convergence.not_holding(key, name))
        # An offline device is not written (its state says why); it is checked again when it
        # comes back online.
        return due and device.state != "offline", error_changed

    def _not_holding(self, record: TwinRecord, writes: int) -> bool:
        """Show (``writes`` > 0) or clear the "does not hold" error; True if it changed. A
        mapper's own error (a failed write, a failed read) is left in place: it says more."""
        if writes:
            if record.error is not None and not record.error.startswith(NOT_HOLDING):
                return False
            cap = self.convergence.settings.max_backoff
            error = (
                f"{NOT_HOLDING}{record.expected!r} does not hold: the device reports "
                + (repr(record.actual) if record.actual is not None else "nothing")
                + f" after {writes} attempts; retried with back-off (at most every {cap:g}s)"
            )
        elif record.error is not None and record.error.startswith(NOT_HOLDING):
            error = None
        else:
            return False
        if error == record.error:
            return False
        record.error = error
        return True

    def _converge_device(self, device: DeviceRecord, names: list[str] | None = None) -> None:
        """Check properties of one device (all, or ``names``) and re-send what is due."""
        clock = time.monotonic()
        due = []
        for name in names if names is not None else list(device.twins):
            record = device.twins.get(name)
            if record is None:
                self.convergence.forget(device.id, name)
                continue
            before = _wire(record)
            resend, error_changed = self._converge(device, record, clock)
            if resend:
                due.append(name)
            if error_changed:
                self._mark(device.id, name)
                self._emit(
                    topics.device_topic(device.namespace, device.name, topics.TWIN_UPDATE_DOCUMENT),
                    {
                        "event_id": new_event_id(),
                        "timestamp": now_ms(),
                        "twin": {name: {"last": before, "current": _wire(record)}},
                    },
                )
        if due:
            self._emit_delta(device, due)
        self._wake.set()

    async def _converge_loop(self) -> None:
        """Re-send desired values whose back-off has passed while the reading still differs (a
        mapper that reports only changes sends nothing new to trigger it)."""
        while True:
            at = self.convergence.next_timer()
            timeout = None if at is None else max(0.0, at - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    await self._converge_wake.wait()
            except TimeoutError:
                pass
            self._converge_wake.clear()
            if self._stopping:
                return
            clock = time.monotonic()
            by_device: dict[str, list[str]] = {}
            for key, name in self.convergence.due(clock):
                by_device.setdefault(key, []).append(name)
            for key, names in by_device.items():
                device = self.devices.get(key)
                if device is None:
                    self.convergence.forget(key)
                else:
                    self._converge_device(device, names)
            self.convergence.expire(clock)

    # ----------------------------------------------------------------- twin/get, state, membership

    def _twin_get(self, where: DeviceTopic, payload: bytes, result_topic: str) -> None:
        event_id = _event_id(payload)
        device = self.devices.get(where.device_key)
        if device is None:
            self._error_to(
                result_topic, event_id, 404, f"device {where.device_key} does not exist on node {self.node}"
            )
        else:
            twins = {name: _wire(r) for name, r in device.twins.items() if not r.deleted}
            self._emit(result_topic, {"event_id": event_id, "timestamp": now_ms(), "twin": twins})
        self._wake.set()

    def _state_update(self, where: DeviceTopic, payload: bytes, result_topic: str) -> None:
        known = self._known_device(DeviceStateUpdate, where, payload, result_topic)
        if known is None:
            return
        message, device = known
        key = where.device_key
        state = (message.state or "").lower()
        if state not in DEVICE_STATES:
            allowed = ", ".join(sorted(DEVICE_STATES))
            self._error_to(
                result_topic,
                message.event_id,
                400,
                f"device {key}: state {message.state!r} is not one of {allowed}",
            )
            return
        if state in ("online", "ok"):
            device.last_online = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        came_back = state in ("online", "ok") and device.state not in ("online", "ok")
        reason = (message.reason or "")[:MAX_STATE_REASON] or None
        if state != device.state or state in ("online", "ok") or reason != device.state_reason:
            device.state = state
            device.state_reason = reason
            self._pending.devices.add(key)
        if came_back:
            self._converge_device(device)  # desired values that did not hold are written now
        self._emit(
            result_topic,
            {
                "event_id": message.event_id,
                "timestamp": now_ms(),
                "device": {"name": device.name, "state": device.state, "lastOnlineTime": device.last_online},
            },
        )
        self._wake.set()

    def _membership_get(self, where: NodeTopic, payload: bytes) -> None:
        if where.node != self.node:
            return
        registry = self.context.registry
        devices = [_explained(_membership_entry(d), registry, d.state_reason) for d in self.devices.values()]
        body: dict[str, Any] = {"event_id": _event_id(payload), "timestamp": now_ms(), "devices": devices}
        # Our additions (docs/wire.md; a KubeEdge client ignores them): why devices are not served
        # as a user may expect, for `kubeedge device list`.
        if registry.source_problems:
            body["problems"] = registry.source_problems
        if registry.other_nodes:
            body["other_nodes_count"] = len(registry.other_nodes)
            if _asks_other_nodes(payload):
                body["other_nodes"] = [
                    {"id": d.key, "node": d.node, "protocol": d.protocol, "model": d.model}
                    for d in registry.other_nodes.values()
                ]
        self._emit(topics.node_topic(self.node, topics.MEMBERSHIP_GET_RESULT), body)
        self._wake.set()

    # ----------------------------------------------------------------- registry listener

    def device_added(self, served: ServedDevice) -> None:
        self._sync(served, added=served.key not in self.devices)

    def device_updated(self, served: ServedDevice, previous: ServedDevice) -> None:
        self._sync(served, added=False)

    def device_removed(self, served: ServedDevice) -> None:
        record = self.devices.pop(served.key, None)
        self.convergence.forget(served.key)
        if record is None:
            return
        self._pending.deleted_devices.add(served.key)
        self._emit(
            topics.node_topic(self.node, topics.MEMBERSHIP_UPDATED),
            {
                "event_id": new_event_id(),
                "timestamp": now_ms(),
                "added_devices": None,
                "removed_devices": [_membership_entry(record)],
            },
            qos=1,
        )
        self._wake.set()

    def mapper_gone(self, protocol: str, reason: str) -> None:
        """The mapper of ``protocol`` went: its devices' stored state becomes ``unknown`` with that
        reason (what they last said is no longer known, and the cloud hears it through the state
        report); the next mapper's reports set it again."""
        registry = self.context.registry
        for key, device in self.devices.items():
            served = registry.get(key)
            if served is None or served.protocol != protocol:
                continue
            if device.state != "unknown" or device.state_reason != reason:
                device.state = "unknown"
                device.state_reason = reason[:MAX_STATE_REASON]
                self._pending.devices.add(key)
        self._wake.set()

    def registry_synced(self, keys: set[str]) -> None:
        """The source has said everything once: twins of devices it no longer has are removed."""
        for key in [k for k in self.devices if k not in keys]:
            log.info("twin: device %s is gone; removing its twins", key)
            del self.devices[key]
            self.convergence.forget(key)
            self._pending.deleted_devices.add(key)
        self._wake.set()

    def _sync(self, served: ServedDevice, added: bool) -> None:
        device, model = served.device, served.model
        key = served.key
        record = self.devices.get(key)
        if record is None:
            record = DeviceRecord(id=key, namespace=device.namespace, name=device.name)
            self.devices[key] = record
        record.description = (device.metadata.labels or {}).get("description")
        record.attributes = {"protocol": served.protocol, "model": model.name}
        self._pending.devices.add(key)
        self._pending.deleted_devices.discard(key)
        now = now_ms()
        expected_changed = False
        relinquished: list[str] = []
        spec_names = set()
        for prop in device.spec.properties or []:
            spec_names.add(prop.name)
            model_prop = model.property(prop.name)
            kind = twin_type(model_prop.type if model_prop else None)
            twin = record.twins.get(prop.name)
            if twin is None or twin.deleted:
                twin = TwinRecord(name=prop.name, type=kind, optional=False)
                record.twins[prop.name] = twin
            elif twin.type != kind:
                log.info("twin: %s/%s changes type %s -> %s", key, prop.name, twin.type, kind)
                twin.type = kind
                twin.expected = _fits(kind, twin.expected)
                twin.actual = _fits(kind, twin.actual)
            twin.optional = False
            twin.read_only = bool(model_prop and model_prop.access_mode == "ReadOnly")
            twin.minimum = model_prop.minimum if model_prop else None
            twin.maximum = model_prop.maximum if model_prop else None
            desired = prop.desired.value if prop.desired else None
            if desired is not None and desired != twin.spec_desired:
                previous, twin.spec_desired = twin.spec_desired, desired
                # "" after a value gives the property back (a relinquish, sent once, where the
                # mapper can); "" where there was none is no desired value, as it always was
                if (desired or previous) and desired != twin.expected and not twin.read_only:
                    twin.expected = desired
                    twin.expected_ts = now
                    twin.expected_cloud += 1
                    expected_changed = True
                    if not desired:
                        relinquished.append(prop.name)
            self._mark(key, prop.name)
        for name in [n for n, t in record.twins.items() if n not in spec_names and not t.optional]:
            del record.twins[name]
            self._pending.deleted_twins.add((key, name))
        if added:
            self._pending.added.append(key)
        if expected_changed:
            self._emit_delta(record, relinquished=relinquished)
        self._wake.set()

    # ----------------------------------------------------------------- output and persistence

    def _mark(self, key: str, name: str) -> None:
        self._pending.twins.add((key, name))
        self._pending.deleted_twins.discard((key, name))

    def _emit(self, topic: str, body: dict[str, Any], qos: int = 0) -> None:
        """Queue a message for after the next commit. Results and documents go at QoS 0 (they
        answer or describe; a subscriber that misses one asks with twin/get); deltas and
        membership changes, which make mappers act, at QoS 1."""
        try:
            data = orjson.dumps(body)
        except TypeError as exc:  # text that is not valid UTF-8 (a lone surrogate): a bug upstream
            log.error("twin: cannot encode a message for %s: %s", topics.quote(topic), exc)
            return
        self._pending.outputs.append((topic, data, qos))

    def _error_to(self, topic: str, event_id: str, code: int, reason: str) -> None:
        """Answer a refused message; logged at WARNING, one line per sender, code and minute."""
        self.stats.errors += 1
        if len(reason) > MAX_REASON:  # values quoted in it came from the sender: never echo them whole
            reason = f"{reason[:MAX_REASON]}... ({len(reason) - MAX_REASON} more characters)"
        self._rejections.log((self._sender(topic), str(code)), f"twin: refused ({code}): {reason:.300}")
        self._emit(topic, {"event_id": event_id, "timestamp": now_ms(), "code": code, "reason": reason})
        self._wake.set()

    def _sender(self, topic: str) -> str:
        """Who a refused message came from, as far as the edge can tell: the device of its topic
        when the edge serves it, else one of a few fixed classes (a bounded set of log keys)."""
        if topic.startswith(topics.DEVICE_PREFIX):
            namespace, _, rest = topic[len(topics.DEVICE_PREFIX) :].partition("/")
            key = f"{namespace}/{rest.partition('/')[0]}"
            return key if key in self.devices else _UNKNOWN_DEVICES
        if topic.startswith(topics.NODE_PREFIX):
            return _NODE_TOPICS
        return _BAD_TOPICS

    def _take(self) -> tuple[_Pending, Batch]:
        added = [self.devices[k] for k in self._pending.added if k in self.devices]
        if added:
            self._emit(
                topics.node_topic(self.node, topics.MEMBERSHIP_UPDATED),
                {
                    "event_id": new_event_id(),
                    "timestamp": now_ms(),
                    "added_devices": [_membership_entry(record) for record in added],
                    "removed_devices": None,
                },
                qos=1,
            )
        pending, self._pending = self._pending, _Pending()
        batch = Batch(deleted_devices=sorted(pending.deleted_devices))
        for key in pending.devices:
            device = self.devices.get(key)
            if device is not None:
                batch.devices.append(device.row())
        for key, name in pending.twins:
            device = self.devices.get(key)
            twin = device.twins.get(name) if device is not None else None
            if twin is not None:
                batch.twins.append(twin.row(key))
        batch.deleted_twins = sorted(pending.deleted_twins)
        return pending, batch

    def _put_back(self, pending: _Pending) -> None:
        """A commit failed: what it carried is pending again, ahead of anything newer."""
        current = self._pending
        current.twins |= pending.twins
        current.devices |= pending.devices
        current.deleted_devices |= pending.deleted_devices - current.devices
        current.deleted_twins |= pending.deleted_twins - current.twins
        current.outputs[:0] = pending.outputs
        current.stamps[:0] = pending.stamps

    async def _checkpoint_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -1
        while True:
            await asyncio.sleep(1.0)
            if self.stats.commits == last:
                continue  # nothing new: idle means idle
            last = self.stats.commits
            try:
                await loop.run_in_executor(self._checkpoints, self.store.checkpoint)
            except Exception:
                log.warning("twin: checkpoint failed; retried in a second", exc_info=True)

    async def _run_writer(self) -> None:
        # Also after a restart by the supervisor: nothing is being written any more, and what is
        # pending is looked at at once.
        self._writing = False
        self._wake.set()
        await self._write_loop()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        retry = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._writing = True
            pending, batch = self._take()
            if batch:
                try:
                    await loop.run_in_executor(self._db, self.store.write, batch)
                except Exception:
                    # Nothing is published for changes that are not stored; they are tried again.
                    log.exception(
                        "twin: writing %d row(s) failed; retrying in %.1fs", len(batch.twins), retry
                    )
                    self.stats.write_failures += 1
                    self._put_back(pending)
                    self._writing = False
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, 5.0)
                    self._wake.set()
                    continue
                retry = 0.1
                self.stats.commits += 1
                self.stats.persisted_rows += len(batch.twins)
                self._tell_changes(pending)
            for topic, payload, qos in pending.outputs:
                try:
                    self.bus.publish(topic, payload, qos=qos)
                except Exception:  # one message that cannot go out must not stop the writer
                    log.exception("twin: publishing to %s failed", topics.quote(topic))
            if pending.stamps:
                done = time.time() * 1000
                self.stats.latencies_ms.extend(done - stamp for stamp in pending.stamps)
            self._writing = False


_WRITE_ERRORS = ("write of ", NOT_HOLDING)
"""How errors about writing a desired value start (the mapper runtime's, and convergence's)."""


def _diverged(record: TwinRecord) -> bool:
    """A writable property whose reading differs from its desired value."""
    return (
        not record.deleted
        and not record.read_only
        and bool(record.expected)
        and not values_equal(record.type, record.expected, record.actual)
    )


def _wire(record: TwinRecord) -> dict[str, Any]:
    """A twin as KubeEdge sends it on the bus (versions stripped)."""
    body: dict[str, Any] = {}
    if record.expected is not None:
        body["expected"] = _value(record.expected, record.expected_ts)
    if record.actual is not None:
        body["actual"] = _value(record.actual, record.actual_ts)
    body["optional"] = record.optional
    metadata: dict[str, Any] = {"type": record.type}
    if record.metadata:
        metadata.update(record.metadata)
    if record.error:
        metadata["error"] = record.error
    body["metadata"] = metadata
    return body


def _value(value: str, timestamp: int | None) -> dict[str, Any]:
    return {"value": value, "metadata": {"timestamp": timestamp}} if timestamp else {"value": value}


def _membership_entry(record: DeviceRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": record.id, "name": record.name}
    if record.description:
        entry["description"] = record.description
    if record.state:
        entry["state"] = record.state
    if record.last_online:
        entry["last_online"] = record.last_online
    if record.attributes:
        entry["attributes"] = {k: {"value": v} for k, v in record.attributes.items()}
    return entry


def _explained(entry: dict[str, Any], registry: DeviceRegistry, state_reason: str | None) -> dict[str, Any]:
    """A membership entry with why the device is in its state and whether its manifest has a
    problem, as extra attributes: ``stateReason`` (no mapper for its protocol: its state is then
    ``unknown``, whatever a mapper said before; else the reason its mapper gave with the state)
    and ``problem`` (its manifest is kept at its last good version)."""
    attributes = entry.setdefault("attributes", {})
    protocol = (attributes.get("protocol") or {}).get("value", "")
    reason = registry.unserved_reason(protocol)
    if reason:
        entry["state"] = "unknown"
        attributes["stateReason"] = {"value": reason}
    elif state_reason and entry.get("state") not in ("online", "ok"):
        attributes["stateReason"] = {"value": state_reason}
    problem = registry.problems.get(entry["id"])
    if problem:
        attributes["problem"] = {"value": problem}
    if not attributes:
        del entry["attributes"]
    return entry


def _asks_other_nodes(payload: bytes) -> bool:
    try:
        body = orjson.loads(payload)  # not json.loads: deep nesting must not raise RecursionError
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("other_nodes") is True


def _value_ts(metadata: Any, fallback: int) -> int:
    stamp = getattr(metadata, "timestamp", None) if metadata is not None else None
    return int(stamp) if stamp else fallback


def _fits(type_name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_value(type_name, value)
    except ValueError:
        return None
    return value


def _event_id(payload: bytes) -> str:
    """The ``event_id`` of a request whose other fields do not matter (twin/get, membership/get):
    parsed when the payload is a valid message, else found by :func:`find_event_id`'s bounded scan
    (never a recursive parse: deep nesting must not raise RecursionError)."""
    try:
        return str(parse(BaseMessage, payload).event_id)
    except WireError:
        return find_event_id(payload)
