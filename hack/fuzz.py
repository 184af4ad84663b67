#!/usr/bin/env python3
"""The project's fuzzer: hostile input against a running edge, as an attacker or a broken device sends it.

    python hack/fuzz.py                          # every target, a short fixed budget (the test suite runs this)
    python hack/fuzz.py --minutes 30             # the long form: each target for 30 minutes
    python hack/fuzz.py --targets bus --brokers embedded --examples 2000 --seed 7

Target ``bus``: an edge runs as its own process (``kubeedge edge run``) on a real broker (Mosquitto,
and the embedded one, in turn), serving one device, ``default/canary``. Hypothesis generates
messages for every bus input the edge subscribes to and for topics around them: twin updates and
state updates that are almost right, any JSON, nesting far past any parser's depth, lone
surrogate escapes, payloads over the size limit, binary noise, topics up to MQTT's 65,535 bytes.
After each message a canary request (``twin/get`` of ``default/canary``) is sent. Asserted,
example by example:

* the edge process is alive, and the canary is answered within 1 s;
* a message the edge must answer got exactly one answer (on its ``/result`` topic or on
  ``$ke/edge/{node}/errors``), and every refusal is named: a known code and a reason of bounded
  length, never a traceback;
* nothing in the edge's log at ERROR or above (a refused message is a WARNING);

and over the run: the edge's RSS after warm-up grows by less than ``--rss-growth`` MB.

Other targets plug in as modules ``hack/fuzz_<name>.py`` beside this file (``fuzz_manifests``:
manifests, edge config, the standalone source, the mapper assignment protocol): each defines
``run(minutes: float) -> int``, printing its own summary and returning 0 when every invariant
held; ``--targets`` names them. The short form gives each a minimum run (one round).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from kubeedge.api import topics
from kubeedge.bus import free_port
from kubeedge.testing import Mosquitto

HERE = Path(__file__).resolve().parent
NODE = "fuzz-edge"
CANARY = "default/canary"
KNOWN_CODES = {400, 404, 413, 429, 501}
MAX_REASON = 2100
CANARY_TIMEOUT = 1.0
SHORT_FORM_MINUTES = 0.01
"""What the short form gives a plugged-in target: its runner does at least one round."""

MODEL = """apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: fuzz-model, namespace: default}
spec:
  protocol: virtual
  properties:
  - {name: temperature, type: FLOAT, accessMode: ReadOnly, visitors: {protocolName: virtual, configData: {}}}
  - {name: setpoint, type: INT, accessMode: ReadWrite, minimum: "0", maximum: "100", visitors: {protocolName: virtual, configData: {}}}
  - {name: label, type: STRING, accessMode: ReadWrite, visitors: {protocolName: virtual, configData: {}}}
  - {name: blob, type: BYTES, accessMode: ReadWrite, visitors: {protocolName: virtual, configData: {}}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: canary, namespace: default}
spec:
  deviceModelRef: {name: fuzz-model}
  protocol: {protocolName: virtual}
  properties: [{name: temperature}, {name: setpoint}, {name: label}, {name: blob}]
"""

# ----------------------------------------------------------------------------- strategies

# Topic levels: no "/" (that makes another level), no wildcards, control characters or
# non-characters (Mosquitto disconnects a client that publishes those: nothing the edge could
# ever receive through it).
LEVEL_CHARS = st.characters(blacklist_characters="/+#\x00", blacklist_categories=("Cs", "Cc", "Cn"))
level = st.one_of(
    st.sampled_from(["default", "canary", "ghost", "", "device", "events", "twin"]),
    st.text(LEVEL_CHARS, max_size=40),
    st.integers(900, 1100).map(lambda n: "n" * n),  # around bus.maxTopicLength
    st.integers(65_400, 65_506).map(lambda n: "m" * n),  # its reply topic would not fit MQTT
)
device_action = st.one_of(
    st.sampled_from(
        [
            topics.TWIN_UPDATE,
            topics.TWIN_GET,
            topics.STATE_UPDATE,
            topics.TWIN_CLOUD_UPDATED,
            "twin/bogus",
            "twin/update/result",
        ]
    ),
    st.text(LEVEL_CHARS, min_size=1, max_size=12).map(lambda a: f"twin/{a}"),
)
device_topic = st.builds(
    lambda ns, name, action: f"{topics.DEVICE_PREFIX}{ns}/{name}/{action}",
    st.one_of(st.just("default"), level),
    st.one_of(st.just("canary"), level),
    device_action,
)
node_topic = st.builds(
    lambda node: topics.node_topic(node, topics.MEMBERSHIP_GET), st.sampled_from([NODE, NODE, "other"])
)
topic_strategy = st.one_of(
    device_topic,
    device_topic,
    device_topic,
    st.builds(
        lambda ns, name: topics.device_topic(ns, name, topics.TWIN_UPDATE),
        st.just("default"),
        st.just("canary"),
    ),
    node_topic,
).filter(lambda t: len(t.encode()) <= 65_535)  # what MQTT can carry at all

# Text with lone surrogates allowed: json.dumps writes them as \\udXXX escapes.
any_text = st.text(st.characters(blacklist_categories=()), max_size=30)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
twin_name = st.one_of(
    st.sampled_from(["temperature", "setpoint", "label", "blob", "extra", "bad name!", ""]),
    st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True),
    any_text,
)
value = st.one_of(
    st.sampled_from(["1", "21.5", "-3", "NaN", "+Inf", "true", "AAEC/w==", "", "150", "x" * 70_000]),
    scalar,
    json_value,
)
twin_value = st.fixed_dictionaries(
    {},
    optional={
        "value": value,
        "metadata": st.one_of(json_value, st.fixed_dictionaries({}, optional={"timestamp": scalar})),
    },
)
msg_twin = st.one_of(
    st.none(),
    json_value,
    st.fixed_dictionaries(
        {},
        optional={
            "expected": twin_value,
            "actual": twin_value,
            "optional": st.one_of(st.booleans(), scalar),
            "metadata": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "type": st.sampled_from(
                            [
                                "int",
                                "float",
                                "double",
                                "boolean",
                                "string",
                                "bytes",
                                "stream",
                                "deleted",
                                "weird",
                            ]
                        ),
                        "error": any_text,
                        "unit": scalar,
                    },
                ),
                json_value,
            ),
        },
    ),
)
message = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(any_text, scalar),
        "timestamp": scalar,
        "twin": st.one_of(st.dictionaries(twin_name, msg_twin, max_size=6), json_value),
        "state": st.one_of(
            st.sampled_from(["online", "OFFLINE", "ok", "unknown", "unhealthy", "gone"]), scalar
        ),
        "State": scalar,
    },
)


def _dump(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


payload_strategy = st.one_of(
    message.map(_dump),
    message.map(_dump),
    message.map(_dump),
    json_value.map(_dump),
    st.binary(max_size=200),
    st.builds(  # nesting deeper than any parser goes, after an event id
        lambda depth, opener: b'{"event_id":"deep","x":' + opener * depth + b"}",
        st.integers(150, 60_000),
        st.sampled_from([b"[", b'{"a":']),
    ),
    st.integers(1_000_000, 1_200_000).map(  # over bus.maxPayload (1 MiB), with an event id first
        lambda n: b'{"event_id":"big","twin":{"x":{"actual":{"value":"' + b"a" * n + b'"}}}}'
    ),
    st.just(b'{"event_id":"\\udc00x","twin":{}}'),
)


# ----------------------------------------------------------------------------- the edge under test


@dataclass
class Edge:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    seen_log: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2**20

    def alive(self) -> bool:
        return self.process.poll() is None

    def new_log_problems(self) -> list[str]:
        """Lines at ERROR or above, or tracebacks, written since the last call."""
        text = self.log.read_text(errors="replace")
        fresh, self.seen_log = text[self.seen_log :], len(text)
        return [
            line[:300] for line in fresh.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b|Traceback", line)
        ]


def start_edge(workdir: Path, broker: str) -> tuple[Edge, Mosquitto | None]:
    (workdir / "manifests").mkdir(parents=True, exist_ok=True)
    (workdir / "manifests" / "canary.yaml").write_text(MODEL)
    mosquitto = None
    if broker == "mosquitto":
        mosquitto = Mosquitto().start()
        bus = f"url: {mosquitto.url}"
        url = mosquitto.url
    else:
        port = free_port()
        bus = f"url: embedded\n  listen: 127.0.0.1:{port}"
        url = f"mqtt://127.0.0.1:{port}"
    config = workdir / "edge.yaml"
    config.write_text(
        f"node: {NODE}\nbus:\n  {bus}\ndataDir: {workdir / 'data'}\nmanifests: {workdir / 'manifests'}\nmappers: {{}}\n"
    )
    log = workdir / "edge.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubeedge", "edge", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )
    edge = Edge(process, url, log)
    deadline = time.monotonic() + 30
    while b"running" not in log.read_bytes():
        if not edge.alive() or time.monotonic() > deadline:
            raise AssertionError(f"the edge did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return edge, mosquitto


def stop_edge(edge: Edge, mosquitto: Mosquitto | None) -> None:
    if edge.alive():
        edge.process.send_signal(signal.SIGTERM)
        try:
            edge.process.wait(20)
        except subprocess.TimeoutExpired:
            edge.process.kill()
            edge.process.wait()
    if mosquitto is not None:
        mosquitto.close()


class Probe:
    """The fuzzing client: sends a message, then the canary, and collects what came back."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fuzz-{os.getpid()}", protocol=mqtt.MQTTv311
        )
        self.client.max_queued_messages_set(0)
        self.answers: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.canary_answered = threading.Event()
        self.canary_id = ""
        self.sent_topic = ""
        self.last_node_topic = 0.0
        self.client.on_message = self._on_message
        self.disconnects = 0
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(host, int(port))
        self.client.loop_start()
        for topic_filter in (
            "$hw/events/device/+/+/twin/+/result",
            "$hw/events/device/+/+/state/update/result",
            "$hw/events/node/+/membership/get/result",
            "$ke/edge/+/errors",
        ):
            self.client.subscribe(topic_filter, 1)
        time.sleep(0.3)

    def _on_disconnect(self, *_args: Any) -> None:
        self.disconnects += 1

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.sent_topic:
            return  # our own message, echoed by our subscriptions
        try:
            body = json.loads(msg.payload)
        except (ValueError, RecursionError):
            body = {"unparsable answer": msg.payload[:200].decode(errors="replace")}
        if not isinstance(body, dict):
            body = {"unparsable answer": repr(body)[:200]}
        if msg.topic.endswith("canary/twin/get/result") and body.get("event_id") == self.canary_id:
            self.canary_answered.set()
            return
        with self.lock:
            self.answers.append((msg.topic, body))

    def send(self, topic: str, payload: bytes) -> list[tuple[str, dict[str, Any]]]:
        """Publish, then the canary; return what was answered in between (the edge answers in order)."""
        if topic.startswith(topics.NODE_PREFIX):
            # The edge answers 20 membership/get a second and drops the rest (by design): stay
            # under that, so every one the fuzzer sends must be answered.
            time.sleep(max(0.0, self.last_node_topic + 0.06 - time.monotonic()))
            self.last_node_topic = time.monotonic()
        with self.lock:
            self.answers.clear()
            self.sent_topic = topic
        self.client.publish(topic, payload, qos=1)
        self.canary_id = f"canary-{random.getrandbits(64):x}"
        self.canary_answered.clear()
        started = time.monotonic()
        self.client.publish(
            topics.device_topic("default", "canary", topics.TWIN_GET),
            json.dumps({"event_id": self.canary_id}),
            qos=1,
        )
        if not self.canary_answered.wait(CANARY_TIMEOUT):
            why = " (the broker disconnected the fuzzing client)" if self.disconnects else ""
            raise AssertionError(
                f"the canary was not answered within {CANARY_TIMEOUT:g}s{why} after {_show(topic, payload)}"
            )
        self.took = time.monotonic() - started
        with self.lock:
            return list(self.answers)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def must_answer(topic: str) -> bool:
    """Whether the edge subscribes to ``topic`` and so must answer it (on its result topic, or on
    the errors topic when it cannot be parsed or is too long)."""
    if topic.startswith(topics.DEVICE_PREFIX):
        parts = topic[len(topics.DEVICE_PREFIX) :].split("/")
        return len(parts) == 4 and (parts[2] == "twin" or parts[2:] == ["state", "update"])
    if topic.startswith(topics.NODE_PREFIX):
        parts = topic[len(topics.NODE_PREFIX) :].split("/")
        return len(parts) == 3 and parts[0] == NODE and parts[1:] == ["membership", "get"]
    return False


def _show(topic: str, payload: bytes) -> str:
    return f"{topic[:120]!r}{'...' if len(topic) > 120 else ''} ({len(topic)} chars) <- {payload[:200]!r} ({len(payload)} bytes)"


@dataclass
class Tally:
    examples: int = 0
    answered: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    slowest: float = 0.0
    rss_start: float = 0.0
    rss_peak: float = 0.0


def check(edge: Edge, probe: Probe, tally: Tally, topic: str, payload: bytes) -> None:
    where = _show(topic, payload)
    answers = probe.send(topic, payload)
    if not edge.alive():
        raise AssertionError(f"the edge exited ({edge.process.returncode}) after {where}")
    tally.examples += 1
    tally.slowest = max(tally.slowest, probe.took)
    expected = 1 if must_answer(topic) else 0
    if len(answers) != expected:
        raise AssertionError(f"{len(answers)} answer(s), expected {expected}, to {where}: {answers[:3]}")
    for _answer_topic, body in answers:
        tally.answered += 1
        if "code" in body:
            code, reason = body.get("code"), body.get("reason")
            if code not in KNOWN_CODES or not isinstance(reason, str) or not reason.strip():
                raise AssertionError(f"a refusal without a known code and a reason: {body} for {where}")
            if len(reason) > MAX_REASON or "Traceback" in reason:
                raise AssertionError(
                    f"a refusal's reason is unbounded or a traceback ({len(reason)} chars) for {where}"
                )
            tally.refused[code] = tally.refused.get(code, 0) + 1
        elif "unparsable answer" in body:
            raise AssertionError(f"an answer that is not a JSON object: {body} for {where}")
    problems = edge.new_log_problems()
    if problems:
        raise AssertionError(f"the edge logged an error after {where}:\n" + "\n".join(problems[:10]))


def fuzz_bus(
    examples: int, minutes: float | None, seed_value: int | None, brokers: list[str], rss_growth: float
) -> str:
    """Each broker in turn: ``examples`` messages, or (the long form) ``minutes`` of them."""
    lines = []
    for broker in brokers:
        deadline = time.monotonic() + minutes * 60 if minutes else None
        lines.append(fuzz_broker(broker, examples, deadline, seed_value, rss_growth))
    return "; ".join(lines)


WARM_UP = [
    (
        topics.device_topic("default", "canary", topics.TWIN_UPDATE),
        b'{"twin":{"label":{"actual":{"value":"w"}}}}',
    ),
    (topics.device_topic("default", "ghost", topics.TWIN_GET), b"{}"),
    (topics.node_topic(NODE, topics.MEMBERSHIP_GET), b"{}"),
]


def fuzz_broker(
    broker: str, examples: int, deadline: float | None, seed_value: int | None, rss_growth: float
) -> str:
    """One edge on one broker: warm-up, then batches of examples until the budget or time is spent."""
    workdir = Path(tempfile.mkdtemp(prefix="kubeedge-fuzz-"))
    edge, mosquitto = start_edge(workdir, broker)
    probe = Probe(edge.url)
    tally = Tally()
    try:
        # every kind of message a few times, so allocations that stay are made before measuring
        for topic, payload in WARM_UP * 20:
            check(edge, probe, tally, topic, payload)
        tally.rss_start = tally.rss_peak = edge.rss_mb()
        batch = 0
        while True:
            batch_seed = (seed_value if seed_value is not None else random.getrandbits(32)) + batch
            batch += 1
            run_batch(edge, probe, tally, examples if deadline is None else 500, batch_seed, deadline)
            if deadline is None or time.monotonic() > deadline:
                break
        rss_end = edge.rss_mb()
        growth = max(rss_end, tally.rss_peak) - tally.rss_start
        rss = f"RSS {tally.rss_start:.1f} -> {rss_end:.1f} MB (peak {tally.rss_peak:.1f})"
        if growth > rss_growth:
            raise AssertionError(f"edge {rss}: grew {growth:.1f} MB, more than {rss_growth:g} MB")
        refused = ", ".join(f"{code}: {n}" for code, n in sorted(tally.refused.items()))
        line = (
            f"bus/{broker}: {tally.examples} messages, {tally.answered} answers ({refused}), "
            f"slowest canary {tally.slowest * 1000:.0f} ms, {rss}"
        )
        print(line, flush=True)
    except BaseException:
        print(f"fuzz: the edge's folder (log, database) is kept: {workdir}", file=sys.stderr, flush=True)
        raise
    finally:
        probe.close()
        stop_edge(edge, mosquitto)
    if edge.process.returncode not in (0, -signal.SIGTERM):
        log = edge.log.read_text()[-3000:]
        raise AssertionError(f"the edge stopped with status {edge.process.returncode} ({workdir}):\n{log}")
    shutil.rmtree(workdir, ignore_errors=True)
    return line


def run_batch(
    edge: Edge, probe: Probe, tally: Tally, budget: int, batch_seed: int, deadline: float | None
) -> None:
    @seed(batch_seed)
    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        # The edge is stateful: the first finding is the one to report, as it came (shrinking
        # would re-run examples against an edge the finding changed).
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
    )
    @given(topic=topic_strategy, payload=payload_strategy)
    def one(topic: str, payload: bytes) -> None:
        if deadline is not None and time.monotonic() > deadline:
            return  # time is up: the rest of the batch is generated, not sent (an exception would be a finding)
        check(edge, probe, tally, topic, payload)
        if tally.examples % 50 == 0:
            tally.rss_peak = max(tally.rss_peak, edge.rss_mb())

    one()


def plugin_targets() -> dict[str, Path]:
    """Other targets: ``hack/fuzz_<name>.py`` modules with ``run(minutes) -> int`` (0: no findings)."""
    return {path.stem.removeprefix("fuzz_"): path for path in sorted(HERE.glob("fuzz_*.py"))}


def load_target(path: Path) -> Callable[[float], int]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run: Callable[[float], int] = module.run
    return run


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, help="the long form: each target (bus: each broker) this long"
    )
    parser.add_argument(
        "--examples", type=int, default=150, help="messages per broker in the short form [150]"
    )
    parser.add_argument(
        "--targets", default="all", help="comma-separated: bus and the hack/fuzz_<name>.py ones [all]"
    )
    parser.add_argument("--brokers", default="mosquitto,embedded")
    parser.add_argument("--seed", type=int, help="hypothesis seed (to replay a run)")
    parser.add_argument(
        "--rss-growth", type=float, default=40.0, help="MB the edge may grow after warm-up [40]"
    )
    args = parser.parse_args()
    others = plugin_targets()
    names = ["bus", *others] if args.targets == "all" else args.targets.split(",")
    unknown = [n for n in names if n != "bus" and n not in others]
    if unknown:
        parser.error(
            f"unknown target(s) {', '.join(unknown)}; known: bus, {', '.join(others) or '(no others)'}"
        )
    summaries = []
    for name in names:
        if name == "bus":
            summary = fuzz_bus(
                args.examples, args.minutes, args.seed, args.brokers.split(","), args.rss_growth
            )
        else:
            status = load_target(others[name])(args.minutes or SHORT_FORM_MINUTES)
            if status:
                print(f"fuzz: target {name} found a problem (status {status})", file=sys.stderr)
                return status
            summary = "held"
        summaries.append(f"{name}: {summary}")
    print("fuzz: no findings; " + " | ".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
