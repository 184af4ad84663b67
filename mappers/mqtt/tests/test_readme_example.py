"""The README's complete example, run as written (only the port changed): the edge with the
mapper, the simulated devices, `device list`, `twin set`."""

import json
import subprocess
import sys
import time
from pathlib import Path

from kubeedge.testing import free_port

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KUBEEDGE = [sys.executable, "-m", "kubeedge"]


def test_the_readme_example(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "examples"
    folder.mkdir()
    for source in EXAMPLES.glob("*.yaml"):
        (folder / source.name).write_text(source.read_text().replace("1883", str(port)))
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert "kubeedge edge run -c edge.yaml &" in readme
    assert "python -m kubeedge_mapper_mqtt.simulator --broker mqtt://127.0.0.1:1883 &" in readme

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*KUBEEDGE, *args], cwd=folder, capture_output=True, text=True, timeout=60)

    validated = run("validate", "-f", ".")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    edge = subprocess.Popen([*KUBEEDGE, "edge", "run", "-c", "edge.yaml"], cwd=folder, stderr=subprocess.PIPE)
    simulator = None
    try:
        deadline = time.monotonic() + 30
        while True:  # the edge's broker is up
            listed = run("device", "list", "-c", "edge.yaml", "-o", "json")
            if listed.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        simulator = subprocess.Popen(
            [sys.executable, "-m", "kubeedge_mapper_mqtt.simulator", "--broker", f"mqtt://127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
        )
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            listed = run("device", "list", "-c", "edge.yaml", "-o", "json")
            if listed.returncode == 0:
                states = {d["device"]["id"]: d["device"].get("state") for d in json.loads(listed.stdout)}
                if len(states) == 4 and set(states.values()) == {"online"}:
                    break
            time.sleep(0.3)
        assert states == {
            "default/hall-sensor": "online",
            "default/kettle-plug": "online",
            "default/living-room-lamp": "online",
            "default/office-thermostat": "online",
        }
        result = run("twin", "set", "-c", "edge.yaml", "default/kettle-plug", "power", "true")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "reports power=true" in result.stdout + result.stderr
    finally:
        for process in (simulator, edge):
            if process is not None:
                process.terminate()
                process.wait(15)
