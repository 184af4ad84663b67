import shutil
import subprocess
import time

import pytest

from kubeedge_mapper_modbus.simulator import ModbusConformanceSimulator


@pytest.fixture
async def mapper_simulator():
    simulator = ModbusConformanceSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def pty_pair(tmp_path):
    """Two connected pseudo-terminals (socat): the device side and the edge side of a serial line."""
    socat = shutil.which("socat")
    if socat is None:
        raise RuntimeError("socat is not installed (hack/system-deps.sh)")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    process = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        if a.exists() and b.exists():
            break
        time.sleep(0.05)
    yield str(a), str(b)
    process.terminate()
    process.wait(5)
