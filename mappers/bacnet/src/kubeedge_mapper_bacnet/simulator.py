"""Simulated BACnet/IP devices (real bacpypes3 device applications on loopback), for tests, the
benchmark and trying things.

``python -m kubeedge_mapper_bacnet.simulator --port 47809 --instance 1001`` serves one device
with an analog value (a commandable setpoint), an analog input, a binary output, a multi-state
value, a large analog value, a character string value and an octet string value.

Every application binds its own port: bacpypes3 (0.0.110) treats a request to any 127.x address
on its own port as addressed to itself, and binds with SO_REUSEPORT, so two applications on one
port would share its traffic without an error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, ClassVar

from bacpypes3.app import Application
from bacpypes3.basetypes import PriorityValue
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryOutputObject
from bacpypes3.local.cmd import Commandable
from bacpypes3.local.multistate import MultiStateValueObject
from bacpypes3.local.object import Object as LocalObject
from bacpypes3.object import CharacterStringValueObject as _CharacterStringValueObject
from bacpypes3.object import LargeAnalogValueObject as _LargeAnalogValueObject
from bacpypes3.object import OctetStringValueObject as _OctetStringValueObject
from bacpypes3.primitivedata import OctetString

from kubeedge.testing.conformance import BadConfig, DeviceSimulator, Point

log = logging.getLogger(__name__)
VENDOR_ID = 999


class CharacterStringValueObject(Commandable, LocalObject, _CharacterStringValueObject):
    """A commandable character string value (bacpypes3 has no local one)."""


class LargeAnalogValueObject(Commandable, LocalObject, _LargeAnalogValueObject):
    """A commandable large analog value: a double-precision presentValue."""


class OctetStringValueObject(LocalObject, _OctetStringValueObject):
    """An octet string value (not commandable: written directly)."""

    notificationClass = None  # the type has no such property; bacpypes3's local object asks for it


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody has bound now (bacpypes3's SO_REUSEPORT would not say if one had)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _namespace(name: str, instance: int, address: str, bbmd: bool = False) -> argparse.Namespace:
    return argparse.Namespace(
        name=name,
        instance=instance,
        address=address,
        network=0,
        vendoridentifier=VENDOR_ID,
        foreign=None,
        ttl=30,
        bbmd=[address] if bbmd else None,  # its own BBMD: accepts foreign-device registrations
    )


def standard_objects() -> list[Any]:
    """The objects of a simulated device: one of each kind the mapper's tests use."""
    flags = [0, 0, 0, 0]
    return [
        AnalogValueObjectCmd(
            objectIdentifier=("analogValue", 1),
            objectName="setpoint",
            presentValue=21.5,
            relinquishDefault=20.0,
            covIncrement=0.5,
            units="degreesCelsius",
            statusFlags=flags,
        ),
        AnalogInputObject(
            objectIdentifier=("analogInput", 1),
            objectName="room-temperature",
            presentValue=215.0,
            covIncrement=0.0,
            units="degreesCelsius",
            statusFlags=flags,
        ),
        BinaryOutputObject(
            objectIdentifier=("binaryOutput", 1),
            objectName="fan",
            presentValue="inactive",
            relinquishDefault="inactive",
            polarity="normal",
            statusFlags=flags,
        ),
        MultiStateValueObject(
            objectIdentifier=("multiStateValue", 1),
            objectName="mode",
            presentValue=2,
            numberOfStates=4,
            statusFlags=flags,
        ),
        LargeAnalogValueObject(
            objectIdentifier=("largeAnalogValue", 1),
            objectName="energy",
            presentValue=1234.125,
            relinquishDefault=0.0,
            units="kilowattHours",
            statusFlags=flags,
        ),
        CharacterStringValueObject(
            objectIdentifier=("characterstringValue", 1),
            objectName="label",
            presentValue="pump A",
            relinquishDefault="",
            statusFlags=flags,
        ),
        OctetStringValueObject(
            objectIdentifier=("octetstringValue", 1),
            objectName="tag",
            presentValue=OctetString(b"\x01\x02\x03\x04"),
            statusFlags=flags,
        ),
    ]


class BacnetDevice:
    """One simulated BACnet/IP device: a bacpypes3 application with objects, on a loopback port.

    It can stop and start again on the same port (a restart: subscriptions are forgotten), hide
    objects (reads answer ``object: unknown-object``) and counts the datagrams it sends and
    receives.
    """

    def __init__(
        self,
        instance: int = 1001,
        port: int = 0,
        host: str = "127.0.0.1",
        objects: list[Any] | None = None,
        name: str | None = None,
        bbmd: bool = False,
    ) -> None:
        self.instance = instance
        self.host = host
        self.port = port or free_udp_port()
        self.name = name or f"device-{instance}"
        self.model_name = "kubeedge-simulated-ahu"
        self.bbmd = bbmd
        """Also a BBMD: a client registered with it as a foreign device can broadcast Who-Is."""
        self.read_multiple = True
        """False: the device rejects ReadPropertyMultiple (unrecognized-service), as small ones do."""
        self.objects: dict[tuple[str, int], Any] = {}
        for obj in objects if objects is not None else standard_objects():
            object_type, object_instance = obj.objectIdentifier
            self.objects[(str(object_type), int(object_instance))] = obj
        self.hidden: set[tuple[str, int]] = set()
        self.received = 0
        self.sent = 0
        self.app: Application | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.app is not None

    async def start(self) -> BacnetDevice:
        if self.app is not None:
            return self
        app = Application.from_args(_namespace(self.name, self.instance, self.address, self.bbmd))
        app.device_object.modelName = self.model_name
        if not self.read_multiple:
            # bacpypes3 answers a service it has no do_<Service> method for with a Reject
            app.do_ReadPropertyMultipleRequest = None
        for key, obj in self.objects.items():
            if key not in self.hidden:
                app.add_object(obj)
        for link_layer in app.link_layers.values():
            self._count(link_layer.server)
            # bacpypes3 binds the socket in a task; a stop() before it is bound would leave the
            # socket open (and answering) once the task binds it
            await link_layer.server._local_transport_ready.wait()
        self.app = app
        return self

    def _count(self, server: Any) -> None:
        """Count datagrams at the socket's server: what goes on the wire."""
        send, receive = server.indication, server.confirmation

        async def indication(pdu: Any) -> None:
            self.sent += 1
            await send(pdu)

        async def confirmation(pdu: Any) -> None:
            self.received += 1
            await receive(pdu)

        server.indication, server.confirmation = indication, confirmation

    async def stop(self) -> None:
        if self.app is not None:
            app, self.app = self.app, None
            app.close()
            # objects keep a reference to their application; detach them so the next start owns them
            for obj in self.objects.values():
                obj._app = None
                if hasattr(obj, "_cov_detection"):
                    obj._cov_detection = None

    def subscriptions(self) -> int:
        """COV subscriptions the device holds now (bacpypes3 0.0.110 keeps them per object in
        ``_cov_detections``; its device object's activeCovSubscriptions is not wired up)."""
        if self.app is None:
            return 0
        return sum(len(d.cov_subscriptions) for d in self.app._cov_detections.values())

    def get(self, object_type: str, instance: int) -> Any:
        return self.objects[(object_type, instance)]

    def hide(self, object_type: str, instance: int, hidden: bool) -> None:
        """Make an object disappear (reads and writes answer ``object: unknown-object``) or return."""
        key = (object_type, instance)
        obj = self.objects[key]
        if hidden and key not in self.hidden:
            self.hidden.add(key)
            if self.app is not None:
                self.app.delete_object(obj)
        elif not hidden and key in self.hidden:
            self.hidden.discard(key)
            if self.app is not None:
                self.app.add_object(obj)

    def set_value(self, object_type: str, instance: int, value: Any, priority: int = 16) -> None:
        """Change a present value on the device side, as the physical process (or an operator at
        ``priority``, for a commandable object) would."""
        obj = self.get(object_type, instance)
        kind = type(obj.presentValue)
        typed = value if isinstance(value, kind) else kind(value)
        if isinstance(obj, Commandable):
            obj.priorityArray[priority - 1] = PriorityValue(typed)
        else:
            obj.presentValue = typed

    def priority_slot(self, object_type: str, instance: int, priority: int) -> Any:
        """What the priority array holds at ``priority`` (None: relinquished, Null)."""
        slot = self.get(object_type, instance).priorityArray[priority - 1]
        return None if slot.null is not None else getattr(slot, slot._choice)


# Where each conformance point lives on the device and how the device reads its value, written
# out from BACnet's rules, never with the driver's conversion: (object, instance, decode).
DECODE: dict[str, tuple[str, int, Callable[[Any], Any]]] = {
    "temperature": ("analog-input", 1, lambda v: float(v) * 0.1),
    "setpoint": ("analog-value", 1, float),
    "energy": ("large-analog-value", 1, float),
    "fan": ("binary-output", 1, lambda v: str(v) == "active"),
    "mode": ("multi-state-value", 1, int),
    "label": ("characterstring-value", 1, str),
    "tag": ("octetstring-value", 1, bytes),
}


class BacnetConformanceSimulator(DeviceSimulator):
    """The BACnet mapper's side of the kubeedge conformance suite."""

    protocol: ClassVar[str] = "bacnet"
    point_error: ClassVar[str | None] = "unknown-object"
    mapper_settings: ClassVar[dict[str, Any]] = {"readTimeout": 2, "maxBackoff": 1}

    def __init__(self) -> None:
        self.device = BacnetDevice()
        self.local_port = free_udp_port()

    async def start(self) -> None:
        await self.device.start()

    async def stop(self) -> None:
        await self.device.stop()

    def protocol_config(self) -> dict[str, Any]:
        return {
            "deviceInstance": self.device.instance,
            "address": self.device.address,
            "localAddress": f"127.0.0.1:{self.local_port}",
            "apduTimeout": 400,
            "apduRetries": 1,  # within the suite's readTimeout (2 s), and patient on a loaded machine
        }

    def points(self) -> list[Point]:
        return [
            Point(
                "temperature",
                "FLOAT",
                {"objectType": "analogInput", "objectInstance": 1, "scale": 0.1},
                21.5,
                changed=22.5,
            ),
            Point(
                "setpoint",
                "FLOAT",
                {"objectType": "analogValue", "objectInstance": 1, "priority": 8},
                21.5,
                writable=True,
                changed=23.5,
            ),
            Point(
                "energy",
                "DOUBLE",
                {"objectType": "largeAnalogValue", "objectInstance": 1, "priority": 8},
                1234.125,
                writable=True,
                changed=99.5,
            ),
            Point(
                "fan",
                "BOOLEAN",
                {"objectType": "binaryOutput", "objectInstance": 1, "priority": 5},
                False,
                writable=True,
                changed=True,
            ),
            Point(
                "mode",
                "INT",
                {"objectType": "multiStateValue", "objectInstance": 1},
                2,
                writable=True,
                changed=3,
            ),
            Point(
                "label",
                "STRING",
                {"objectType": "characterstringValue", "objectInstance": 1, "priority": 8},
                "pump A",
                writable=True,
                changed="pump B",
            ),
            Point(
                "tag",
                "BYTES",
                {"objectType": "octetstringValue", "objectInstance": 1},
                b"\x01\x02\x03\x04",
                writable=True,
                changed=b"\xde\xad\xbe\xef",
            ),
        ]

    async def device_value(self, point: str) -> Any:
        object_type, instance, read = DECODE[point]
        return read(self.device.get(object_type, instance).presentValue)

    async def set_device_value(self, point: str, value: Any) -> None:
        object_type, instance, _ = DECODE[point]
        if point == "temperature":
            value = value / 0.1
        elif point == "fan":
            value = "active" if value else "inactive"
        elif point == "tag":
            value = OctetString(value)
        spec = next(p for p in self.points() if p.name == point)
        self.device.set_value(object_type, instance, value, spec.visitor.get("priority", 16))

    async def fail_point(self, point: str, failing: bool) -> None:
        object_type, instance, _ = DECODE[point]
        self.device.hide(object_type, instance, failing)

    async def set_reachable(self, reachable: bool) -> None:
        await (self.device.start() if reachable else self.device.stop())

    def bad_configs(self) -> list[BadConfig]:
        return [
            BadConfig(
                {"deviceInstance": 1001, "address": "127.0.0.1:70000"}, "spec.protocol.configData.address"
            ),
            BadConfig(
                {"deviceInstance": 5000000, "address": self.device.address},
                "spec.protocol.configData.deviceInstance",
            ),
            BadConfig(
                {"objectType": "analogValu", "objectInstance": 1},
                "spec.properties[1].visitors.configData.objectType",
                point="setpoint",
            ),
            BadConfig(
                {"objectType": "analogValue", "objectInstance": 1, "priority": 17},
                "spec.properties[1].visitors.configData.priority",
                point="setpoint",
            ),
        ]


async def _main() -> None:
    parser = argparse.ArgumentParser(description="A simulated BACnet/IP device.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=47809)
    parser.add_argument("--instance", type=int, default=1001)
    args = parser.parse_args()
    device = await BacnetDevice(args.instance, args.port, args.host).start()
    objects = ", ".join(f"{t},{i}" for t, i in device.objects)
    print(f"simulated BACnet device {device.instance} on {device.address}: {objects}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main())
