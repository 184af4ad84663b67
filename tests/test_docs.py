"""docs/writing-a-mapper.md cannot go stale: its `# file:` blocks are assembled into a real
distribution, installed into a fresh venv, and its tests (the conformance suite) run; its
manifests are validated; its other Python block, the push example, runs in the mapper runtime
against a device that pushes."""

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubeedge.cli import cli
from kubeedge.testing.conformance import MapperConformance
from kubeedge.testing.venv import overlay_venv, pip_install

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-mapper.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(GUIDE.read_text())


CONFORMANCE_TESTS = sum(1 for name in dir(MapperConformance) if name.startswith("test_"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("guide")
    dist = root / "kubeedge-mapper-thermo"
    for _, body in blocks():
        first, _, _ = body.partition("\n")
        if first.startswith("# file: "):
            path = dist / first.removeprefix("# file: ").strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
    (dist / "src" / "kubeedge_mapper_thermo" / "__init__.py").touch()
    python = overlay_venv(root / "venv")
    pip_install(python, dist)
    return dist, python


def test_the_guide_has_the_files_of_a_mapper(built: tuple[Path, Path]) -> None:
    dist, _ = built
    for name in (
        "pyproject.toml",
        "src/kubeedge_mapper_thermo/plugin.py",
        "src/kubeedge_mapper_thermo/driver.py",
        "src/kubeedge_mapper_thermo/simulator.py",
        "tests/conftest.py",
        "tests/test_conformance.py",
        "examples/thermo-device.yaml",
    ):
        assert (dist / name).is_file(), name


def test_the_guides_mapper_passes_the_conformance_suite(built: tuple[Path, Path]) -> None:
    dist, python = built
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=dist,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{CONFORMANCE_TESTS} passed" in result.stdout


def test_the_guides_manifests_are_valid(built: tuple[Path, Path]) -> None:
    dist, python = built
    result = subprocess.run(
        [str(python), "-m", "kubeedge", "validate", "-f", str(dist / "examples")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 object(s) valid" in result.stdout


# Runs the guide's loose Python blocks (the push example, NotifyingDriver) in the mapper runtime,
# against a thermo device that pushes, with the guide's own manifests and a real edge.
PUSH_CHECK = r'''
import asyncio
import sys
from pathlib import Path

import yaml

from kubeedge.mapper.runtime import MapperRuntime
from kubeedge.testing import start_edge, wait_for

{snippets}


class PushingThermoDevice:
    """A thermo device that also pushes: WATCH, then EVENT lines now and at every change."""

    def __init__(self) -> None:
        self.values = {"live.temp": "215", "sp": "21"}
        self.polled: list[str] = []
        self.watchers: list[tuple[list[str], asyncio.StreamWriter]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def change(self, point: str, value: str) -> None:
        self.values[point] = value
        for points, writer in self.watchers:
            if point in points:
                writer.write(f"EVENT {point} {value}\n".encode())

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            command, *args = line.decode().split()
            if command == "WATCH":
                writer.write(b"OK\n")
                for point in args:
                    writer.write(f"EVENT {point} {self.values[point]}\n".encode())
                self.watchers.append((args, writer))
            elif command in ("GET", "MGET"):
                self.polled += args
                writer.write(("OK " + "\t".join(self.values[p] for p in args) + "\n").encode())
            else:
                writer.write(b"ERR 1 unknown command\n")
            await writer.drain()


async def main(workdir: Path, example: Path) -> None:
    device = PushingThermoDevice()
    port = await device.start()
    model, spec = yaml.safe_load_all(example.read_text())
    spec["spec"]["protocol"]["configData"]["port"] = port
    for prop in model["spec"]["properties"]:
        if prop["name"] == "temperature":
            prop["visitors"]["configData"]["point"] = "live.temp"
    edge = await start_edge(workdir, mappers={})  # the mapper runs beside it, as its own would
    bus = edge.core.context.new_bus_client("thermo")
    await bus.start()
    runtime = MapperRuntime(NotifyingDriver, bus, edge.config.node)
    try:
        await runtime.start()
        edge.write_manifest("thermo.yaml", model, spec)
        key = "default/thermo-1"
        await edge.wait_reported(key, "setpoint", "21")  # polled
        await edge.wait_reported(key, "temperature", "21.5")  # pushed on WATCH, scaled by 0.1
        device.change("live.temp", "223")
        await edge.wait_reported(key, "temperature", "22.3")  # pushed at the change
        device.change("live.temp", "warm")  # a bad pushed value marks the property, not the device
        await wait_for(lambda: "unreadable value 'warm'" in edge.error(key, "temperature"))
        assert edge.state(key) == "online", edge.state(key)
        assert "live.temp" not in device.polled, device.polled
    finally:
        await runtime.stop()
        await bus.stop()
        await edge.stop()
    print("pushed values reported")


asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
'''


def test_the_guides_push_example_reports_pushed_values(built: tuple[Path, Path], tmp_path: Path) -> None:
    dist, python = built
    loose = [body for lang, body in blocks() if lang == "python" and not body.startswith("# file: ")]
    assert loose, "expected the push example"
    script = tmp_path / "push_check.py"
    script.write_text(PUSH_CHECK.replace("{snippets}", "\n\n".join(loose)))
    result = subprocess.run(
        [str(python), str(script), str(tmp_path / "edge"), str(dist / "examples" / "thermo-device.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "pushed values reported" in result.stdout


def test_the_first_command_of_the_guide_works(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["mapper", "new", "thermo", "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "kubeedge-mapper-thermo" / "pyproject.toml").is_file()


def test_the_guides_run_section_works(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Section 7's commands, line by line (ports changed to free ones): the simulated device, the
    validation, an edge with the mapper in its process, and `device get` showing its twin.
    (Section 1's commands are what tests/test_mapper_new.py does.)"""
    import shutil
    import time

    from kubeedge.bus import free_port

    dist, python = built
    work = tmp_path / "kubeedge-mapper-thermo"
    shutil.copytree(dist / "examples", work / "examples")
    device_port, bus_port = str(free_port()), str(free_port())
    for name in ("edge.yaml", "thermo-device.yaml"):
        path = work / "examples" / name
        path.write_text(path.read_text().replace("7700", device_port).replace(":1883", f":{bus_port}"))
    section = GUIDE.read_text().split("## 7. Run it", 1)[1]
    commands = [
        line.split("  #")[0].strip()
        for lang, body in BLOCK.findall(section)
        if lang == "sh"
        for line in body.splitlines()
        if line.strip()
    ][:4]
    assert [c.split()[0:2] for c in commands] == [
        ["python", "-m"],
        ["kubeedge", "validate"],
        ["kubeedge", "edge"],
        ["kubeedge", "device"],
    ], commands

    def argv(command: str) -> list[str]:
        words = command.rstrip("&").replace("7700", device_port).split()
        return [str(python), "-m", *words[2:]] if words[0] == "python" else [str(python), "-m", *words]

    background = []
    try:
        simulator = subprocess.Popen(argv(commands[0]), cwd=work, stdout=subprocess.PIPE, text=True)
        background.append(simulator)
        assert simulator.stdout is not None and "simulated thermo device" in simulator.stdout.readline()
        validated = subprocess.run(argv(commands[1]), cwd=work, capture_output=True, text=True, timeout=60)
        assert validated.returncode == 0, validated.stdout + validated.stderr
        edge = subprocess.Popen(
            argv(commands[2]), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        background.append(edge)
        assert edge.stdout is not None
        # an edge logs at info: its start-up lines come before the "running" line
        assert any(line.startswith("edge ") for line in iter(edge.stdout.readline, ""))
        deadline = time.monotonic() + 30
        while True:
            shown = subprocess.run(argv(commands[3]), cwd=work, capture_output=True, text=True, timeout=30)
            row = [line for line in shown.stdout.splitlines() if line.strip().startswith("temperature")]
            if shown.returncode == 0 and row and "21.5" in row[0]:
                break
            assert time.monotonic() < deadline, shown.stdout + shown.stderr
            time.sleep(0.3)
    finally:
        for process in background:
            process.terminate()
            process.wait(10)
