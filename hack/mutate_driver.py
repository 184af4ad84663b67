#!/usr/bin/env python3
"""Mutation check of the conformance suite: does it catch realistic driver defects?

Generates a fresh ``kubeedge mapper new`` scaffold, installs it into a throwaway venv, checks that
its own tests (the conformance suite against its simulator) pass, then applies each mutant, a
realistic defect, to the scaffold's driver only (simulator and tests untouched) and runs the
suite again. A mutant is caught when the suite fails. Prints each mutant with the first failing
test and its message, the catch rate, and the survivors with why they cannot be caught.

    .venv/bin/python hack/mutate_driver.py            # every mutant (a few minutes; -j 2 on 2 idle cores)
    .venv/bin/python hack/mutate_driver.py --quick    # the fixed subset tests/test_mutate_driver.py runs
    .venv/bin/python hack/mutate_driver.py --only no-lock,close-leaks --show

Exit status: 0 when the unmutated scaffold passes and every mutant that is not a known survivor
is caught (and, without --only, the catch rate is at least --target); 1 otherwise; 2 when a
mutant no longer applies (the template changed: update the mutant).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubeedge.testing.venv import overlay_venv, pip_install

NAME = "mutant"
PACKAGE = "kubeedge_mapper_mutant"


@dataclass(frozen=True)
class Mutant:
    name: str
    category: str
    edits: list[tuple[str, str]]
    """(text of the generated driver.py, replacement); each text must occur exactly once."""
    survivor: str | None = None
    """Why the suite cannot catch it (a known survivor), or None: it must be caught."""


@dataclass
class Outcome:
    mutant: Mutant
    caught: bool
    seconds: float
    test: str = ""
    message: str = ""
    output: str = field(default="", repr=False)


CONNECT = """        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port), self.config.timeout
        )
"""
READLINE = "line = await asyncio.wait_for(self._reader.readline(), self.config.timeout)"
CLASS_ATTRS = f"    visitor_model = {NAME.capitalize()}Visitor\n"

MUTANTS = [
    # read returns the wrong Python type (the runtime would convert it silently)
    Mutant(
        "int-as-str",
        "types",
        [
            (
                'return round(number) if kind == "int" else number',
                'return str(round(number)) if kind == "int" else number',
            )
        ],
    ),
    Mutant(
        "int-as-float",
        "types",
        [
            (
                'return round(number) if kind == "int" else number',
                'return float(round(number)) if kind == "int" else number',
            )
        ],
    ),
    Mutant(
        "float-as-str",
        "types",
        [
            (
                'return round(number) if kind == "int" else number',
                'return round(number) if kind == "int" else str(number)',
            )
        ],
    ),
    Mutant("bool-as-int", "types", [('return text == "true"', 'return int(text == "true")')]),
    Mutant("bytes-as-text", "types", [("return base64.b64decode(text)", "return text")]),
    # a lost device: connect, timeouts, closed connections
    Mutant(
        "connect-swallows-errors",
        "outage",
        [
            (
                CONNECT,
                "        try:\n"
                + CONNECT.replace("        ", "            ", 3)
                + "        except OSError:\n            pass\n",
            )
        ],
    ),
    Mutant(
        "lazy-connect",
        "outage",
        [
            (CONNECT, ""),
            (
                "        async with self._lock:\n",
                '        if not hasattr(self, "_writer"):\n'
                + CONNECT.replace("        ", "            ", 3)
                + "        async with self._lock:\n",
            ),
        ],
    ),
    Mutant(
        "timeout-as-device-error",
        "outage",
        [
            (
                READLINE,
                "try:\n                " + READLINE + "\n            except TimeoutError:\n"
                '                raise DeviceError("no answer") from None',
            )
        ],
    ),
    Mutant(
        "no-driver-read-timeout",
        "outage",
        [(READLINE, "line = await self._reader.readline()")],
        survivor="equivalent: the runtime bounds every driver call by readTimeout, so a read without "
        "its own timeout still ends and the device still goes offline",
    ),
    Mutant(
        "closed-connection-as-device-error",
        "outage",
        [('raise DeviceUnreachable(f"', 'raise DeviceError(f"')],
        survivor="equivalent here: after a device restart (test_device_restart_is_reconnected) the "
        "dead connection's next request fails with ConnectionResetError, which takes the device offline "
        "and drops the batch the DeviceError was in; it shows only if the closed read is the batch's last",
    ),
    # close()
    Mutant("close-leaks", "close", [("            writer.close()\n", "            pass\n")]),
    Mutant(
        "close-raises-before-connect",
        "close",
        [('writer = getattr(self, "_writer", None)', "writer = self._writer")],
    ),
    Mutant(
        "close-raises",
        "close",
        [
            (
                "            writer.close()\n",
                '            writer.close()\n            raise ConnectionError("already closed")\n',
            )
        ],
    ),
    # blocking the event loop
    Mutant(
        "blocking-sleep-in-read",
        "blocking",
        [
            (
                '        return _decode(prop.type, await self._call(f"GET',
                '        if prop.name == "energy":\n            __import__("time").sleep(0.15)\n'
                '        return _decode(prop.type, await self._call(f"GET',
            ),
        ],
    ),
    Mutant(
        "blocking-sleep-in-write",
        "blocking",
        [
            (
                '        await self._call(f"SET',
                '        __import__("time").sleep(0.15)\n        await self._call(f"SET',
            )
        ],
    ),
    Mutant(
        "blocking-connect",
        "blocking",
        [
            (
                CONNECT,
                '        sock = __import__("socket").create_connection((self.config.host, self.config.port))\n'
                "        self._reader, self._writer = await asyncio.open_connection(sock=sock)\n",
            )
        ],
        survivor="a blocking connect on loopback is accepted or refused in microseconds; only a device "
        "that drops connection attempts (no answer at all) would show it",
    ),
    # wrong mappings: scale, addresses
    Mutant(
        "scale-inverted-on-read",
        "mapping",
        [("number = float(text) * scale", "number = float(text) / scale")],
    ),
    Mutant("scale-ignored-on-read", "mapping", [("number = float(text) * scale", "number = float(text)")]),
    Mutant("scale-inverted-on-write", "mapping", [("raw = value / scale", "raw = value * scale")]),
    Mutant("scale-ignored-on-write", "mapping", [("raw = value / scale", "raw = value")]),
    Mutant("name-not-address-on-read", "mapping", [('f"GET {prop.visitor.point}"', 'f"GET {prop.name}"')]),
    Mutant("name-not-address-on-write", "mapping", [('f"SET {prop.visitor.point}', 'f"SET {prop.name}')]),
    Mutant(
        "precision-lost-on-read",
        "mapping",
        [("number = float(text) * scale", "number = round(float(text) * scale, 1)")],
    ),
    Mutant(
        "sign-lost-on-read",
        "mapping",
        [("number = float(text) * scale", "number = abs(float(text)) * scale")],
    ),
    Mutant(
        "read-cached",
        "mapping",
        [
            (
                "    async def read(self, prop",
                "    _cache: dict[str, Any] = {}\n\n    async def read(self, prop",
            ),
            (
                '        return _decode(prop.type, await self._call(f"GET {prop.visitor.point}"), prop.visitor.scale)',
                "        if prop.name not in self._cache:\n"
                "            self._cache[prop.name] = _decode(\n"
                '                prop.type, await self._call(f"GET {prop.visitor.point}"), prop.visitor.scale\n'
                "            )\n"
                "        return self._cache[prop.name]",
            ),
        ],
    ),
    # the wire form of written values
    Mutant(
        "bool-written-inverted",
        "wire form",
        [('return "true" if value else "false"', 'return "false" if value else "true"')],
    ),
    Mutant(
        "bool-written-as-python", "wire form", [('return "true" if value else "false"', "return str(value)")]
    ),
    Mutant(
        "int-written-as-float",
        "wire form",
        [('return str(round(raw)) if kind == "int" else repr(float(raw))', "return repr(float(raw))")],
    ),
    Mutant(
        "float-written-rounded",
        "wire form",
        [('return str(round(raw)) if kind == "int" else repr(float(raw))', "return str(round(raw))")],
    ),
    Mutant(
        "bytes-written-as-hex",
        "wire form",
        [("return base64.b64encode(value).decode()", "return value.hex()")],
    ),
    Mutant("text-written-with-repr", "wire form", [("    return str(value)\n", "    return repr(value)\n")]),
    Mutant(
        "text-cut-at-space",
        "wire form",
        [('line.decode().rstrip("\\n").partition(" ")', 'line.decode().split(" ")[:2] + [""]')],
    ),
    Mutant("bool-decoded-as-truthy", "wire form", [('return text == "true"', "return bool(text)")]),
    # concurrency
    Mutant("no-lock", "concurrency", [("async with self._lock:", "if True:")]),
    Mutant("lock-per-call", "concurrency", [("async with self._lock:", "async with asyncio.Lock():")]),
    # device errors
    Mutant(
        "device-error-as-unreachable",
        "errors",
        [
            (
                'raise DeviceError(message or "device error", code=code)',
                'raise DeviceUnreachable(message or "device error")',
            )
        ],
    ),
    Mutant(
        "device-error-message-lost",
        "errors",
        [('raise DeviceError(message or "device error", code=code)', 'raise DeviceError("device error")')],
    ),
    # batch reads (a driver that adds read_many)
    Mutant(
        "batch-in-wrong-order",
        "batch",
        [
            (
                CLASS_ATTRS,
                CLASS_ATTRS + "    max_batch = 8\n\n    async def read_many(self, props):\n"
                "        return [await self.read(p) for p in reversed(props)]\n",
            )
        ],
    ),
    Mutant(
        "batch-drops-failed",
        "batch",
        [
            (
                CLASS_ATTRS,
                CLASS_ATTRS + "    max_batch = 8\n\n    async def read_many(self, props):\n"
                "        results = []\n        for p in props:\n            try:\n"
                "                results.append(await self.read(p))\n            except DeviceError:\n"
                "                pass\n        return results\n",
            )
        ],
    ),
    Mutant(
        "batch-one-error-fails-all",
        "batch",
        [
            (
                CLASS_ATTRS,
                CLASS_ATTRS + "    max_batch = 8\n\n    async def read_many(self, props):\n"
                "        return [await self.read(p) for p in props]\n",
            )
        ],
    ),
    # health checks
    Mutant(
        "state-bad-answer",
        "health",
        [(CLASS_ATTRS, CLASS_ATTRS + '\n    async def state(self) -> str:\n        return "fine"\n')],
    ),
    Mutant(
        "state-raises",
        "health",
        [(CLASS_ATTRS, CLASS_ATTRS + "\n    async def state(self) -> str:\n        return self._status\n")],
    ),
]

QUICK = [
    "int-as-str",
    "lazy-connect",
    "close-leaks",
    "blocking-sleep-in-read",
    "scale-inverted-on-write",
    "no-lock",
]
"""The fixed subset the test suite runs: one mutant of each new check."""


def apply(original: str, mutant: Mutant) -> str:
    text = original
    for old, new in mutant.edits:
        count = text.count(old)
        if count != 1:
            raise LookupError(
                f"mutant {mutant.name}: {old!r} occurs {count} times in the driver (expected once)"
            )
        text = text.replace(old, new)
    return text


def first_failure(output: str) -> tuple[str, str]:
    """The first failing test and the first line of its message, from pytest's output."""
    test = ""
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    if match:
        test = match.group(1).split("::")[-1]
    message = next((line[1:].strip() for line in output.splitlines() if line.startswith("E ")), "")
    return test, message[:200]


def run_suite(python: Path, dist: Path, timeout: float) -> tuple[bool, str, float]:
    started = time.monotonic()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run(
            [str(python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=dist,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        passed, output = result.returncode == 0, result.stdout + result.stderr
    except subprocess.TimeoutExpired as exc:
        passed, output = False, f"TIMEOUT after {timeout:g}s\n{exc.stdout or ''}"
    return passed, output, time.monotonic() - started


def prepare(work: Path) -> tuple[Path, Path, Path]:
    """The scaffold, installed; returns (dist, python, installed driver.py)."""
    subprocess.run(
        [sys.executable, "-m", "kubeedge", "mapper", "new", NAME, "--dest", str(work)],
        check=True,
        capture_output=True,
    )
    dist = work / f"kubeedge-mapper-{NAME}"
    python = overlay_venv(work / "venv")
    pip_install(python, dist)
    where = subprocess.run(
        [str(python), "-c", f"import {PACKAGE}.driver as d; print(d.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return dist, python, Path(where)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the fixed subset the test suite runs")
    parser.add_argument("--only", default="", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--show", action="store_true", help="print the suite's output for each mutant")
    parser.add_argument("--timeout", type=float, default=180, help="seconds one suite run may take")
    parser.add_argument("--target", type=float, default=0.9, help="the catch rate the full run must reach")
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, help="suites run at once, each on its own scaffold copy"
    )
    args = parser.parse_args()
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:36} {mutant.category:12} {'known survivor' if mutant.survivor else ''}")
        return 0
    chosen = MUTANTS
    if args.quick or args.only:
        names = QUICK if args.quick else args.only.split(",")
        unknown = set(names) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"no mutant named {', '.join(sorted(unknown))}")
        chosen = [m for m in MUTANTS if m.name in names]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutate-driver-") as tmp:
        # One installed scaffold per job: a mutant is written over its installed driver.py.
        slots = [prepare(Path(tmp) / f"job{i}") for i in range(max(1, args.jobs))]
        dist, python, driver = slots[0]
        original = driver.read_text()
        try:
            texts = {m.name: apply(original, m) for m in chosen}
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 2
        passed, output, seconds = run_suite(python, dist, args.timeout)
        if not passed:
            print(f"the unmutated scaffold fails its own suite ({seconds:.1f}s):\n{output[-3000:]}")
            return 1
        print(f"unmutated scaffold: suite passed in {seconds:.1f}s; {len(chosen)} mutant(s)\n")
        pending: queue.Queue[Mutant] = queue.Queue()
        for mutant in chosen:
            pending.put(mutant)
        outcomes: list[Outcome] = []
        printing = threading.Lock()

        def work(slot: tuple[Path, Path, Path]) -> None:
            dist, python, driver = slot
            try:
                while True:
                    try:
                        mutant = pending.get_nowait()
                    except queue.Empty:
                        return
                    driver.write_text(texts[mutant.name])
                    passed, output, seconds = run_suite(python, dist, args.timeout)
                    test, message = first_failure(output) if not passed else ("", "")
                    outcome = Outcome(mutant, not passed, seconds, test, message, output)
                    with printing:
                        outcomes.append(outcome)
                        mark = "caught  " if outcome.caught else "SURVIVED"
                        print(f"{mark} {mutant.name:36} {seconds:5.1f}s  {test}", flush=True)
                        if outcome.caught and message:
                            print(f"         {message}", flush=True)
                        if args.show:
                            print(output)
            finally:
                driver.write_text(original)

        workers = [threading.Thread(target=work, args=(slot,)) for slot in slots]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    caught = sum(o.caught for o in outcomes)
    survivors = [o for o in outcomes if not o.caught]
    print(
        f"\ncaught {caught} of {len(outcomes)} mutants ({caught / len(outcomes):.0%}) in {time.monotonic() - started:.0f}s"
    )
    unexpected = [o for o in survivors if o.mutant.survivor is None]
    for outcome in survivors:
        why = outcome.mutant.survivor or "NOT A KNOWN SURVIVOR: the suite should catch it"
        print(f"  survivor {outcome.mutant.name} ({outcome.mutant.category}): {why}")
    if unexpected:
        return 1
    if not (args.quick or args.only) and caught / len(outcomes) < args.target:
        print(f"the catch rate is below the target {args.target:.0%}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
