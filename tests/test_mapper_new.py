"""`kubeedge mapper new`: the generated distribution installs into a fresh venv, its tests (the
conformance suite) pass, it is listed, and an edge with it enabled reports its device's values."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubeedge.bus import free_port
from kubeedge.cli import cli
from kubeedge.testing.conformance import MapperConformance
from kubeedge.testing.venv import overlay_venv, pip_install

CONFORMANCE_TESTS = sum(1 for name in dir(MapperConformance) if name.startswith("test_"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scaffold")
    result = CliRunner().invoke(cli, ["mapper", "new", "acme-plc", "--dest", str(root)])
    assert result.exit_code == 0, result.output
    dist = root / "kubeedge-mapper-acme-plc"
    python = overlay_venv(root / "venv")
    pip_install(python, dist)
    return dist, python


def run(
    python: Path, *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def test_generated_files(generated: tuple[Path, Path]) -> None:
    dist, _ = generated
    names = {
        str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert {
        "pyproject.toml",
        "README.md",
        "src/kubeedge_mapper_acme_plc/driver.py",
        "src/kubeedge_mapper_acme_plc/plugin.py",
        "src/kubeedge_mapper_acme_plc/simulator.py",
        "tests/conftest.py",
        "tests/test_conformance.py",
        "examples/acme-plc-device.yaml",
    } <= names
    pyproject = (dist / "pyproject.toml").read_text()
    assert 'acme-plc = "kubeedge_mapper_acme_plc.plugin"' in pyproject
    assert (
        "class AcmePlcDriver(Driver[AcmePlcConfig, AcmePlcVisitor])"
        in (dist / "src/kubeedge_mapper_acme_plc/driver.py").read_text()
    )


def test_generated_tests_pass_in_a_fresh_venv(generated: tuple[Path, Path]) -> None:
    dist, python = generated
    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=dist, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{CONFORMANCE_TESTS} passed" in result.stdout


def test_generated_mapper_is_listed_and_loads(generated: tuple[Path, Path], tmp_path: Path) -> None:
    _, python = generated
    config = tmp_path / "edge.yaml"
    config.write_text("mappers:\n  acme-plc: {}\n")
    result = run(python, "-m", "kubeedge", "mapper", "list", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.split() and line.split()[0] == "acme-plc")
    assert "kubeedge-mapper-acme-plc" in row and "yes" in row and "loaded" in row


def test_an_edge_serves_the_generated_mappers_example(generated: tuple[Path, Path], tmp_path: Path) -> None:
    dist, python = generated
    device_port = free_port()
    simulator = subprocess.Popen(
        [str(python), "-m", "kubeedge_mapper_acme_plc.simulator", "--port", str(device_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    example = (
        (dist / "examples" / "acme-plc-device.yaml").read_text().replace("port: 7700", f"port: {device_port}")
    )
    (manifests / "device.yaml").write_text(example)
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node": "edge-1",
                "bus": {"listen": f"127.0.0.1:{free_port()}"},
                "dataDir": "data",
                "manifests": "manifests",
                "mappers": {"acme-plc": {}},
            }
        )
    )
    edge = subprocess.Popen(
        [str(python), "-m", "kubeedge", "edge", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "simulated" in simulator.stdout.readline()
        deadline = time.monotonic() + 60
        output = ""
        while time.monotonic() < deadline:
            result = run(
                python, "-m", "kubeedge", "device", "get", "-c", str(config), "default/acme-plc-1", timeout=30
            )
            output = result.stdout + result.stderr
            if "21.5" in output and "set by the manifest" in output.split("label", 1)[-1].split("\n")[0]:
                break
            time.sleep(0.5)
        temperature = next(line for line in output.splitlines() if line.strip().startswith("temperature"))
        assert temperature.split()[:4] == ["temperature", "float", "-", "21.5"], output
        label = next(line for line in output.splitlines() if line.strip().startswith("label"))
        assert label.count("set by the manifest") == 2, output  # desired, and reported back by the device
    finally:
        edge.terminate()
        simulator.terminate()
        edge.wait(20)
        simulator.wait(20)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Acme", "lower-case"),
        ("acme_plc", "hyphens"),
        ("1acme", "starting with a letter"),
        ("acme--plc", "single hyphens"),
        ("a" * 40, "longer than 32"),
        ("core", "reserved"),
        ("virtual", "already installed"),
    ],
)
def test_bad_names_are_refused_with_the_rule(name: str, words: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["mapper", "new", name, "--dest", str(tmp_path)])
    assert result.exit_code != 0
    assert words in result.output
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "kubeedge-mapper-acme" / "src").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["mapper", "new", "acme", "--dest", str(tmp_path)])
    assert result.exit_code != 0
    assert "exists and is not empty" in result.output
