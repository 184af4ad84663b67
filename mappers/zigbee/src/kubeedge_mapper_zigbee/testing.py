"""Zigbee without hardware: emulated devices that speak ZDO/ZCL bytes, and an in-process radio.

:class:`EmulatedDevice` answers ZDO and ZCL requests with frames packed by hand from the ZCL and
ZDO specifications (``struct``, not zigpy's codec), so a test checks zigpy and the driver against
spec bytes, not against themselves. It lives on an :class:`Air` (a named, in-process piece of
802.15.4), which the coordinator reaches through :class:`EmulatedRadioApp`, a zigpy
``ControllerApplication`` whose NCP is the air: everything above ``send_packet`` and
``packet_received`` is real zigpy (interview, ZCL, TSN matching, reports, database). The mapper
uses it with ``mappers.zigbee: {radio: emulated, path: "emulated://NAME"}``.

:mod:`kubeedge_mapper_zigbee.xbee_emulator` puts the same air behind a software XBee coordinator
on a TCP port, for the unmodified zigpy-xbee radio library.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zigpy.application
import zigpy.config
import zigpy.device
import zigpy.endpoint
import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo.types as zdo_t

# ZCL data type ids (ZCL spec 2.6.2) and how their values are packed
BOOL, UINT8, UINT16, INT16, ENUM8, CHAR_STRING = 0x10, 0x20, 0x21, 0x29, 0x30, 0x42
_PACK = {BOOL: "<B", UINT8: "<B", UINT16: "<H", INT16: "<h", ENUM8: "<B"}
ANALOG = {UINT8, UINT16, INT16}
SUCCESS, UNSUP_CLUSTER_COMMAND, UNSUP_GENERAL_COMMAND, UNSUPPORTED_ATTRIBUTE = 0x00, 0x81, 0x82, 0x86
READ_ONLY, INVALID_DATA_TYPE, HARDWARE_FAILURE, UNSUPPORTED_CLUSTER = 0x88, 0x8D, 0xC0, 0xC3
HA_PROFILE = 0x0104


def pack_value(kind: int, value: Any) -> bytes:
    if kind == CHAR_STRING:
        raw = str(value).encode()
        return bytes([len(raw)]) + raw
    return struct.pack(_PACK[kind], int(value))


def unpack_value(kind: int, data: bytes) -> tuple[Any, bytes]:
    if kind == CHAR_STRING:
        return data[1 : 1 + data[0]].decode(), data[1 + data[0] :]
    size = struct.calcsize(_PACK[kind])
    return struct.unpack(_PACK[kind], data[:size])[0], data[size:]


@dataclass
class Attribute:
    kind: int
    value: Any
    writable: bool = False
    failing: bool = False
    """Reads answer HARDWARE_FAILURE (a sensor fault)."""


@dataclass
class Frame:
    """One APS frame sent by an emulated device."""

    src_ep: int
    dst_ep: int
    profile: int
    cluster: int
    data: bytes
    dst_nwk: int = 0x0000


@dataclass
class EmulatedDevice:
    """A Zigbee end device: endpoints of clusters of attributes, in the ZCL's own encoding."""

    ieee: str
    nwk: int
    manufacturer: str = "LabCo"
    model: str = "TH-Plug-1"
    clusters: dict[int, dict[int, dict[int, Attribute]]] = field(default_factory=dict)
    reporting: dict[tuple[int, int, int], tuple[int, int]] = field(default_factory=dict)
    """(endpoint, cluster, attribute) -> (min, max interval) configured by the coordinator."""
    requests: list[str] = field(default_factory=list)
    send: Callable[[EmulatedDevice, Frame], None] | None = None
    """How frames leave the device (set by the air it is on)."""
    asleep: bool = False
    """A sleepy device between wake-ups: frames reach it (its parent takes them) but it answers
    nothing."""
    _tsn: int = 0x40

    @classmethod
    def thermo_plug(cls, ieee: str = "00:0d:6f:00:0a:bc:de:f0", nwk: int = 0x1234) -> EmulatedDevice:
        """A plug with a thermometer: Basic, On/Off, Level Control, Temperature, Humidity."""
        device = cls(ieee=ieee, nwk=nwk)
        device.clusters[1] = {
            0x0000: {
                0x0000: Attribute(UINT8, 8),
                0x0004: Attribute(CHAR_STRING, device.manufacturer),
                0x0005: Attribute(CHAR_STRING, device.model),
                0x0007: Attribute(ENUM8, 1),
                0x0010: Attribute(CHAR_STRING, "kitchen", writable=True),
                0x0012: Attribute(BOOL, 1, writable=True),
            },
            0x0006: {0x0000: Attribute(BOOL, 0), 0x4001: Attribute(UINT16, 0, writable=True)},
            0x0008: {0x0000: Attribute(UINT8, 0)},
            0x0402: {0x0000: Attribute(INT16, 2150), 0x0001: Attribute(INT16, -4000)},
            0x0405: {0x0000: Attribute(UINT16, 4520)},
        }
        return device

    @property
    def ieee_bytes(self) -> bytes:
        """The address as sent on the air (little-endian)."""
        return bytes.fromhex(self.ieee.replace(":", ""))[::-1]

    def _next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    def _emit(self, frame: Frame) -> None:
        if self.send is not None:
            self.send(self, frame)

    def announce(self) -> None:
        """ZDO Device_annce (0x0013), broadcast after joining or rejoining."""
        payload = struct.pack("<BH", self._next_tsn(), self.nwk) + self.ieee_bytes + b"\x8e"
        self._emit(Frame(0, 0, 0x0000, 0x0013, payload, dst_nwk=0xFFFD))

    def set(self, endpoint: int, cluster: int, attribute: int, value: Any) -> None:
        """The physical process changed a value: a report goes out if reporting is configured."""
        attr = self.clusters[endpoint][cluster][attribute]
        attr.value = value
        if (endpoint, cluster, attribute) in self.reporting:
            record = struct.pack("<HB", attribute, attr.kind) + pack_value(attr.kind, value)
            # frame control 0x18: profile-wide, server to client, no default response
            self._emit(
                Frame(endpoint, 1, HA_PROFILE, cluster, bytes([0x18, self._next_tsn(), 0x0A]) + record)
            )

    # ------------------------------------------------------------------ requests

    def handle(
        self, src_ep: int, dst_ep: int, profile: int, cluster: int, data: bytes, broadcast: bool
    ) -> None:
        if self.asleep:
            self.requests.append("dropped while asleep")
            return
        if dst_ep == 0 and profile == 0:
            self._zdo(cluster, data, broadcast)
        else:
            self._zcl(src_ep, dst_ep, profile, cluster, data, broadcast)

    def _zdo(self, cluster: int, data: bytes, broadcast: bool) -> None:
        tsn, body = data[0], data[1:]
        self.requests.append(f"ZDO 0x{cluster:04x}")
        nwk = struct.pack("<H", self.nwk)

        def answer(payload: bytes) -> None:
            self._emit(Frame(0, 0, 0x0000, cluster | 0x8000, bytes([tsn]) + payload))

        if cluster == 0x0002:  # Node_Desc_req: an end device, mains powered
            answer(b"\x00" + nwk + struct.pack("<BBBHBHHHB", 0x02, 0x40, 0x8E, 0x1234, 82, 82, 0, 82, 0))
        elif cluster == 0x0005:  # Active_EP_req
            answer(b"\x00" + nwk + bytes([len(self.clusters), *sorted(self.clusters)]))
        elif cluster == 0x0004:  # Simple_Desc_req
            ep = body[2]
            if ep not in self.clusters:
                answer(b"\x83" + nwk + b"\x00")  # NOT_ACTIVE
                return
            ins = sorted(self.clusters[ep])
            desc = struct.pack("<BHHBB", ep, HA_PROFILE, 0x0302, 1, len(ins))
            desc += b"".join(struct.pack("<H", c) for c in ins) + b"\x00"
            answer(b"\x00" + nwk + bytes([len(desc)]) + desc)
        elif cluster == 0x0001:  # IEEE_addr_req
            answer(b"\x00" + self.ieee_bytes + nwk)
        elif cluster in (0x0021, 0x0022, 0x0034):  # Bind, Unbind, Mgmt_Leave
            answer(b"\x00")
        elif cluster in (0x0031, 0x0032):  # Mgmt_Lqi, Mgmt_Rtg: empty tables
            answer(b"\x00\x00" + body[:1] + b"\x00")
        elif not broadcast and not cluster & 0x8000:
            answer(b"\x84")  # NOT_SUPPORTED

    def _zcl(
        self, src_ep: int, dst_ep: int, profile: int, cluster: int, data: bytes, broadcast: bool
    ) -> None:
        control = data[0]
        at = 3 if control & 0x04 else 1  # a manufacturer code follows the frame control
        tsn, command, payload = data[at], data[at + 1], data[at + 2 :]
        specific, no_default = control & 0x03 == 1, bool(control & 0x10)
        self.requests.append(
            f"ZCL {dst_ep} 0x{cluster:04x} {'cluster' if specific else 'global'} 0x{command:02x}"
        )
        attrs = self.clusters.get(dst_ep, {}).get(cluster)

        def reply(command_id: int, body: bytes) -> None:
            self._emit(Frame(dst_ep, src_ep, profile, cluster, bytes([0x18, tsn, command_id]) + body))

        def default_response(status: int) -> None:
            if not broadcast and not (no_default and status == SUCCESS):
                reply(0x0B, bytes([command, status]))

        if attrs is None:
            default_response(UNSUPPORTED_CLUSTER)
        elif specific:
            self._cluster_command(dst_ep, cluster, command, payload, default_response)
        elif command == 0x00:  # Read Attributes
            records = b""
            for (attr_id,) in struct.iter_unpack("<H", payload):
                attr = attrs.get(attr_id)
                if attr is None or attr.failing:
                    status = UNSUPPORTED_ATTRIBUTE if attr is None else HARDWARE_FAILURE
                    records += struct.pack("<HB", attr_id, status)
                else:
                    records += struct.pack("<HBB", attr_id, SUCCESS, attr.kind) + pack_value(
                        attr.kind, attr.value
                    )
            reply(0x01, records)
        elif command in (0x02, 0x05):  # Write Attributes (0x05: no response)
            failed, rest = b"", payload
            while rest:
                attr_id, kind = struct.unpack("<HB", rest[:3])
                value, rest = unpack_value(kind, rest[3:])
                attr = attrs.get(attr_id)
                status = (
                    UNSUPPORTED_ATTRIBUTE
                    if attr is None
                    else READ_ONLY
                    if not attr.writable
                    else INVALID_DATA_TYPE
                    if attr.kind != kind
                    else HARDWARE_FAILURE
                    if attr.failing
                    else SUCCESS
                )
                if status == SUCCESS:
                    self.set(dst_ep, cluster, attr_id, value)
                else:
                    failed += struct.pack("<BH", status, attr_id)
            if command == 0x02:
                reply(0x04, failed or b"\x00")
        elif command == 0x06:  # Configure Reporting
            rest, failed = payload, b""
            while rest:
                direction, attr_id = struct.unpack("<BH", rest[:3])
                rest = rest[3:]
                if direction:
                    rest = rest[2:]
                    continue
                kind, low, high = struct.unpack("<BHH", rest[:5])
                rest = rest[5:]
                if kind in ANALOG:  # reportable change, only for analog types
                    rest = rest[struct.calcsize(_PACK[kind]) :]
                if attr_id in attrs:
                    self.reporting[(dst_ep, cluster, attr_id)] = (low, high)
                else:
                    failed += struct.pack("<BBH", UNSUPPORTED_ATTRIBUTE, 0, attr_id)
            reply(0x07, failed or b"\x00")
        else:
            default_response(UNSUP_GENERAL_COMMAND)

    def _cluster_command(
        self, ep: int, cluster: int, command: int, payload: bytes, default_response: Callable[[int], None]
    ) -> None:
        if cluster == 0x0006 and command in (0x00, 0x01, 0x02):  # Off, On, Toggle
            now = self.clusters[ep][0x0006][0x0000].value
            default_response(SUCCESS)
            self.set(ep, 0x0006, 0x0000, {0x00: 0, 0x01: 1, 0x02: 0 if now else 1}[command])
        elif cluster == 0x0008 and command in (0x00, 0x04):  # Move to Level (with On/Off)
            level, _transition = struct.unpack("<BH", payload[:3])
            default_response(SUCCESS)
            self.set(ep, 0x0008, 0x0000, level)
            if command == 0x04 and 0x0006 in self.clusters[ep]:
                self.set(ep, 0x0006, 0x0000, 1 if level else 0)
        else:
            default_response(UNSUP_CLUSTER_COMMAND)


# ---------------------------------------------------------------------- the air


class Air:
    """Emulated devices within reach of one coordinator, found by name (``emulated://NAME``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.devices: dict[str, EmulatedDevice] = {}
        """By IEEE address: the devices in range (answering)."""
        self.waiting: list[EmulatedDevice] = []
        """Devices that join as soon as the network is opened (permit join)."""
        self.link: Any = None
        """What carries the devices' frames to the coordinator: the :class:`EmulatedRadioApp`, or
        an emulated XBee (:mod:`kubeedge_mapper_zigbee.xbee_emulator`); it has ``deliver``."""
        self.radio_up = True
        self.network: tuple[Any, Any] | None = None
        """What the coordinator stored when it formed (kept across restarts, as an NCP would)."""

    def add(self, device: EmulatedDevice, *, announce: bool = True) -> None:
        """Put a device in range; ``announce``: it tells the coordinator (joined or rejoined)."""
        self.devices[device.ieee] = device
        device.send = self._from_device
        if announce:
            device.announce()

    def remove(self, device: EmulatedDevice) -> None:
        """The device is out of range (switched off, battery gone): it answers nothing."""
        self.devices.pop(device.ieee, None)

    def leave(self, device: EmulatedDevice) -> None:
        """The device leaves the network, as after a factory reset."""
        self.remove(device)
        if isinstance(self.link, EmulatedRadioApp):  # an XBee tells nothing: the device goes silent
            self.link.handle_leave(t.NWK(device.nwk), t.EUI64.convert(device.ieee))

    def lose_radio(self) -> None:
        """The coordinator's serial link drops (unplugged); it stays down until :meth:`restore_radio`."""
        self.radio_up = False
        if isinstance(self.link, EmulatedRadioApp):
            self.link.connection_lost(ConnectionResetError("emulated radio unplugged"))

    def restore_radio(self) -> None:
        self.radio_up = True

    def _from_device(self, device: EmulatedDevice, frame: Frame) -> None:
        link = self.link
        if link is None or device.ieee not in self.devices:
            return
        asyncio.get_running_loop().call_soon(link.deliver, device, frame)

    def _to_device(self, packet: t.ZigbeePacket) -> None:
        data = packet.data.serialize()
        mode = packet.dst.addr_mode
        if mode in (t.AddrMode.Broadcast, t.AddrMode.Group):
            targets, broadcast = list(self.devices.values()), True
        else:
            address = packet.dst.address
            targets = [
                d
                for d in self.devices.values()
                if (d.nwk == address if mode == t.AddrMode.NWK else d.ieee_bytes == address.serialize())
            ]
            broadcast = False
            if not targets:
                raise zigpy.exceptions.DeliveryError(
                    f"no route to 0x{int(address):04x}"
                    if mode == t.AddrMode.NWK
                    else f"no route to {address}",
                    status=t.MACStatus.MAC_NO_ACK,
                )
        for device in targets:
            device.handle(packet.src_ep, packet.dst_ep, packet.profile_id, packet.cluster_id, data, broadcast)

    def permit(self) -> None:
        waiting, self.waiting = self.waiting, []
        for device in waiting:
            self.add(device)


AIRS: dict[str, Air] = {}
"""The airs tests created, by name."""


def air(name: str) -> Air:
    """The air called ``name`` (created on first use)."""
    return AIRS.setdefault(name, Air(name))


class _Coordinator(zigpy.device.Device):
    def __init__(self, app: zigpy.application.ControllerApplication, ieee: t.EUI64, nwk: t.NWK) -> None:
        super().__init__(app, ieee, nwk)
        self.node_desc = zdo_t.NodeDescriptor(
            logical_type=zdo_t.LogicalType.Coordinator,
            complex_descriptor_available=0,
            user_descriptor_available=0,
            reserved=0,
            aps_flags=0,
            frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
            mac_capability_flags=0x8F,
            manufacturer_code=0xFFFF,
            maximum_buffer_size=82,
            maximum_incoming_transfer_size=82,
            server_mask=0x2C00,
            maximum_outgoing_transfer_size=82,
            descriptor_capability_field=0,
        )
        endpoint = self.add_endpoint(1)  # zigpy keeps the coordinator's model strings on ep 1
        endpoint.status = zigpy.endpoint.Status.ZDO_INIT
        endpoint.profile_id, endpoint.device_type = HA_PROFILE, 0x0005


COORDINATOR_IEEE = "00:12:4b:00:00:00:00:01"


class EmulatedRadioApp(zigpy.application.ControllerApplication):  # type: ignore[misc]
    """A zigpy coordinator whose radio is an :class:`Air` (``device.path: emulated://NAME``)."""

    SCHEMA = zigpy.config.CONFIG_SCHEMA

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        path = str(self.config[zigpy.config.CONF_DEVICE][zigpy.config.CONF_DEVICE_PATH])
        if not path.startswith("emulated://"):
            raise ValueError(f"the emulated radio's path is emulated://NAME, not {path!r}")
        self.air = air(path.removeprefix("emulated://"))

    def deliver(self, device: EmulatedDevice, frame: Frame) -> None:
        if self.air.link is not self:
            return
        dst = t.AddrModeAddress(
            addr_mode=t.AddrMode.Broadcast if frame.dst_nwk >= 0xFFF8 else t.AddrMode.NWK,
            address=frame.dst_nwk,
        )
        self.packet_received(
            t.ZigbeePacket(
                src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=device.nwk),
                src_ep=frame.src_ep,
                dst=dst,
                dst_ep=frame.dst_ep,
                profile_id=frame.profile,
                cluster_id=frame.cluster,
                data=t.SerializableBytes(frame.data),
                lqi=255,
                rssi=-40,
            )
        )

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        if not self.air.radio_up or self.air.link is not self:
            raise zigpy.exceptions.DeliveryError("the radio is gone")
        self.air._to_device(packet)

    async def connect(self) -> None:
        if not self.air.radio_up:
            raise ConnectionRefusedError(f"emulated radio {self.air.name} is unplugged")
        self.air.link = self

    async def disconnect(self) -> None:
        if self.air.link is self:
            self.air.link = None

    async def permit_ncp(self, time_s: int = 60) -> None:
        if time_s:
            asyncio.get_running_loop().call_soon(self.air.permit)

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60) -> None:
        await self.permit_ncp(time_s)

    async def force_remove(self, dev: zigpy.device.Device) -> None:
        self.air.devices.pop(str(dev.ieee), None)

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        pass

    async def reset_network_info(self) -> None:
        self.air.network = None

    async def write_network_info(self, *, network_info: Any, node_info: Any) -> None:
        self.air.network = (network_info, node_info)

    async def load_network_info(self, *, load_devices: bool = False) -> None:
        if self.air.network is None:
            raise zigpy.exceptions.NetworkNotFormed()
        network_info, node_info = self.air.network
        self.state.network_info = network_info.replace(source="kubeedge-emulated@0")
        self.state.node_info = node_info.replace(
            nwk=t.NWK(0x0000),
            ieee=t.EUI64.convert(COORDINATOR_IEEE),
            logical_type=zdo_t.LogicalType.Coordinator,
            manufacturer="kubeedge",
            model="EmulatedRadio",
            version="0",
        )

    async def start_network(self) -> None:
        coordinator = _Coordinator(self, self.state.node_info.ieee, self.state.node_info.nwk)
        coordinator.status = zigpy.device.Status.ENDPOINTS_INIT
        self.devices[coordinator.ieee] = coordinator
        await self.register_endpoints()


ControllerApplication = EmulatedRadioApp
"""The name every zigpy radio module gives its application class (``radio: emulated``)."""


async def pair(settings: dict[str, Any], *devices: EmulatedDevice, air_name: str | None = None) -> None:
    """Join ``devices`` to the network of the coordinator ``settings`` (``mappers.zigbee``) and
    let zigpy interview them, as pairing does; the database keeps them for the mapper."""
    from kubeedge_mapper_zigbee import coordinator
    from kubeedge_mapper_zigbee.config import ZigbeeSettings

    parsed = ZigbeeSettings.model_validate(
        {k: v for k, v in settings.items() if k not in ("readTimeout", "maxBackoff", "connectTimeout")}
    )
    the_air = air(air_name or parsed.path.removeprefix("emulated://"))
    app = await coordinator.start(parsed, auto_form=True)
    try:
        done = asyncio.Event()
        wanted = {d.ieee for d in devices}

        class Listener:
            def device_initialized(self, device: zigpy.device.Device) -> None:
                wanted.discard(str(device.ieee))
                if not wanted:
                    done.set()

        app.add_listener(Listener())
        for device in devices:
            the_air.add(device)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await app.shutdown()
