"""Tests write only into temporary folders: the session runs with its own HOME and XDG user
folders (the root conftest.py), which the processes it starts inherit."""

import asyncio
import os
from pathlib import Path

from kubeedge.bus import free_port
from kubeedge_process import spawn


async def test_an_edge_with_the_default_data_dir_writes_into_the_session_home(
    home_isolation, tmp_path: Path
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(f"bus:\n  listen: 127.0.0.1:{free_port()}\n")  # no dataDir: the default one
    process = await spawn("edge", "run", "-c", str(config))
    assert process.stdout is not None
    output = b""
    while b" running" not in output:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, output.decode()
        output += line
    process.terminate()
    await process.communicate()
    assert process.returncode == 0
    data = Path(os.environ["XDG_DATA_HOME"]) / "kubeedge"
    assert data.is_relative_to(home_isolation.home)
    assert (data / "twins.db").is_file()
    assert not home_isolation.appeared()
