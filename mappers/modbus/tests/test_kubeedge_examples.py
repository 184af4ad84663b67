"""KubeEdge's own Modbus example, unchanged, through `kubeedge validate` and the full edge.

The manifests are kubeedge/examples' temperature-sensor-demo (crds/temperature-model.yaml and
crds/temperature-instance.yaml) with its keys and values as published, less the comments; only
the two lines its README asks a user to replace (the device's ip and port) are filled in. Its
`temperature` is a FLOAT in one holding register x scale 0.1 (`dataType: float`, `limit: 1`,
KubeEdge's mapper-framework convention), its `temperature-switch` an INT on a coil.
"""

import asyncio
import logging
import sys

from kubeedge.testing import wait_for
from kubeedge_mapper_modbus.simulator import ModbusSimulator

MODEL = """\
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: temperature-model
  namespace: default
spec:
  protocol: modbus
  properties:
    - name: temperature
      description: actual temperature
      type: FLOAT
      accessMode: ReadWrite
      minimum: "0"
      maximum: "100.0"
      unit: "Celsius"
    - name: temperature-switch
      description: "the switch of device 0:off,1:on"
      type: INT
      accessMode: ReadWrite
"""

INSTANCE = """\
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: temperature-instance
spec:
  deviceModelRef:
    name: temperature-model
  protocol:
    protocolName: modbus
    configData:
      communicateMode: "TCP"
      port: "{port}"
      slaveID: 1
      ip: "127.0.0.1"
  nodeName: "kind-worker"
  properties:
    - name: temperature
      visitors:
        protocolName: modbus
        configData:
          dataType: "float"
          register: "HoldingRegister"
          offset: 0
          limit: 1
          scale: 0.1
          isSwap: false
          isRegisterSwap: false
          max: 100.0
          min: 1.0
      collectCycle: 10000
      reportCycle: 10000
      reportToCloud: true
    - name: temperature-switch
      collectCycle: 10000
      reportCycle: 10000
      reportToCloud: true
      desired:
        value: "1"
      visitors:
        protocolName: modbus
        configData:
          dataType: "int"
          register: "CoilRegister"
          offset: 0
          limit: 1
          scale: 1
          isSwap: false
          isRegisterSwap: false
  methods:
    - name: SwitchControl
      description: control the switch of the device
      propertyNames:
        - temperature-switch
    - name: UpdateTemperature
      description: update the temperature of the device
      propertyNames:
        - temperature
"""
KEY = "default/temperature-instance"


async def kubeedge_validate(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubeedge",
        "validate",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_temperature_sensor_demo_validates_and_is_served_unchanged(edge, tmp_path, caplog) -> None:
    simulator = await ModbusSimulator(units=(1,)).start()
    try:
        await simulator.set(1, "HoldingRegister", 0, [235])  # 23.5 °C
        manifests = tmp_path / "demo"
        manifests.mkdir()
        (manifests / "temperature-model.yaml").write_text(MODEL)
        (manifests / "temperature-instance.yaml").write_text(INSTANCE.format(port=simulator.port))
        status, output = await kubeedge_validate("-f", str(manifests))
        assert status == 0, output
        assert "2 object(s) valid" in output, output

        caplog.set_level(logging.INFO, logger="kubeedge_mapper_modbus.driver")
        # the demo's node; the manifest is served by the edge it names
        handle = await edge(mappers={"modbus": {"readTimeout": 3, "maxBackoff": 1}}, node="kind-worker")
        for path in manifests.iterdir():
            (handle.manifests / path.name).write_text(path.read_text())
        await handle.wait_reported(KEY, "temperature", "23.5")
        assert handle.error(KEY, "temperature") == ""  # no "limit 1 is too small" refusal
        # the switch's desired value from the manifest, written to the coil and read back as an INT
        await handle.wait_reported(KEY, "temperature-switch", "1")
        assert (await simulator.get(1, "CoilRegister", 0, 1))[0] is True

        client = await handle.client()
        await client.set_desired(KEY, "temperature", "24.1")
        await handle.wait_reported(KEY, "temperature", "24.1")
        assert await simulator.get(1, "HoldingRegister", 0, 1) == [241]
        await client.set_desired(KEY, "temperature-switch", "0")
        await handle.wait_reported(KEY, "temperature-switch", "0")
        assert (await simulator.get(1, "CoilRegister", 0, 1))[0] is False

        notes = [r.getMessage() for r in caplog.records if "mapper-framework convention" in r.getMessage()]
        assert notes == [
            f"device {KEY} property temperature: dataType float with limit 1 read as one unsigned"
            " 16-bit register x scale 0.1 (KubeEdge mapper-framework convention); use limit 2 for"
            " IEEE float32"
        ]
    finally:
        await simulator.stop()


async def test_a_value_the_register_cannot_hold_is_shown_on_the_twin(edge) -> None:
    simulator = await ModbusSimulator(units=(1,)).start()
    try:
        await simulator.set(1, "HoldingRegister", 0, [235])
        handle = await edge(mappers={"modbus": {"readTimeout": 3, "maxBackoff": 1}}, node="kind-worker")
        (handle.manifests / "model.yaml").write_text(MODEL.replace('maximum: "100.0"', 'maximum: "10000"'))
        instance = INSTANCE.format(port=simulator.port).replace("max: 100.0", "max: 10000.0")
        (handle.manifests / "instance.yaml").write_text(instance)
        await handle.wait_reported(KEY, "temperature", "23.5")
        client = await handle.client()
        await client.set_desired(KEY, "temperature", "7000")  # 70000 does not fit in 16 bits
        await wait_for(
            lambda: (
                "property temperature: cannot write 7000.0 to HoldingRegister 0 as uint16: 7000.0 does"
                " not fit in uint16 (0..65535); 70000 after scale 0.1" in handle.error(KEY, "temperature")
            ),
            what="range error on the twin",
        )
        assert await simulator.get(1, "HoldingRegister", 0, 1) == [235]
        assert not any("Write" in name and "Coil" not in name for _, name in simulator.requests)
    finally:
        await simulator.stop()
