#!/usr/bin/env python3
"""Fuzzing what the edge reads from files and what travels between the edge and its mappers.

Targets (hypothesis strategies; each example is checked against the invariants below):

* ``manifests``: YAML text (mutated valid manifests, alias bombs, deep nesting, huge integers,
  tags, random text) through ``parse_documents`` + ``validate_documents``, and through
  ``kubeedge validate`` itself: no exception, every problem names its file and says what is
  wrong, no line longer than a bounded message.
* ``config``: edge.yaml text through ``load_config``: an EdgeConfig or a ConfigError naming the
  file, nothing else, bounded.
* ``standalone``: files written into the manifest folder of a running edge (in process, with its
  embedded broker and virtual mapper), read by the standalone source: the edge alive, a canary
  device in another file still served and its twin answered within the canary timeout, every
  refused file named in the source's problems.
* ``assignments``: payloads on a mapper's assignments topic and on the edge's hello topic of the
  same running edge: the mapper's consumer alive, a real snapshot still applied afterwards, the
  canary answered.

All targets also check that the process's RSS stays under ``--max-rss-mb``.

Short form: ``core/tests/test_manifest_fuzz.py`` runs each target for a fixed number of examples
in the normal test suite. Long form: ``python hack/fuzz_manifests.py --minutes N [--target T]``
(a summary table, exit status 1 on the first failure, with the falsifying example printed by
hypothesis). The bus fuzzer ``hack/fuzz.py`` can include these targets by calling
:func:`run` (``run(minutes, targets=None) -> int``, the exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import string
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kubeedge.api import topics
from kubeedge.api.assignment import MapperHello
from kubeedge.api.manifests import MAX_MESSAGE, parse_documents, read_documents
from kubeedge.api.validation import validate_documents
from kubeedge.config import load_config
from kubeedge.errors import ConfigError

TARGETS = ("manifests", "config", "standalone", "assignments")
MAX_LINE = 3 * MAX_MESSAGE
"""A problem's text is file, line, object, path and message, each bounded."""

# --------------------------------------------------------------------------- inputs

MODEL: dict[str, Any] = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "sensor-model", "namespace": "default"},
    "spec": {
        "protocol": "virtual",
        "properties": [
            {
                "name": "temperature",
                "type": "FLOAT",
                "accessMode": "ReadOnly",
                "visitors": {"protocolName": "virtual", "configData": {"generator": "counter"}},
            },
            {"name": "label", "type": "STRING", "accessMode": "ReadWrite"},
        ],
    },
}


def device(name: str, **config: Any) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "sensor-model"},
            "protocol": {"protocolName": "virtual", "configData": config},
            "properties": [
                {"name": "temperature", "collectCycle": 100},
                {
                    "name": "label",
                    "collectCycle": 100,
                    "visitors": {"protocolName": "virtual", "configData": {"value": "hello"}},
                    "desired": {"value": "hello"},
                },
            ],
        },
    }


VALID_TEXT = yaml.safe_dump_all([MODEL, device("fuzz-1")], sort_keys=False)

HOSTILE_FRAGMENTS = [
    "&a [*a]",
    "*a",
    "*undefined",
    "&x {k: &y [*x]}",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!timestamp 2001-01-01",
    "!!python/object:os.system ls",
    "!foo bar",
    "<<: *a",
    "<<: [1, 2]",
    "? [a, b]\n: c",
    "9" * 5000,
    "-0x" + "f" * 5000,
    "1e99999",
    ".nan",
    "\t",
    "\x00",
    "\ufeff",
    "\u2028",
    "'unterminated",
    '"\\ud800"',
    "---",
    "...",
    "%YAML 1.1\n---",
    "{" * 300,
    "[" * 2000 + "]" * 2000,
    "- " * 300 + "x",
    "x" * 100_000,
]


def _bomb(levels: int, width: int, where: str) -> str:
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    if where == "top":
        return "\n".join(lines) + "\n"
    # inside protocol.configData of an otherwise valid device
    return VALID_TEXT.replace("configData: {}", "configData: {" + ", ".join(lines) + "}", 1)


def _nesting(depth: int, flow: bool) -> str:
    if flow:
        return "a: " + "[" * depth + "]" * depth + "\n"
    return "\n".join(" " * (2 * i) + "a:" for i in range(depth)) + " 1\n"


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**30, max_value=10**120)
    | st.floats()
    | st.text(max_size=30)
)
json_trees = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
FIELDS = [
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("kind",),
    ("apiVersion",),
    ("spec",),
    ("spec", "deviceModelRef"),
    ("spec", "protocol", "configData"),
    ("spec", "protocol", "protocolName"),
    ("spec", "properties"),
    ("spec", "properties", 0, "collectCycle"),
    ("spec", "properties", 1, "desired", "value"),
    ("spec", "properties", 1, "visitors", "configData"),
    ("spec", "properties", 0, "name"),
]


def _has(container: Any, part: str | int) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and part < len(container)


@st.composite
def structured_manifest(draw: st.DrawFn) -> str:
    """A valid model and device with values replaced by arbitrary JSON-like trees."""
    docs = [json.loads(json.dumps(MODEL)), device("fuzz-1")]
    for _ in range(draw(st.integers(1, 4))):
        doc = docs[draw(st.integers(0, 1))]
        path = draw(st.sampled_from(FIELDS))
        target = doc
        for part in path[:-1]:
            if not _has(target, part):
                break
            target = target[part]
        else:
            if isinstance(target, dict) or _has(target, path[-1]):
                target[path[-1]] = draw(json_trees)
    try:
        return yaml.safe_dump_all(docs, sort_keys=False)
    except (ValueError, yaml.YAMLError):  # a float or string YAML cannot write
        return VALID_TEXT


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """The valid text with hostile fragments, random text or deletions at random places."""
    text = VALID_TEXT
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        choice = draw(st.integers(0, 3))
        if choice == 0:
            text = text[:at] + draw(st.sampled_from(HOSTILE_FRAGMENTS)) + text[at:]
        elif choice == 1:
            text = text[:at] + draw(st.text(max_size=20)) + text[at:]
        elif choice == 2:
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        else:
            text = text[:at] + " " + draw(st.sampled_from(HOSTILE_FRAGMENTS)) + "\n" + text[at:]
    return text


hostile_shapes = st.one_of(
    st.builds(_bomb, st.integers(2, 9), st.integers(2, 12), st.sampled_from(["top", "config"])),
    st.builds(_nesting, st.integers(50, 1500), st.booleans()),
    st.builds(
        lambda n: VALID_TEXT.replace("collectCycle: 100", "collectCycle: " + "9" * n, 1),
        st.integers(90, 6000),
    ),
    st.builds(lambda n: "kind: 0x" + "f" * n + "\n", st.integers(90, 6000)),
)
manifest_texts = st.one_of(structured_manifest(), mutated_text(), hostile_shapes)

CONFIG_KEYS = {
    "node": st.sampled_from(["edge-1", "", "Bad_Node", "x" * 300]),
    "bus": st.fixed_dictionaries({"url": st.sampled_from(["embedded", "mqtt://h:1", "ftp://x", ""])}),
    "dataDir": st.sampled_from(["./data", "", "/nonexistent/x"]),
    "manifests": st.sampled_from(["./manifests", "", None]),
    "mappers": st.dictionaries(st.sampled_from(["virtual", "modbus", "nope"]), json_trees, max_size=2),
    "modules": st.dictionaries(
        st.sampled_from(["standalone", "twin", "mappers", "nope"]),
        st.fixed_dictionaries(
            {}, optional={"enabled": json_leaves, "limits": json_trees, "debounceMs": json_leaves}
        ),
        max_size=3,
    ),
}


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from(sorted(CONFIG_KEYS)), unique=True, max_size=4))
    data = {key: draw(CONFIG_KEYS[key]) for key in keys}
    try:
        text = yaml.safe_dump(data, sort_keys=False)
    except (ValueError, yaml.YAMLError):  # a float or string YAML cannot write
        text = "node: edge-1\n"
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(HOSTILE_FRAGMENTS)) + text[at:]
    return text


def _json(value: Any) -> bytes:
    """JSON as any sender might write it: big integers, NaN and lone surrogates included."""
    return json.dumps(value).encode("utf-8", "surrogatepass")


assignment_payloads = st.one_of(
    st.binary(max_size=200),
    st.builds(_json, json_trees),
    st.builds(
        lambda kind, part, parts, devices, keys: _json(
            {"version": 1, "kind": kind, "instance": "fuzz", "part": part, "parts": parts}
            | {"devices": devices, "keys": keys}
        ),
        st.sampled_from(["snapshot", "upsert", "delete", "other"]),
        st.integers(-2, 5),
        st.integers(-2, 5),
        st.lists(
            st.fixed_dictionaries(
                {
                    "device": st.one_of(st.just(device("fuzz-a")), st.just(device("canary")), json_trees),
                    "model": st.one_of(st.just(MODEL), json_trees),
                }
            ),
            max_size=3,
        ),
        st.lists(st.sampled_from(["default/canary", "default/fuzz-a", "", "x" * 300]), max_size=3),
    ),
    st.just(b"[" * 100_000 + b"]" * 100_000),
    st.just(b'{"version": 1, "kind": "upsert", "devices": [{"device": ' + b"9" * 5000 + b', "model": {}}]}'),
)
hello_payloads = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda name: MapperHello(instance="fuzz", name=name).to_json(), st.text(max_size=40)),
    st.just(b"[" * 100_000 + b"]" * 100_000),
)
protocol_names = st.sampled_from(["virtual", "modbus", "nope", "x" * 200]) | st.text(
    alphabet=string.ascii_lowercase + "-_.", min_size=1, max_size=20
)

# --------------------------------------------------------------------------- invariants


class Limits:
    """What every target checks besides its own invariants."""

    def __init__(self, max_rss_mb: float = 1500.0, canary_timeout: float = 1.0) -> None:
        self.max_rss_mb = max_rss_mb
        self.canary_timeout = canary_timeout

    def check_rss(self) -> None:
        rss = current_rss_mb()
        assert rss < self.max_rss_mb, f"RSS {rss:.0f} MB is over the bound of {self.max_rss_mb:.0f} MB"


def current_rss_mb() -> float:
    with contextlib.suppress(OSError), open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_manifest_text(text: str) -> None:
    """parse + validate: never an exception; every problem named and bounded."""
    documents, problems = parse_documents("fuzz.yaml", text)
    report = validate_documents(documents)
    for problem in [*problems, *report.all_problems]:
        line = str(problem)
        assert problem.source == "fuzz.yaml" and problem.message, line
        assert len(line) <= MAX_LINE, f"a problem of {len(line)} characters"
    for checked in report.objects:
        for problem in checked.problems:
            assert problem.obj == checked.label


def check_validate_cli(text: str, folder: Path) -> None:
    """``kubeedge validate`` on the text: exit 0 or 1, no traceback, bounded lines."""
    from click.testing import CliRunner

    from kubeedge.cli import cli

    path = folder / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code in (0, 1), (result.exit_code, result.output[-2000:], result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert max((len(line) for line in result.output.splitlines()), default=0) <= MAX_LINE + 10


def check_config_text(text: str, folder: Path) -> None:
    """``load_config``: an EdgeConfig, or a ConfigError that names the file; nothing else."""
    path = folder / "edge.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert str(path) in message, message[:300]
        assert all(len(line) <= MAX_LINE for line in message.splitlines()), "an unbounded config error"


# --------------------------------------------------------------------------- a running edge


class _Tracebacks(logging.Handler):
    """Collects log records that carry an exception: a caught exception is a finding too (the
    mapper's consumer survives a failing message, but that message's devices were lost)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


class EdgeThread:
    """An in-process edge (embedded broker, virtual mapper, standalone folder) in its own thread
    and event loop, so synchronous hypothesis tests can drive it."""

    def __init__(self, workdir: Path, limits: Limits) -> None:
        self.workdir = workdir
        self.limits = limits
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-edge", daemon=True)
        self.handle: Any = None
        self.bus: Any = None
        self.tracebacks = _Tracebacks()

    def __enter__(self) -> EdgeThread:
        from kubeedge.testing.edge import start_edge

        logging.getLogger("kubeedge").addHandler(self.tracebacks)
        self.thread.start()
        manifests = self.workdir / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / "canary.yaml").write_text(yaml.safe_dump_all([MODEL, device("canary")], sort_keys=False))
        self.handle = self.call(start_edge(self.workdir), timeout=30)
        self.call(self.handle.wait_reported("default/canary", "label", "hello"), timeout=30)
        self.bus = self.call(self._client_bus(), timeout=30)
        return self

    async def _client_bus(self) -> Any:
        from kubeedge.bus import BusClient

        bus = BusClient(self.handle.core.context.bus_url)
        await bus.start()
        return bus

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.call(self.bus.stop(), timeout=10)
        with contextlib.suppress(Exception):
            self.call(self.handle.stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        logging.getLogger("kubeedge").removeHandler(self.tracebacks)

    def call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Callable[[], Any], timeout: float = 30) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self.call(wrapper(), timeout)

    # the invariants

    def check_alive(self) -> None:
        core = self.handle.core
        standalone = core.module("standalone")
        assert standalone._task is not None and not standalone._task.done(), "the folder watch stopped"
        runtime = core.module("mappers").runtimes["virtual"]
        assert runtime._consumer is not None and not runtime._consumer.done(), "the mapper's consumer stopped"
        found, self.tracebacks.records = self.tracebacks.records, []
        assert not found, "a caught exception: " + "\n".join(
            f"{r.name}: {r.getMessage()}: {r.exc_info[1]!r}" for r in found if r.exc_info
        )
        self.limits.check_rss()

    def check_canary(self) -> None:
        async def ask() -> Any:
            client = await self.handle.client()
            return await asyncio.wait_for(client.twin("default/canary"), self.limits.canary_timeout)

        answer = self.call(ask(), timeout=self.limits.canary_timeout + 5)
        assert answer, "the canary's twin was not answered"
        assert self.handle.core.context.registry.get("default/canary") is not None, "the canary is not served"

    def check_standalone(self, text: str) -> None:
        path = self.handle.manifests / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        standalone = self.handle.core.module("standalone")
        self.run(standalone.reload)
        # what the edge sees: the whole folder (the canary's model may serve the fuzzed device)
        documents, problems = read_documents([self.handle.manifests])
        report = validate_documents(documents)
        if any(p.source == str(path) for p in [*problems, *report.all_problems]):
            named = self.handle.core.context.registry.source_problems
            assert any("fuzz.yaml" in p for p in named), f"refused without a name: {named[:3]}"
        self.check_alive()
        self.check_canary()

    def check_assignments(self, payloads: list[bytes], hellos: list[tuple[str, bytes]]) -> None:
        node = self.handle.config.node
        runtime = self.handle.core.module("mappers").runtimes["virtual"]
        for payload in payloads:
            self.bus.publish(topics.mapper_topic(node, "virtual", topics.MAPPER_ASSIGNMENTS), payload, qos=1)
        for protocol, payload in hellos:
            self.bus.publish(topics.mapper_topic(node, protocol, topics.MAPPER_HELLO), payload, qos=1)
        # the mapper asks again; the edge's real snapshot must still be applied after the fuzz
        self.run(runtime._hello)
        self.call(
            _wait(
                lambda: "default/canary" in runtime.workers and runtime._inbox.empty(),
                what="snapshot applied",
            ),
            timeout=30,
        )
        self.check_alive()
        self.check_canary()


async def _wait(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    from kubeedge.testing import wait_for

    await wait_for(check, timeout=timeout, what=what)


# --------------------------------------------------------------------------- running


def _settings(examples: int) -> settings:
    # No shrinking: a deep or bomb-shaped input shrinks for minutes; the example is printed as found.
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],
        print_blob=True,
    )


def target_tests(folder: Path, edge: EdgeThread | None, examples: int) -> dict[str, Callable[[], None]]:
    """One hypothesis test per target, each running ``examples`` examples when called."""

    @_settings(examples)
    @given(manifest_texts)
    def manifests(text: str) -> None:
        check_manifest_text(text)
        check_validate_cli(text, folder)

    @_settings(examples)
    @given(config_texts())
    def config(text: str) -> None:
        check_config_text(text, folder)

    @_settings(examples)
    @given(manifest_texts)
    def standalone(text: str) -> None:
        assert edge is not None
        edge.check_standalone(text)

    @_settings(examples)
    @given(
        st.lists(assignment_payloads, max_size=4),
        st.lists(st.tuples(protocol_names, hello_payloads), max_size=2),
    )
    def assignments(payloads: list[bytes], hellos: list[tuple[str, bytes]]) -> None:
        assert edge is not None
        edge.check_assignments(payloads, hellos)

    return {"manifests": manifests, "config": config, "standalone": standalone, "assignments": assignments}


@contextlib.contextmanager
def fuzz_session(
    targets: tuple[str, ...], examples: int, limits: Limits
) -> Iterator[dict[str, Callable[[], None]]]:
    """The targets' tests, with a temporary folder and (when needed) a running edge."""
    with tempfile.TemporaryDirectory(prefix="kubeedge-fuzz-") as tmp:
        folder = Path(tmp)
        needs_edge = bool({"standalone", "assignments"} & set(targets))
        with EdgeThread(folder / "edge", limits) if needs_edge else contextlib.nullcontext() as edge:
            tests = target_tests(folder, edge, examples)
            yield {name: tests[name] for name in targets}


def run(minutes: float, targets: tuple[str, ...] | None = None, max_rss_mb: float = 1500.0) -> int:
    """Run the targets in rounds of 50 examples each, at least one round, for about ``minutes``;
    0 if every invariant held, 1 at the first failure (printed, with the falsifying example).

    ``hack/fuzz.py --targets manifests`` calls this. Prints one line per target (examples run),
    the RSS before and after, and a headline.
    """
    if not logging.getLogger().handlers:  # the edge logs every refusal; the table is the output
        logging.basicConfig(level=logging.ERROR)
    chosen = targets or TARGETS
    limits = Limits(max_rss_mb=max_rss_mb, canary_timeout=1.0)
    deadline = time.monotonic() + minutes * 60
    counts = dict.fromkeys(chosen, 0)
    start_rss = current_rss_mb()
    with fuzz_session(chosen, 50, limits) as tests:
        while not any(counts.values()) or time.monotonic() < deadline:
            for name, test in tests.items():
                try:
                    test()
                except Exception as exc:
                    print(f"FAILED {name}: {type(exc).__name__}: {str(exc)[:2000]}", file=sys.stderr)
                    return 1
                counts[name] += 50
    print(f"{'target':<12} {'examples':>9}")
    for name, count in counts.items():
        print(f"{name:<12} {count:>9}")
    print(f"RSS {start_rss:.0f} -> {current_rss_mb():.0f} MB (bound {max_rss_mb:.0f} MB)")
    print(f"headline: {sum(counts.values())} examples over {len(chosen)} target(s), every invariant held")
    return 0


def main() -> int:
    logging.basicConfig(
        level=logging.ERROR
    )  # errors (a caught exception, a left-out device) are worth a look
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    parser.add_argument(
        "--target", action="append", choices=TARGETS, help="one target (repeatable; default all)"
    )
    parser.add_argument("--max-rss-mb", type=float, default=1500.0, help="RSS bound (default 1500)")
    args = parser.parse_args()
    return run(args.minutes, tuple(args.target) if args.target else None, args.max_rss_mb)


if __name__ == "__main__":
    sys.exit(main())
