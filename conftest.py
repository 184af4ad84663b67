"""Applies to every test folder of the repository (the root pyproject's ``testpaths``): the
session gets its own home folder.

Tests never write into the user's home. Anything that resolves a default location (the edge's
data folder ``~/.local/share/kubeedge``, caches, configuration) resolves it under a temporary
home instead, and so do the processes the tests start, which inherit the environment. At the end
the real home is checked: anything that appeared or changed in kubeedge's folders there fails
the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The per-user base directories only: XDG_CONFIG_DIRS / XDG_DATA_DIRS are system-wide (pip reads
# its global configuration through them) and stay as they are.
USER_DIRS = {
    "XDG_DATA_HOME": ".local/share",
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}


def _kubeedge_entries(home: Path, environ: dict[str, str]) -> dict[Path, int]:
    """kubeedge's own folders in the home folder and its per-user XDG folders (``~/.kubeedge``,
    ``~/.local/share/kubeedge`` ...), and the files inside them, each with its modification time.
    (Developer caches with longer names, such as hack/test-cluster.sh's, are not kubeedge's.)"""
    folders = {home, *(Path(environ.get(var) or home / rel) for var, rel in USER_DIRS.items())}
    found: dict[Path, int] = {}
    for folder in folders:
        for entry in (folder / "kubeedge", folder / ".kubeedge"):
            if not entry.exists():
                continue
            inside = entry.rglob("*") if entry.is_dir() else ()
            for path in (entry, *inside):
                try:
                    found[path] = path.stat().st_mtime_ns
                except OSError:
                    continue
    return found


class HomeIsolation:
    """Points HOME and the XDG user folders at a temporary home for the session."""

    def __init__(self) -> None:
        self.real_environ = dict(os.environ)
        self.real_home = Path(os.path.expanduser("~"))
        self.before = _kubeedge_entries(self.real_home, self.real_environ)
        self.home = Path(tempfile.mkdtemp(prefix="kubeedge-test-home-"))
        os.environ["HOME"] = str(self.home)
        for var, rel in USER_DIRS.items():
            (self.home / rel).mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(self.home / rel)

    def appeared(self) -> set[Path]:
        """What is new or changed since the session started."""
        now = _kubeedge_entries(self.real_home, self.real_environ)
        return {path for path, mtime in now.items() if self.before.get(path) != mtime}

    def close(self) -> None:
        for var in ("HOME", *USER_DIRS):
            if var in self.real_environ:
                os.environ[var] = self.real_environ[var]
            else:
                os.environ.pop(var, None)
        shutil.rmtree(self.home, ignore_errors=True)


HOME_KEY = pytest.StashKey[HomeIsolation]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[HOME_KEY] = HomeIsolation()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    isolation = session.config.stash.get(HOME_KEY, None)
    appeared = isolation.appeared() if isolation is not None else set()
    if appeared:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "tests wrote outside their temporary folders: " + ", ".join(map(str, sorted(appeared)))
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(message, red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    isolation = config.stash.get(HOME_KEY, None)
    if isolation is not None:
        isolation.close()
        del config.stash[HOME_KEY]


@pytest.fixture(scope="session")
def home_isolation(pytestconfig: pytest.Config) -> HomeIsolation:
    """The session's temporary home and the real one it stands in for."""
    return pytestconfig.stash[HOME_KEY]
