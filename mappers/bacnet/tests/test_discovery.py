"""Discovery against real bacpypes3 devices on loopback: Who-Is, object lists, names, units, and
manifests that pass `kubeedge validate` and serve the devices unchanged."""

from pathlib import Path

import yaml
from click.testing import CliRunner

from kubeedge.cli import cli
from kubeedge_mapper_bacnet.discovery import discover, manifests
from kubeedge_mapper_bacnet.simulator import BacnetDevice, free_udp_port


async def test_discovered_devices_become_manifests_that_validate_and_serve(edge, tmp_path: Path) -> None:
    ahu = await BacnetDevice(1001, name="AHU 1 Controller").start()
    other = await BacnetDevice(1002).start()
    try:
        local = f"127.0.0.1:{free_udp_port()}"
        found = await discover(
            [ahu.address, other.address, "127.0.0.1:9"], local_address=free_local(), timeout=1
        )
        assert [(d.instance, d.address) for d in found] == [(1001, ahu.address), (1002, other.address)]
        objects = {(o.object_type, o.instance): o for o in found[0].objects}
        assert objects["analog-value", 1].name == "setpoint"
        assert objects["analog-value", 1].units == "degrees-celsius"
        assert objects["binary-output", 1].units is None  # binary objects have no units

        # only the devices in the range answer
        assert [
            d.instance
            for d in await discover([ahu.address, other.address], 1002, 1002, free_local(), timeout=1)
        ] == [1002]

        written = manifests(found, namespace="building-7", local_address=local)
        assert [name for name, _ in written] == ["ahu-1-controller.yaml", "device-1002.yaml"]
        for name, documents in written:
            (tmp_path / name).write_text(yaml.safe_dump_all(documents, sort_keys=False))
        result = CliRunner().invoke(cli, ["validate", "-f", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert "not checked" not in result.output

        model, _ = written[0][1]
        props = {p["name"]: p for p in model["spec"]["properties"]}
        assert props["setpoint"] == {
            "name": "setpoint",
            "type": "FLOAT",
            "accessMode": "ReadWrite",
            "unit": "degrees-celsius",
            "description": "setpoint (analog-value,1)",
        }
        assert props["room-temperature"]["accessMode"] == "ReadOnly"
        assert {p["name"]: p["type"] for p in model["spec"]["properties"]} == {
            "setpoint": "FLOAT",
            "room-temperature": "FLOAT",
            "fan": "BOOLEAN",
            "mode": "INT",
            "energy": "DOUBLE",
            "label": "STRING",
            "tag": "BYTES",
        }

        # applied unchanged, they serve the device
        handle = await edge(mappers={"bacnet": {"readTimeout": 2}})
        handle.write_manifest("ahu.yaml", *written[0][1])
        await handle.wait_reported("building-7/ahu-1-controller", "setpoint", "21.5")
        await handle.wait_reported("building-7/ahu-1-controller", "room-temperature", "215")  # by COV
        await handle.wait_reported("building-7/ahu-1-controller", "label", "pump A")
    finally:
        await ahu.stop()
        await other.stop()


def free_local() -> str:
    return f"127.0.0.1:{free_udp_port()}"
