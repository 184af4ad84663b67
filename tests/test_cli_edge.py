"""The command line against a running edge: device list, device get, twin set, edge run, demo."""

import asyncio
import json
from pathlib import Path

from kubeedge_process import spawn, start_edge
from sample_devices import device, model


async def kubeedge(*args: str, timeout: float = 30) -> tuple[int, str]:
    process = await spawn(*args)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        raise AssertionError(
            f"kubeedge {' '.join(args)} did not finish in {timeout}s:\n{output.decode()}"
        ) from None
    return process.returncode, output.decode()


def client_config(handle, tmp_path: Path) -> Path:
    path = tmp_path / "cli.yaml"
    path.write_text(f"node: {handle.config.node}\nbus:\n  url: {handle.core.context.bus_url}\n")
    return path


async def test_device_list_get_and_twin_set(edge, tmp_path) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("one"), device("two"))
    await handle.wait_reported("default/one", "label", "hello")
    await handle.wait_reported("default/two", "label", "hello")
    config = str(client_config(handle, tmp_path))

    code, out = await kubeedge("device", "list", "-c", config)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.strip().startswith("default/")]
    assert len(lines) == 2
    assert "virtual" in lines[0] and "sensor-model" in lines[0] and "online" in lines[0]

    code, out = await kubeedge("twin", "set", "-c", config, "default/one", "setpoint", "17.5")
    assert code == 0, out
    assert "device reports setpoint=17.5 after" in out
    assert handle.reported("default/one", "setpoint") == "17.5"

    code, out = await kubeedge("device", "get", "-c", config, "default/one")
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.strip().startswith("setpoint"))
    assert row.split()[:4] == ["setpoint", "float", "17.5", "17.5"]

    code, out = await kubeedge("device", "get", "-c", config, "one", "-o", "json")
    assert code == 0, out
    answer = json.loads(out)
    assert answer["device"]["id"] == "default/one" and answer["device"]["state"] == "online"
    assert answer["twin"]["setpoint"]["expected"]["value"] == "17.5"
    assert answer["twin"]["setpoint"]["actual"]["value"] == "17.5"
    code, out = await kubeedge("device", "list", "-c", config, "-o", "json")
    assert code == 0, out
    assert sorted(d["device"]["id"] for d in json.loads(out)) == ["default/one", "default/two"]


async def test_twin_set_errors_are_clear(edge, tmp_path) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "label", "hello")
    config = str(client_config(handle, tmp_path))
    code, out = await kubeedge("twin", "set", "-c", config, "default/one", "setpoint", "99")
    assert code == 1
    assert "above the maximum 30" in out and "code 400" in out
    code, out = await kubeedge("twin", "set", "-c", config, "default/ghost", "setpoint", "9")
    assert code == 1
    assert "device default/ghost does not exist" in out


async def test_cli_without_a_running_edge_says_so(tmp_path) -> None:
    from kubeedge.bus import free_port

    path = tmp_path / "edge.yaml"
    path.write_text(f"node: edge-1\nbus:\n  url: mqtt://127.0.0.1:{free_port()}\n")
    started = asyncio.get_running_loop().time()
    code, out = await kubeedge("device", "list", "-c", str(path))
    assert code == 1
    assert "cannot connect to the MQTT broker at 127.0.0.1" in out
    assert "nothing is listening there" in out and "Is the edge running?" in out
    assert asyncio.get_running_loop().time() - started < 5  # at once, not after a timeout


async def test_edge_run_refuses_bad_config_naming_the_key(tmp_path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("node: edge-1\nmappers:\n  virtual:\n    connectTimeout: soon\n  nosuch: {}\n")
    code, out = await kubeedge("edge", "run", "-c", str(path))
    assert code == 1
    assert "mapper 'nosuch' is enabled in the configuration but not installed" in out
    path.write_text("node: edge-1\nmappers:\n  virtual:\n    connectTimeout: soon\n    colour: red\n")
    code, out = await kubeedge("edge", "run", "-c", str(path))
    assert code == 1
    assert "mappers.virtual.connectTimeout: Input should be a valid number" in out
    assert "mappers.virtual.colour: unknown key" in out


async def test_the_embedded_broker_listens_on_loopback_only(tmp_path) -> None:
    path = tmp_path / "edge.yaml"
    for host in ("0.0.0.0", "192.168.1.10", "[::]", "::1"):
        path.write_text(f"node: edge-1\nbus:\n  listen: '{host}:18832'\nmappers: {{}}\n")
        code, out = await kubeedge("edge", "run", "-c", str(path))
        assert code == 1, out
        assert "bus.listen:" in out and "is not a loopback address" in out, out
        assert "use an external broker" in out


async def test_edge_run_serves_devices_until_interrupted(tmp_path) -> None:
    from kubeedge.bus import free_port

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    import yaml

    (manifests / "a.yaml").write_text(yaml.safe_dump_all([model(), device("one")]))
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"node: edge-1\nbus:\n  listen: 127.0.0.1:{port}\ndataDir: data\nmanifests: manifests\nmappers:\n  virtual: {{}}\n"
    )
    process, line = await start_edge(config, timeout=20)
    try:
        assert b"edge edge-1 running" in line
        for _ in range(100):
            code, out = await kubeedge("device", "get", "-c", str(config), "default/one")
            if code == 0 and "hello" in out:
                break
            await asyncio.sleep(0.2)
        assert "hello" in out
    finally:
        process.send_signal(2)
        rest, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, rest.decode()
    assert (tmp_path / "data" / "twins.db").exists()  # relative paths are relative to the config file


async def test_demo_runs_and_shows_a_desired_value_land() -> None:
    code, out = await kubeedge("demo", "--duration", "6", timeout=60)
    assert code == 0, out
    assert "demo/thermostat-living-room" in out
    assert "landed on demo/thermostat-living-room" in out
    assert "kubeedge twin set -c" in out
