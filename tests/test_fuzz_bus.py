"""The bus fuzzer's short form (hack/fuzz.py, a fixed budget): hostile messages against a running
edge on Mosquitto and on the embedded broker; the long form is `hack/fuzz.py --minutes N`."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_edge_survives_a_fixed_budget_of_hostile_bus_messages() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "fuzz.py"), "--targets", "bus", "--examples", "150"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # hypothesis prints the falsifying example whole (topics of 65 KB): the end says what failed
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "fuzz: no findings" in result.stdout
    assert "bus/mosquitto: 210 messages" in result.stdout and "bus/embedded: 210 messages" in result.stdout
