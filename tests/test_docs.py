"""docs/writing-a-mapper.md cannot go stale: its `# file:` blocks are assembled into a real
distribution, installed into a fresh venv, and its tests (the conformance suite) run; its
manifests are validated; its other Python blocks run against the installed package."""

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


def test_the_guides_other_python_blocks_run(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, python = built
    loose = [body for lang, body in blocks() if lang == "python" and not body.startswith("# file: ")]
    assert loose, "expected the push example"
    script = tmp_path / "snippets.py"
    script.write_text(
        "from kubeedge_mapper_thermo.driver import ThermoDriver\n\n"
        + "\n\n".join(loose)
        + "\n\nassert NotifyingDriver.supports_push()\n"
    )
    result = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_first_command_of_the_guide_works(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["mapper", "new", "thermo", "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "kubeedge-mapper-thermo" / "pyproject.toml").is_file()
