"""A throwaway virtual environment layered over the current one, for tests that must ``pip
install`` a distribution for real (entry points, package data) without touching this one."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def overlay_venv(path: Path) -> Path:
    """Create a venv at ``path`` that also sees this environment's packages; return its python.

    Packages installed into it (``python -m pip install --no-deps --no-build-isolation ...``)
    land in its own site-packages, so they are found through entry points there only.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = sysconfig.get_paths()["purelib"]
    # addsitedir (not a plain path line) so the outer environment's own .pth files (editable
    # installs) are processed too.
    Path(site_dir, "outer-environment.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    return python


def pip_install(python: Path, *targets: Path | str) -> None:
    """Build and install distributions into the overlay venv, offline, with the outer build tools."""
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            *map(str, targets),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"pip install failed:\n{result.stdout}\n{result.stderr}")
