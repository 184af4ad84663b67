"""A real Kubernetes API server for the tests: ``hack/test-cluster.sh up`` once per session.

kube-apiserver 1.20.2 and etcd on free loopback ports with throwaway certificates, the CRDs
installed, and kubectl 1.20.2 beside them (the script builds them from Debian's packages into a
cache the first time: ``make test`` and ``.ci/run`` build it before the tests, so the tests only
start it). Never skipped: without the binaries the fixture builds them.

The cache is ``$KUBEEDGE_CLUSTER_CACHE``, else the real user's ``~/.cache/kubeedge-test-cluster``
(from the environment before the session's home isolation: the tests' own HOME is temporary).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "hack" / "test-cluster.sh"
_names = itertools.count(1)


def cluster_cache(isolation: Any) -> str:
    """``isolation``: the root conftest's ``HomeIsolation`` (the real environment and home)."""
    real = isolation.real_environ
    if real.get("KUBEEDGE_CLUSTER_CACHE"):
        return real["KUBEEDGE_CLUSTER_CACHE"]
    base = real.get("XDG_CACHE_HOME") or str(isolation.real_home / ".cache")
    return str(Path(base) / "kubeedge-test-cluster")


@dataclass
class Cluster:
    """A running API server: its kubeconfig (cluster admin) and the kubectl that matches it."""

    folder: Path
    kubeconfig: Path
    kubectl_path: Path
    env: dict[str, str]

    def new_namespace(self, prefix: str = "t") -> str:
        """A fresh namespace (never deleted: without a controller-manager it would stay Terminating)."""
        name = f"{prefix}-{os.getpid()}-{next(_names)}"
        self.run_kubectl("create", "namespace", name)
        return name

    def run_kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    async def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl in a thread, so the test's event loop (and the processes it reads) go on."""
        return await asyncio.to_thread(self.run_kubectl, *args, input=input, check=check)

    def user(self, name: str, group: str = "") -> Path:
        """A kubeconfig for another identity (a client certificate with CN=name, O=group)."""
        done = subprocess.run(
            [str(SCRIPT), "user", str(self.folder), name, group],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return Path(done.stdout.strip().splitlines()[-1])

    def restart_apiserver(self) -> None:
        """Stop the API server and start it again on the same port and etcd (``kill`` then start)."""
        subprocess.run(
            [str(SCRIPT), "restart-apiserver", str(self.folder)], check=True, env=self.env, timeout=120
        )


@pytest.fixture(scope="session")
def kube_cluster(home_isolation: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("kube-cluster")
    cache = cluster_cache(home_isolation)
    env = {
        **os.environ,
        "KUBEEDGE_CLUSTER_CACHE": cache,
        "KUBEEDGE": str(Path(sys.executable).with_name("kubeedge")),
    }
    up = subprocess.run(
        [str(SCRIPT), "up", str(folder)], env=env, capture_output=True, text=True, timeout=1500
    )
    if up.returncode != 0:
        subprocess.run([str(SCRIPT), "down", str(folder)], env=env, timeout=60)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in folder.glob("*.log"))
        raise RuntimeError(f"test-cluster.sh up failed:\n{up.stderr}\n{logs}")
    kubeconfig = Path(up.stdout.strip().splitlines()[-1])
    try:
        yield Cluster(folder, kubeconfig, Path(cache) / "1.20.2" / "bin" / "kubectl", env)
    finally:
        subprocess.run([str(SCRIPT), "down", str(folder)], env=env, timeout=60)
