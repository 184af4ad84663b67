"""`kubeedge mapper new`: the generated distribution installs into a fresh venv, its tests (the
conformance suite) pass, it is listed, and an edge with it enabled reports its device's values.
Its code passes this project's ruff settings, and one generated at the repository root (as the
README shows) is left alone by git, lint and test collection.

Names here are ones no user would pick (``zz-scaffold-test``): a user's own ``acme`` at the root,
or installed into the venv, must not collide with them."""

import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubeedge.bus import free_port
from kubeedge.cli import cli
from kubeedge.mapper.scaffold import MAX_NAME
from kubeedge.testing.conformance import MapperConformance
from kubeedge.testing.venv import overlay_venv, pip_install

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE_TESTS = sum(1 for name in dir(MapperConformance) if name.startswith("test_"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scaffold")
    result = CliRunner().invoke(cli, ["mapper", "new", "zz-scaffold-test", "--dest", str(root)])
    assert result.exit_code == 0, result.output
    dist = root / "kubeedge-mapper-zz-scaffold-test"
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
        "src/kubeedge_mapper_zz_scaffold_test/driver.py",
        "src/kubeedge_mapper_zz_scaffold_test/plugin.py",
        "src/kubeedge_mapper_zz_scaffold_test/simulator.py",
        "tests/conftest.py",
        "tests/test_conformance.py",
        "examples/zz-scaffold-test-device.yaml",
    } <= names
    pyproject = (dist / "pyproject.toml").read_text()
    assert 'zz-scaffold-test = "kubeedge_mapper_zz_scaffold_test.plugin"' in pyproject
    assert (
        "class ZzScaffoldTestDriver(\n    Driver[ZzScaffoldTestConfig, ZzScaffoldTestVisitor],\n):"
        in (dist / "src/kubeedge_mapper_zz_scaffold_test/driver.py").read_text()
    )


def test_generated_tests_pass_in_a_fresh_venv(generated: tuple[Path, Path]) -> None:
    dist, python = generated
    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=dist, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{CONFORMANCE_TESTS} passed" in result.stdout


def test_generated_mapper_is_listed_and_loads(generated: tuple[Path, Path], tmp_path: Path) -> None:
    _, python = generated
    config = tmp_path / "edge.yaml"
    config.write_text("mappers:\n  zz-scaffold-test: {}\n")
    result = run(python, "-m", "kubeedge", "mapper", "list", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(
        line for line in result.stdout.splitlines() if line.split() and line.split()[0] == "zz-scaffold-test"
    )
    assert "kubeedge-mapper-zz-scaffold-test" in row and "yes" in row and "loaded" in row


def test_an_edge_serves_the_generated_mappers_example(generated: tuple[Path, Path], tmp_path: Path) -> None:
    dist, python = generated
    device_port = free_port()
    simulator = subprocess.Popen(
        [str(python), "-m", "kubeedge_mapper_zz_scaffold_test.simulator", "--port", str(device_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    example = (
        (dist / "examples" / "zz-scaffold-test-device.yaml")
        .read_text()
        .replace("port: 7700", f"port: {device_port}")
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
                "mappers": {"zz-scaffold-test": {}},
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
                python,
                "-m",
                "kubeedge",
                "device",
                "get",
                "-c",
                str(config),
                "default/zz-scaffold-test-1",
                timeout=30,
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
        ("zz_scaffold_test", "hyphens"),
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
    (tmp_path / "kubeedge-mapper-zz-scaffold-test" / "src").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["mapper", "new", "zz-scaffold-test", "--dest", str(tmp_path)])
    assert result.exit_code != 0
    assert "exists and is not empty" in result.output


def ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_generated_code_passes_the_projects_ruff_settings(tmp_path: Path) -> None:
    # The longest name allowed, and one of many short words: every line still fits and is formatted.
    for name in ["zz" + "x" * (MAX_NAME - 2), "zz-s-c-a-f-f-o-l-d-t-e-s-t"]:
        result = CliRunner().invoke(cli, ["mapper", "new", name, "--dest", str(tmp_path)])
        assert result.exit_code == 0, result.output
    config = str(REPO / "pyproject.toml")
    check = ruff("check", "--no-cache", "--config", config, ".", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = ruff("format", "--check", "--no-cache", "--config", config, ".", cwd=tmp_path)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_a_mapper_generated_at_the_repository_root_is_left_alone(tmp_path: Path) -> None:
    """The repository's git, ruff and pytest settings, in a copy of its root with a generated
    mapper beside them (one being written, with a lint error and a failing test)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())
    for testpath in settings["tool"]["pytest"]["ini_options"]["testpaths"]:
        (root / testpath).mkdir(parents=True)
    (root / "tests" / "test_here.py").write_text("def test_here() -> None:\n    pass\n")
    result = CliRunner().invoke(cli, ["mapper", "new", "zz-scaffold-test", "--dest", str(root)])
    assert result.exit_code == 0, result.output
    dist = root / "kubeedge-mapper-zz-scaffold-test"
    (dist / "src" / "kubeedge_mapper_zz_scaffold_test" / "wip.py").write_text("import os\n")
    (dist / "tests" / "test_wip.py").write_text("def test_wip() -> None:\n    raise AssertionError\n")

    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "kubeedge-mapper-" not in status and "tests/test_here.py" in status
    check = ruff("check", "--no-cache", ".", cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = ruff("format", "--check", "--no-cache", ".", cwd=root)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert "test_here.py::test_here" in collected.stdout and "test_wip" not in collected.stdout
