"""The benchmarks keep working (a short run; their figures are reported by hand, not asserted)."""

import subprocess
import sys
from pathlib import Path

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
