"""A real Mosquitto broker for tests, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kubeedge.bus import free_port


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class Mosquitto:
    """``mosquitto`` as the edge bus runs it in production: ``max_queued_messages 0`` (its default
    of 1000 silently drops QoS 1 messages to a slow subscriber)."""

    def __init__(self, port: int | None = None, extra: str = "") -> None:
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto; hack/system-deps.sh)")
        conf = Path(self._dir.name) / "mosquitto.conf"
        anonymous = "" if "password_file" in self.extra else "allow_anonymous true\n"
        # As root, mosquitto switches to its own user, which cannot read the test's private files.
        anonymous += "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n{anonymous}max_queued_messages 0\n"
            f"persistence false\nlog_dest stderr\nlog_type error\n{self.extra}\n"
        )
        self.process = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not open port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
