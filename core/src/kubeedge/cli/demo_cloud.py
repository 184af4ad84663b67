"""``kubeedge demo --with-cloud``: a cloud and an edge as two processes, on the embedded defaults.

The cloud (``kubeedge cloud run``, from the kubeedge-cloud distribution) serves the demo's devices
from a files source folder, its hub on a free loopback port (plain websocket: the hub takes
``ws://`` on loopback only); the edge (``kubeedge edge run``, node ``demo``) connects to it with a
token made for the demo (``kubeedge token create``) and runs the virtual mapper behind its
embedded broker. The table is the status as the cloud holds it, read the way a user reads it
(``kubeedge device list --cloud -o json``); a few seconds in, the demo sets a desired value in
the cloud's manifest and shows it land: written at the device, reported, observed-desired in the
cloud.

Core never imports ``kubeedge_cloud`` (an import-linter contract): every cloud command runs as a
process of this Python (``python -m kubeedge ...``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.metadata
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from kubeedge.bus import free_port
from kubeedge.cli.demo import _state, _wait, shown_value
from kubeedge.cli.edge import stop_on_signals
from kubeedge.errors import KubeEdgeError

CLOUD_DISTRIBUTION = "kubeedge-cloud"
NODE = "demo"
SHOWCASE_DEVICE = "demo/thermostat-living-room"
SHOWCASE_PROPERTY = "setpoint"
SHOWCASE_VALUE = "23.5"
POLL_SECONDS = 1.0
"""How often the cloud's status is read (one ``device list --cloud`` process each time)."""
STOP_SECONDS = 20.0
"""How long a process is given to stop after SIGINT before it is killed."""


def cloud_installed() -> bool:
    """Whether the kubeedge-cloud distribution is installed (its metadata; nothing imported)."""
    try:
        importlib.metadata.distribution(CLOUD_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class CloudDemoFiles:
    cloud_config: Path
    edge_config: Path
    manifest: Path
    token: Path


def prepare(workdir: Path, bus_port: int, hub_port: int) -> CloudDemoFiles:
    """Write the cloud's and the edge's configuration and the cloud's manifests into ``workdir``.

    The demo's devices are assigned to the demo's node (``spec.nodeName``): that is what sends
    them to its edge.
    """
    manifests = workdir / "cloud" / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    text = resources.files("kubeedge.demo").joinpath("devices.yaml").read_text(encoding="utf-8")
    manifest = manifests / "devices.yaml"
    manifest.write_text(
        _edit_documents(text, lambda doc: doc.get("kind") == "Device", _on_demo_node), encoding="utf-8"
    )
    cloud_config = workdir / "cloud" / "cloud.yaml"
    cloud = {
        "listen": f"127.0.0.1:{hub_port}",  # loopback: plain ws is allowed, no certificate needed
        "dataDir": "data",
        "source": {"kind": "files", "path": "manifests"},
    }
    cloud_config.write_text(yaml.safe_dump(cloud, sort_keys=False), encoding="utf-8")
    token = workdir / "edge" / "demo.token"
    token.parent.mkdir(parents=True, exist_ok=True)
    edge = {
        "node": NODE,
        "bus": {"url": "embedded", "listen": f"127.0.0.1:{bus_port}"},
        "dataDir": "data",
        "cloud": {"url": f"ws://127.0.0.1:{hub_port}", "tokenFile": token.name},
        "mappers": {"virtual": {}},
    }
    edge_config = workdir / "edge" / "edge.yaml"
    edge_config.write_text(yaml.safe_dump(edge, sort_keys=False), encoding="utf-8")
    return CloudDemoFiles(cloud_config, edge_config, manifest, token)


def _on_demo_node(doc: dict[str, Any]) -> None:
    doc["spec"] = {"nodeName": NODE, **(doc.get("spec") or {})}


def _edit_documents(text: str, wanted: Any, edit: Any) -> str:
    """``text`` (YAML documents) with each document ``wanted`` says yes to edited and written again;
    the others (and their comments) as they were."""
    out = []
    for part in text.split("\n---\n"):
        doc = yaml.safe_load(part)
        if isinstance(doc, dict) and wanted(doc):
            edit(doc)
            part = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None).rstrip("\n")
        out.append(part)
    return "\n---\n".join(out) + ("" if out[-1].endswith("\n") else "\n")


def set_desired_in_manifest(manifest: Path, device: str, prop: str, value: str) -> None:
    """Set ``prop``'s desired value of ``device`` (``ns/name``) in the cloud's manifest file, as a
    user editing it would; written whole at once (the cloud never reads half a file)."""
    namespace, _, name = device.partition("/")

    def wanted(doc: dict[str, Any]) -> bool:
        meta = doc.get("metadata") or {}
        return bool(
            doc.get("kind") == "Device" and meta.get("name") == name and meta.get("namespace") == namespace
        )

    def edit(doc: dict[str, Any]) -> None:
        for item in doc["spec"].get("properties") or []:
            if item.get("name") == prop:
                item["desired"] = {"value": value}
                return
        doc["spec"].setdefault("properties", []).append({"name": prop, "desired": {"value": value}})

    text = _edit_documents(manifest.read_text(encoding="utf-8"), wanted, edit)
    partial = manifest.with_name(f".{manifest.name}.tmp")  # a dot file: the folder reader skips it
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, manifest)


class Process:
    """A ``kubeedge`` command run by this Python in its own session (Ctrl-C reaches the demo only,
    which stops the edge, then the cloud); its output goes to a log file, the last lines kept."""

    def __init__(self, name: str, log: Path, ready_line: str, *args: str) -> None:
        self.name = name
        self.log = log
        self.ready_line = ready_line
        """What the process says once it serves (part of a line)."""
        self.args = args
        self.process: asyncio.subprocess.Process | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kubeedge",
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"},
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read(), name=f"demo-{self.name}-output")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.log.open("a", encoding="utf-8") as out:
            while line := await self.process.stdout.readline():
                text = line.decode(errors="replace").rstrip()
                out.write(text + "\n")
                out.flush()
                self.tail.append(text)
                if self.ready_line in text:
                    self.ready.set()

    @property
    def exited(self) -> bool:
        return self.process is None or self.process.returncode is not None

    async def wait_ready(self, timeout: float) -> None:
        """Until the process says :attr:`ready_line`; an error with its last lines if it exits or
        ``timeout`` passes first."""
        assert self._reader is not None
        ready = asyncio.ensure_future(self.ready.wait())
        try:
            await asyncio.wait([ready, self._reader], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self.ready.is_set():
            what = "exited" if self._reader.done() else f"did not say so within {timeout:g} s"
            raise KubeEdgeError(self.failure(f"{what} (waiting for {self.ready_line!r})"))

    def failure(self, what: str) -> str:
        code = self.process.returncode if self.process is not None else None
        status = f" (exit code {code})" if code is not None else ""
        last = "\n".join(f"  {line}" for line in self.tail)
        return f"the demo's {self.name} {what}{status}; its last lines ({self.log}):\n{last}"

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


async def _command(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubeedge",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        out, err = await process.communicate()
    except asyncio.CancelledError:  # the demo stops: so does the command it was running
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class CloudStatus:
    """The status the cloud holds, read with ``kubeedge device list --cloud -o json`` again and again."""

    def __init__(self, cloud_config: Path) -> None:
        self.cloud_config = cloud_config
        self.devices: list[dict[str, Any]] = []
        self.problem = ""
        self.read_at = 0.0
        self.refreshed = asyncio.Event()

    async def follow(self) -> None:
        while True:
            code, out, err = await _command(
                "device", "list", "--cloud", "-c", str(self.cloud_config), "-o", "json"
            )
            if code == 0:
                try:
                    self.devices = json.loads(out)
                    self.problem = ""
                except ValueError as exc:
                    self.problem = f"device list --cloud printed no JSON: {exc}"
            else:
                self.problem = (
                    (err.strip() or out.strip()).splitlines()[-1] if (err or out).strip() else f"exit {code}"
                )
            self.read_at = time.time()
            self.refreshed.set()
            self.refreshed = asyncio.Event()
            await asyncio.sleep(POLL_SECONDS)

    def twin(self, device: str, prop: str) -> dict[str, Any]:
        for entry in self.devices:
            if entry.get("id") == device:
                status = entry.get("status") or {}
                twin = (status.get("twins") or {}).get(prop)
                return twin if isinstance(twin, dict) else {}
        return {}

    def reported_anything(self) -> bool:
        return any(
            twin.get("reported") is not None
            for entry in self.devices
            for twin in ((entry.get("status") or {}).get("twins") or {}).values()
        )

    def table(self) -> Table:
        table = Table(
            header_style="bold", expand=False, title="status as the cloud holds it", title_justify="left"
        )
        for column in (
            "DEVICE",
            "NODE",
            "STATE",
            "PROPERTY",
            "DESIRED",
            "REPORTED",
            "AGE",
            "OBSERVED DESIRED",
        ):
            table.add_column(column)
        now = time.time() * 1000
        for entry in sorted(self.devices, key=lambda e: str(e.get("id"))):
            status = entry.get("status") or {}
            twins: dict[str, Any] = status.get("twins") or {}
            desired: dict[str, Any] = entry.get("desired") or {}
            first = True
            for name in sorted(set(twins) | set(desired)):
                twin = twins.get(name) or {}
                kind = str(twin.get("type") or "string")
                reported = twin.get("reported")
                shown = escape(shown_value(kind, reported)) if reported is not None else "-"
                if twin.get("error"):
                    shown = f"[red]{escape(str(twin['error']))}[/]"
                at = twin.get("reported_at")
                observed = twin.get("observed_desired")
                want = desired.get(name)
                pending = want is not None and observed != want
                table.add_row(
                    escape(str(entry.get("id"))) if first else "",
                    escape(str(status.get("node") or entry.get("node") or "-")) if first else "",
                    _state(status.get("state")) if first else "",
                    escape(name),
                    (f"[yellow]{escape(str(want))}[/]" if pending else escape(str(want)))
                    if want is not None
                    else "",
                    shown,
                    f"{max(0.0, (now - at) / 1000):.1f}s" if isinstance(at, int) else "-",
                    escape(str(observed)) if observed is not None else "",
                )
                first = False
        if self.problem:
            table.caption = f"[red]{escape(self.problem)}[/]"
        return table


def _same_value(a: Any, b: str) -> bool:
    if a is None:
        return False
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == b


class Showcase:
    """Once the cloud holds the first reports, sets a desired value in the cloud's manifest and
    reports how long it took to land: written at the device, reported and observed-desired in
    the cloud. ``outcome`` is said once; ``render()`` is the line meanwhile."""

    def __init__(self, manifest: Path, status: CloudStatus) -> None:
        self.manifest = manifest
        self.status_source = status
        self.status = "waiting for the edge's first reports in the cloud ..."
        self.outcome: str | None = None
        self.shown = False

    async def run(self) -> None:
        cloud = self.status_source
        while not cloud.reported_anything():
            await cloud.refreshed.wait()
        self.status = "in 3 s the demo sets a desired value in the cloud's manifest ..."
        await asyncio.sleep(3)
        started = time.monotonic()
        set_desired_in_manifest(self.manifest, SHOWCASE_DEVICE, SHOWCASE_PROPERTY, SHOWCASE_VALUE)
        self.status = (
            f"desired {SHOWCASE_PROPERTY}={SHOWCASE_VALUE} set for {SHOWCASE_DEVICE} in {self.manifest} ..."
        )
        try:
            async with asyncio.timeout(30):
                while True:
                    twin = cloud.twin(SHOWCASE_DEVICE, SHOWCASE_PROPERTY)
                    if _same_value(twin.get("observed_desired"), SHOWCASE_VALUE) and _same_value(
                        twin.get("reported"), SHOWCASE_VALUE
                    ):
                        break
                    await cloud.refreshed.wait()
        except TimeoutError:
            self.outcome = (
                f"[red]✗ desired {SHOWCASE_PROPERTY}={SHOWCASE_VALUE} did not come back to the cloud "
                "within 30 s (see the logs)[/]"
            )
            return
        took = time.monotonic() - started
        self.outcome = (
            f"[green]✓ desired {SHOWCASE_PROPERTY}={SHOWCASE_VALUE} set in the cloud's manifest landed on "
            f"{SHOWCASE_DEVICE}: written at the device, reported and observed-desired in the cloud "
            f"in {took:.1f} s[/]"
        )

    def render(self) -> str:
        return "" if self.outcome is not None else self.status


def _intro(files: CloudDemoFiles, hub_url: str, workdir: Path) -> Panel:
    from kubeedge.cli.main import command_name

    kubeedge = command_name()
    text = (
        "[bold]kubeedge demo --with-cloud[/]: a cloud (files source, hub on "
        f"{hub_url}) and an edge (node {NODE}, the virtual mapper, three simulated devices), "
        "two processes.\n"
        "The table is the devices' status as the cloud holds it. From another terminal:\n"
        f"  [cyan]{kubeedge} device list --cloud -c {files.cloud_config}[/]\n"
        f"  [cyan]{kubeedge} device get --cloud demo/thermostat-office -c {files.cloud_config}[/]\n"
        f"Edit [cyan]{files.manifest}[/] (a desired value, a device): the cloud sends the change "
        "to the edge.\n"
        f"Logs: {workdir / 'cloud.log'}, {workdir / 'edge.log'}. Ctrl-C stops."
    )
    return Panel(text, expand=False)


async def run(workdir: Path, bus_port: int, duration: float | None) -> None:
    """The demo with a cloud: until Ctrl-C, SIGTERM or ``duration``; both processes stopped after."""
    hub_port = free_port()
    files = prepare(workdir, bus_port, hub_port)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=140)
    code, out, err = await _command("token", "create", NODE, "--ttl", "7d", "-c", str(files.cloud_config))
    if code != 0:
        raise KubeEdgeError(f"kubeedge token create {NODE} failed: {err.strip() or out.strip()}")
    files.token.write_text(out.strip() + "\n", encoding="utf-8")
    files.token.chmod(0o600)
    stop = stop_on_signals()
    if duration is not None:
        asyncio.get_running_loop().call_later(duration, stop.set)
    cloud = Process(
        "cloud", workdir / "cloud.log", "cloud running", "cloud", "run", "-c", str(files.cloud_config)
    )
    edge = Process("edge", workdir / "edge.log", "in sync with", "edge", "run", "-c", str(files.edge_config))
    tasks: list[asyncio.Task[None]] = []
    try:
        await cloud.start()
        await cloud.wait_ready(60)
        await edge.start()
        await edge.wait_ready(60)
        status = CloudStatus(files.cloud_config)
        showcase = Showcase(files.manifest, status)
        tasks = [asyncio.create_task(status.follow()), asyncio.create_task(showcase.run())]
        intro = _intro(files, f"ws://127.0.0.1:{hub_port}", workdir)
        await _show(console, intro, status, showcase, stop, (cloud, edge))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await edge.stop()
        await cloud.stop()


async def _show(
    console: Console,
    intro: Panel,
    status: CloudStatus,
    showcase: Showcase,
    stop: asyncio.Event,
    processes: tuple[Process, ...],
) -> None:
    def check() -> None:
        for process in processes:
            if process.exited:
                raise KubeEdgeError(process.failure("stopped unexpectedly"))

    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            while not stop.is_set():
                check()
                if showcase.outcome is not None and not showcase.shown:
                    live.console.print(showcase.outcome)  # once, above the refreshing table
                    showcase.shown = True
                live.update(Group(intro, status.table(), showcase.render()))
                await _wait(stop, 0.25)
        return
    console.print(intro)
    next_print = 0.0
    said = ""
    while not stop.is_set():
        check()
        if time.monotonic() >= next_print and status.devices:
            console.print(status.table())
            next_print = time.monotonic() + 5
        line = showcase.outcome or showcase.render()
        if line != said:  # each line once, the outcome too
            console.print(line)
            said = line
        await _wait(stop, 0.25)
    console.print(status.table())
