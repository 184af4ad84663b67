"""README's "Cloud + edge" commands, run as written: in a folder that looks like the repository's
(its `.venv` and `examples`), with bash, free ports instead of 10000 and the edge's 1883. The
`&` commands become processes of the test, each `sleep` is a wait for what the next command
should show, and `kill` is the test's SIGTERM: what a user pasting the block sees, without timing."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubeedge.bus import free_port
from kubeedge_process import ENV

ROOT = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"^## Cloud \+ edge\n.*?^```sh\n(.*?)^```", re.S | re.M)

EXPECTED = {
    # the command (a part of it) -> what its output must show once the edge has done its part
    "device list --cloud": r"default/thermostat\s+edge-1\s+online",
    "device get --cloud thermostat": r"setpoint\s+float\s+25\s+25\s+\S+ ago\s+25\s",
}


def commands(block: str) -> list[str]:
    """The block's commands: one a line, a heredoc with its lines."""
    out: list[str] = []
    lines = iter(block.splitlines())
    for line in lines:
        if not line.strip():
            continue
        heredoc = re.search(r"<<'(\w+)'", line)
        if heredoc:
            body = [line]
            for more in lines:
                body.append(more)
                if more == heredoc.group(1):
                    break
            out.append("\n".join(body))
        else:
            out.append(line)
    return out


def test_the_readmes_cloud_and_edge_commands_work_as_written(tmp_path: Path) -> None:
    block = SECTION.search((ROOT / "README.md").read_text()).group(1)
    hub, bus = free_port(), free_port()
    block = block.replace(":10000", f":{hub}").replace(
        "node: edge-1\n", f"node: edge-1\nbus: {{listen: 127.0.0.1:{bus}}}\n"
    )
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    background: list[tuple[subprocess.Popen[bytes], Path]] = []
    seen: dict[str, str] = {}
    try:
        for command in commands(block):
            bare = re.sub(r"\s+#.*$", "", command.splitlines()[0]).strip()
            if bare.startswith("sleep "):
                continue  # the next command is waited for instead
            if bare.startswith("kill "):
                for process, _ in background:
                    process.send_signal(signal.SIGTERM)
                for process, log in background:
                    assert process.wait(30) == 0, log.read_text()[-3000:]
                continue
            if bare.endswith("&"):
                log = tmp_path / f"background-{len(background)}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        ["bash", "-c", bare.removesuffix("&")],
                        cwd=tmp_path,
                        env=ENV,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                background.append((process, log))
                continue
            expected = next((v for k, v in EXPECTED.items() if k in bare), None)
            deadline = time.monotonic() + 60
            while True:
                done = subprocess.run(
                    ["bash", "-c", command], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60
                )
                output = done.stdout + done.stderr
                if done.returncode == 0 and (expected is None or re.search(expected, output)):
                    break
                assert expected is not None and time.monotonic() < deadline, f"{command}\n{output}"
                time.sleep(0.5)
            seen[bare] = output
    finally:
        for process, _ in background:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [k for k in EXPECTED if not any(k in c for c in seen)] == []  # each check ran
    assert (tmp_path / "try-cloud" / "edge-1.token").read_text().count(".") == 2  # a JWT
