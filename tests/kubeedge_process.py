"""The `kubeedge` command as its own process, as a user runs it (for tests of the CLI and of
whole edges: signals, restarts, output)."""

import asyncio
import os
import sys
from pathlib import Path

ENV = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


async def spawn(*args: str) -> asyncio.subprocess.Process:
    """``kubeedge ARGS`` with stdout and stderr together on ``process.stdout``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubeedge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=ENV,
    )


async def start_edge(config: Path, timeout: float = 30) -> tuple[asyncio.subprocess.Process, bytes]:
    """``kubeedge edge run -c CONFIG``, once it has said it is running; that line with it (log
    lines before it are skipped)."""
    process = await spawn("edge", "run", "-c", str(config))
    assert process.stdout is not None
    seen = b""
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = await process.stdout.readline()
                seen += line
                assert line, f"the edge exited before it said it was running:\n{seen.decode()}"
                if b"running" in line:
                    return process, line
    except BaseException:
        # Never left running behind a failed test (nobody else holds the process yet).
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
