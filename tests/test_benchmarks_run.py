"""The benchmarks keep working (a short run; their figures are reported by hand, not asserted)."""

import subprocess
import sys
from pathlib import Path

from kube_cluster import Cluster, kube_cluster  # noqa: F401  (the session fixture)

REPO = Path(__file__).resolve().parents[1]


def test_twin_pipeline_benchmark_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "hack" / "bench" / "twin_pipeline.py"),
            "--quick",
            "--brokers",
            "mosquitto,embedded",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "headline: mosquitto:" in result.stdout
    assert "updates/s persisted" in result.stdout


def test_modbus_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench" / "modbus.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "headline: batching reads" in result.stdout


def test_mqtt_device_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench" / "mqtt_device.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "values/s into the twin" in result.stdout.splitlines()[-1]


def test_soak_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench" / "soak.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "warm-up over: edge RSS" in result.stdout
    assert "headline: 500 updates/s offered," in result.stdout
    assert "for 0.333 min: edge RSS growth after warm-up" in result.stdout


def test_cloud_fanin_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench" / "cloud_fanin.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "cloud K=100 " in result.stdout
    assert "headline: 100 nodes connected in" in result.stdout


def test_bacnet_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench" / "bacnet.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "equal freshness (every value at most 1 s old):" in result.stdout
    assert "headline: at 1 s freshness with each value changing every 10 s, COV " in result.stdout


def test_k8s_status_benchmark_runs(kube_cluster: Cluster) -> None:  # noqa: F811
    """On the session's API server (the fixture's ``hack/test-cluster.sh up``), not one of its own."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "hack" / "bench" / "k8s_status.py"),
            "--quick",
            "--cluster",
            str(kube_cluster.folder),
        ],
        env=kube_cluster.env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "coalesced    40 devices online" in result.stdout, result.stdout
    assert "; desired round trip p50 " in result.stdout
    assert "headline: 40x4 values/s -> " in result.stdout


def test_bluetooth_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench" / "bluetooth.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "bleak alone (baseline)" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("headline: ")
    assert "values/s into the twin" in result.stdout


def test_zigbee_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench" / "zigbee.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "reports -> twin" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("headline: ")
    assert "reports/s into the twin" in result.stdout
