"""`make test` on a fresh machine: hack/system-deps.sh installs the missing system packages when
that needs no password (root, or password-less sudo), and otherwise stops the run before lint
with the one command to run. apt-get and sudo are stand-ins here (the test must not install
anything); what is under test is the script's and the Makefile's decisions."""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def bin_dir() -> Iterator[Path]:
    # Readable by an unprivileged user (pytest's tmp_path is private to its owner).
    folder = Path(tempfile.mkdtemp(prefix="kubeedge-system-deps-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _run(args: list[str], bin_dir: Path, *, unprivileged: bool) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SYSTEM_DEPS_PATH": str(bin_dir),  # where mosquitto, socat and git are looked for: not there
        "PYTHON": sys.executable,
    }
    if unprivileged and os.geteuid() == 0:
        args = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *args]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_without_root_or_sudo_make_test_stops_before_lint_with_the_command(bin_dir: Path) -> None:
    _tool(bin_dir, "sudo", "exit 1")  # sudo asks for a password
    _tool(bin_dir, "apt-get", f"echo apt-get was called >&2; touch {bin_dir}/apt-get-called; exit 1")
    result = _run(["make", "--no-print-directory", "test"], bin_dir, unprivileged=True)
    assert result.returncode != 0
    assert "install them with:  sudo apt-get install -y mosquitto socat git" in result.stderr
    assert "ruff" not in result.stdout + result.stderr  # stopped before lint
    assert not (bin_dir / "apt-get-called").exists()


def test_as_root_or_with_password_less_sudo_the_missing_packages_are_installed(bin_dir: Path) -> None:
    calls = bin_dir / "calls"
    _tool(bin_dir, "sudo", '[ "$1" = -n ] && shift; exec "$@"')
    _tool(bin_dir, "apt-get", f'echo "$*" >> {calls}')
    result = _run(["hack/system-deps.sh"], bin_dir, unprivileged=False)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends mosquitto socat git",
    ]


def test_check_only_reports(bin_dir: Path) -> None:
    calls = bin_dir / "calls"
    _tool(bin_dir, "apt-get", f'echo "$*" >> {calls}')
    result = _run(["hack/system-deps.sh", "--check"], bin_dir, unprivileged=False)
    assert result.returncode == 1
    assert "missing system packages: mosquitto socat git" in result.stderr
    assert not calls.exists()


def test_nothing_missing_is_quiet() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["hack/system-deps.sh", "--check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "")
