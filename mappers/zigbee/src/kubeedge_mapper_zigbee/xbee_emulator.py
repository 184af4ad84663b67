"""A software XBee 3 Zigbee coordinator on a TCP port, for the unmodified zigpy-xbee radio library.

It speaks Digi's API mode 2 (escaped) frames, written from Digi's public frame reference:

* ``0x08``/``0x09`` AT command (queued) -> ``0x88`` AT response (parameters as big-endian ints);
* ``0x11`` explicit addressing TX -> ``0x8B`` TX status (``0x21``: no network ACK, when no device
  of that address is in range) and the APS payload handed to the emulated device;
* a device's frame -> ``0x91`` explicit RX indicator;
* ``WR`` -> ``0x8A`` modem status "coordinator started" when it formed a network.

It starts with a network already formed (zigpy-xbee re-reads its node info only when it has
none, so forming from a blank emulated NCP leaves a stale address: not worth emulating). Its
devices are those of an :class:`~kubeedge_mapper_zigbee.testing.Air`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from kubeedge_mapper_zigbee.testing import Air, EmulatedDevice, Frame

START, ESCAPE = 0x7E, 0x7D
ESCAPED = {0x7E, 0x7D, 0x11, 0x13}
WIDTHS = {
    "AP": 1, "AO": 1, "MY": 2, "SH": 4, "SL": 4, "CE": 1, "VR": 2, "HV": 2, "OI": 2, "ID": 8, "OP": 8,
    "CH": 1, "EE": 1, "EO": 1, "ZS": 1, "AI": 1, "NJ": 1, "SP": 2, "SN": 2, "SC": 2, "DB": 1,
    "PL": 1, "PP": 1, "KT": 2, "NP": 2,
}  # fmt: skip
"""Byte widths of the AT parameters answered."""


def api_frame(payload: bytes) -> bytes:
    """``7E``, length, payload, checksum; escaped as API mode 2 wants."""
    body = struct.pack(">H", len(payload)) + payload + bytes([0xFF - (sum(payload) & 0xFF)])
    out = bytearray([START])
    for byte in body:
        out += bytes([ESCAPE, byte ^ 0x20]) if byte in ESCAPED else bytes([byte])
    return bytes(out)


class XBeeCoordinator:
    """The emulated XBee on ``127.0.0.1:port``, reaching the devices of ``air``."""

    def __init__(self, air: Air, port: int = 0) -> None:
        self.air = air
        self.port = port
        self.params = {
            "AP": 2, "AO": 3, "MY": 0x0000, "SH": 0x0013A200, "SL": 0x41B2C3D4, "CE": 1, "VR": 0x1009,
            "HV": 0x4247, "OI": 0x1A62, "ID": 0xDDDDDDDDDDDDDDDD, "OP": 0xDDDDDDDDDDDDDDDD, "CH": 15,
            "EE": 1, "EO": 2, "ZS": 2, "AI": 0x00, "NJ": 0, "SP": 0x20, "SN": 1, "SC": 0x0010,
            "DB": 40, "PL": 4, "PP": 8, "KT": 0, "NP": 0xFF,
        }  # fmt: skip
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.air.link = self

    async def stop(self) -> None:
        """The coordinator is unplugged: the radio library's connection drops."""
        if self.air.link is self:
            self.air.link = None
        if self._server is not None:
            self._server.close()
            for client in list(self._clients):
                client.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def connections(self) -> int:
        return len(self._clients)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                payload = await self._read_frame(reader)
                if payload is None:
                    return
                self._handle(payload)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    @staticmethod
    async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
        async def byte() -> int:
            value = (await reader.readexactly(1))[0]
            if value == ESCAPE:
                value = (await reader.readexactly(1))[0] ^ 0x20
            return value

        while (await reader.readexactly(1))[0] != START:
            pass
        length = (await byte()) << 8 | await byte()
        payload = bytes([await byte() for _ in range(length)])
        checksum = await byte()
        return payload if (sum(payload) + checksum) & 0xFF == 0xFF else b""

    def _send(self, payload: bytes) -> None:
        for writer in list(self._clients):
            writer.write(api_frame(payload))

    def _handle(self, payload: bytes) -> None:
        if not payload:
            return
        kind = payload[0]
        if kind in (0x08, 0x09):
            frame_id, command, value = payload[1], payload[2:4].decode(), payload[4:]
            self.requests.append(f"AT {command}")
            self._send(bytes([0x88, frame_id]) + command.encode() + self._at(command, value))
        elif kind == 0x11:
            frame_id = payload[1]
            ieee, nwk, src_ep, dst_ep, cluster, profile, _radius, _options = struct.unpack(
                ">8sHBBHHBB", payload[2:20]
            )
            data = payload[20:]
            broadcast = nwk >= 0xFFF8 or ieee == bytes(6) + b"\xff\xff"
            targets = list(self.air.devices.values()) if broadcast else [
                d for d in self.air.devices.values() if d.nwk == nwk or d.ieee_bytes[::-1] == ieee
            ]  # fmt: skip
            status = 0x00 if targets or broadcast else 0x21  # 0x21: network ACK failure
            self._send(struct.pack(">BBHBBB", 0x8B, frame_id, nwk, 0, status, 0))
            for device in targets:
                device.handle(src_ep, dst_ep, profile, cluster, data, broadcast)

    def _at(self, command: str, value: bytes) -> bytes:
        if command in ("WR", "AC", "NR", "NK", "KY", "CB"):
            return b"\x00"
        if command not in WIDTHS:
            return b"\x02"  # invalid command
        if value:
            self.params[command] = int.from_bytes(value, "big")
            if command == "NJ" and self.params["NJ"]:  # permit joining: waiting devices join
                asyncio.get_running_loop().call_soon(self.air.permit)
            return b"\x00"
        return b"\x00" + self.params[command].to_bytes(WIDTHS[command], "big")

    def deliver(self, device: EmulatedDevice, frame: Frame) -> None:
        options = 0x02 if frame.dst_nwk >= 0xFFF8 else 0x01  # broadcast / acknowledged
        self._send(
            struct.pack(
                ">B8sHBBHHB",
                0x91,
                device.ieee_bytes[::-1],
                device.nwk,
                frame.src_ep,
                frame.dst_ep,
                frame.cluster,
                frame.profile,
                options,
            )
            + frame.data
        )
