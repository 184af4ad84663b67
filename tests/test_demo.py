"""`kubeedge demo` as a user sees it: values formatted for reading, the desired value's outcome
said once, and a closing line when stopped with Ctrl-C (in a terminal, as `make demo` runs)."""

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import yaml

from kubeedge.cli.demo import shown_value
from kubeedge_process import ENV


def test_floats_are_shown_to_their_types_precision() -> None:
    # A float32 reading printed as a double carries noise beyond its 6-7 digits.
    assert shown_value("float", "22.452796936035156") == "22.4528"
    assert shown_value("float", "23.5") == "23.5"
    assert shown_value("float", "-0.000123456789") == "-0.000123457"
    assert shown_value("double", "3.4495056462299107") == "3.44950564622991"
    assert shown_value("double", "125006") == "125006"
    assert shown_value("float", "nan") == "nan"
    assert shown_value("float", "not a number") == "not a number"  # shown as it came


def test_bytes_are_shown_as_labelled_hex_or_base64() -> None:
    assert shown_value("bytes", "MTIzNDU2Nzg=") == "hex 3132333435363738"
    long = "AAECAwQFBgcICQoLDA0ODxAREhM="  # 20 bytes
    assert shown_value("bytes", long) == f"base64 {long} (20 bytes)"
    assert shown_value("bytes", "not base64!") == "not base64!"
    assert shown_value("int", "125006") == "125006"
    assert shown_value("string", "Good morning") == "Good morning"


def test_the_demo_says_landed_once_and_closes_on_ctrl_c() -> None:
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 160, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "kubeedge", "demo"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={k: v for k, v in ENV.items() if k != "COLUMNS"},
        start_new_session=True,
    )
    os.close(secondary)
    output = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the terminal closed with the process
                return
            if not data:
                return
            output.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while b"landed on" not in output and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert b"landed on" in output, output.decode(errors="replace")[-3000:]
        landed_at = len(output)
        # Several refreshes of the live table after the outcome.
        while len(output) < landed_at + 20_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
        os.close(primary)
    text = output.decode(errors="replace")
    assert text.count("✓ desired setpoint=23.5 landed on demo/thermostat-living-room") == 1, text[-3000:]
    last_line = text.rstrip().splitlines()[-1]
    assert "demo stopped: edge and broker shut down, its temporary folder removed." in last_line, text[-3000:]


def test_piped_output_says_each_line_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubeedge", "demo", "--duration", "9"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("DEVICE") >= 2  # the table was printed again after the outcome
    assert out.count("✓ desired setpoint=23.5 landed") == 1, out
    assert out.count("in 3 s the demo sets a desired value") == 1, out
    assert (
        out.rstrip().splitlines()[-1]
        == "demo stopped: edge and broker shut down, its temporary folder removed."
    )


def test_with_cloud_shows_the_status_the_cloud_holds_and_a_desired_value_landing(tmp_path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeedge",
            "demo",
            "--with-cloud",
            "--duration",
            "30",
            "--keep",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.count("status as the cloud holds it") >= 2, out
    # each device as the cloud holds it: node, state, reported values with their age
    assert re.search(
        r"demo/main-meter\s+│\s+demo\s+│\s+online\s+│\s+energy\s+│\s+│\s+\d+\s+│\s+[\d.]+s", out
    ), out
    landed = "✓ desired setpoint=23.5 set in the cloud's manifest landed on demo/thermostat-living-room"
    assert out.count(landed) == 1, out
    after = out[out.index(landed) :]
    # desired in the cloud's manifest, reported by the device, observed-desired in the cloud
    assert re.search(r"setpoint\s+│\s+23\.5\s+│\s+23\.5\s+│\s+[\d.]+s\s+│\s+23\.5\s+│", after), after
    manifest = yaml.safe_load_all((workdir / "cloud" / "manifests" / "devices.yaml").read_text())
    living_room = next(d for d in manifest if d["metadata"]["name"] == "thermostat-living-room")
    assert {"name": "setpoint", "desired": {"value": "23.5"}} in living_room["spec"]["properties"]
    assert "kubeedge device list --cloud -c" in out and str(workdir / "cloud" / "cloud.yaml") in out
    # both processes were stopped, each in its own way
    for log in ("cloud.log", "edge.log"):
        assert "stopping ..." in (workdir / log).read_text(), log
    assert not _processes_naming(workdir)  # nothing left running: cloud, edge, status reads
    assert out.rstrip().splitlines()[-1] == f"demo stopped: cloud and edge shut down, kept in {workdir}."


def _processes_naming(path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:  # it ended meanwhile
            continue
        if str(path) in args:
            found.append(args)
    return found
