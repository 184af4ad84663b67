"""The commands as a user runs them: ``kubeedge cloud run`` (its own process, TLS), ``kubeedge token
create``, ``kubeedge device list/get --cloud``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from cloud_samples import device, model
from hub_client import HubClient, reported

ENV = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def kubeedge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeedge", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=60,
    )


def write_config(tmp_path: Path, tls_files: tuple[Path, Path]) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "plant.yaml").write_text(
        yaml.safe_dump_all([model(), device("meter", "edge-1", setpoint="12"), device("other", "edge-2")])
    )
    config = tmp_path / "cloud.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "tls": {"certFile": str(tls_files[0]), "keyFile": str(tls_files[1])},
                "dataDir": "data",  # relative to the file
                "source": {"kind": "files", "path": "manifests"},
            }
        )
    )
    return config


def test_token_create_prints_a_token_and_creates_the_secret_0600(tmp_path, tls_files) -> None:
    config = write_config(tmp_path, tls_files)
    done = kubeedge("token", "create", "edge-1", "--ttl", "1h", "-c", str(config))
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token)
    assert "token for node edge-1, valid until" in done.stderr
    secret = tmp_path / "data" / "token.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    bad = kubeedge("token", "create", "Edge_1", "-c", str(config))
    assert bad.returncode == 2
    assert "'Edge_1' is not a valid node name" in bad.stderr
    bad = kubeedge("token", "create", "edge-1", "--ttl", "soon", "-c", str(config))
    assert "--ttl 'soon': expected a duration like 90s, 30m, 24h or 7d" in bad.stderr


def test_cloud_run_refuses_a_plain_listen_beyond_loopback(tmp_path) -> None:
    config = tmp_path / "cloud.yaml"
    config.write_text("listen: 0.0.0.0:10000\nsource: {kind: files, path: .}\n")
    done = kubeedge("cloud", "run", "-c", str(config))
    assert done.returncode == 1
    assert "listen: 0.0.0.0 is not a loopback address and tls is not set" in done.stderr


def test_cloud_run_names_a_bad_source_key(tmp_path) -> None:
    config = tmp_path / "cloud.yaml"
    config.write_text("source: {kind: files, paht: .}\n")
    done = kubeedge("cloud", "run", "-c", str(config))
    assert done.returncode == 1
    assert "source.path: required key is missing" in done.stderr
    assert "source.paht: unknown key" in done.stderr


async def test_cloud_run_serves_an_edge_and_device_list_cloud_shows_its_reports(
    tmp_path, tls_files, client_tls
) -> None:
    config = write_config(tmp_path, tls_files)
    token = kubeedge("token", "create", "edge-1", "-c", str(config)).stdout.strip()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeedge", "cloud", "run", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=ENV,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, "cloud run exited"
                if "cloud running on" in line:
                    url = line.split("cloud running on ")[1].strip().replace("127.0.0.1", "localhost")
                    break
        assert url.startswith("wss://")
        client = await HubClient.open(url, "edge-1", token, client_tls)
        await client.sync()
        objects, _ = await client.until_synced()
        assert sorted(m.route.resource for m in objects) == [
            "device/default/meter",
            "devicemodel/default/sensor-model",
        ]
        message = await client.report(
            {
                "default/meter": {
                    "twins": {
                        "temperature": reported("21.5"),
                        "setpoint": {"observed_desired": "12", "observed_desired_at": 5, "type": "float"},
                    },
                    "state": "online",
                    "last_online_time": "2026-11-29T10:00:00Z",
                }
            }
        )
        assert (await client.answer_to(message)).route.operation == "ack"
        await client.close()
        listed = await asyncio.to_thread(kubeedge, "device", "list", "--cloud", "-c", str(config))
        assert listed.returncode == 0, listed.stderr
        meter = next(line for line in listed.stdout.splitlines() if "default/meter" in line)
        assert re.search(r"default/meter\s+edge-1\s+online\s+2026-11-29T10:00:00Z\s+2\s+1\s+\d", meter), meter
        assert re.search(r"default/other\s+edge-2\s+unknown", listed.stdout)
        got = await asyncio.to_thread(
            kubeedge, "device", "get", "--cloud", "meter", "-c", str(config), "-o", "json"
        )
        data = json.loads(got.stdout)
        assert data["node"] == "edge-1"
        assert data["desired"] == {"setpoint": "12"}
        assert data["status"]["twins"]["temperature"]["reported"] == "21.5"
        assert data["status"]["twins"]["setpoint"]["observed_desired"] == "12"
        table = await asyncio.to_thread(
            kubeedge, "device", "get", "--cloud", "default/meter", "-c", str(config)
        )
        setpoint = next(
            line.strip() for line in table.stdout.splitlines() if line.strip().startswith("setpoint")
        )
        assert re.search(r"setpoint\s+float\s+12\s+-\s+-\s+12\s+", setpoint), setpoint
    finally:
        process.terminate()
        await process.wait()
    assert process.returncode == 0


def test_device_list_without_cloud_is_still_the_edges(tmp_path) -> None:
    done = kubeedge("device", "list", "--help")
    assert "--cloud" in done.stdout
    assert "-A, --all" in done.stdout  # the edge's own options are all there
