"""Simulated Modbus devices (a real pymodbus server), for tests, the benchmark and trying things.

``python -m kubeedge_mapper_modbus.simulator --port 5502 --units 1,2`` serves units 1 and 2 on
loopback TCP, each with 1,000 coils, discrete inputs, input registers and holding registers
(``--silent 2``: unit 2 takes requests and never answers, as a unit that is off behind a gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import struct
import time
from collections import Counter, defaultdict
from typing import Any, ClassVar

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from kubeedge.testing import free_port
from kubeedge.testing.conformance import BadConfig, DeviceSimulator, Point
from kubeedge_mapper_modbus.codec import decode, encode, layout
from kubeedge_mapper_modbus.config import ModbusVisitor

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

SIZE = 1000
_LOCAL = contextvars.ContextVar("_LOCAL", default=False)
"""True while the test itself reads or writes the tables: faults apply to requests only."""
# function codes pymodbus' datastore uses to address each table
TABLE_CODES = {"CoilRegister": 1, "DiscreteInputRegister": 2, "HoldingRegister": 3, "InputRegister": 4}


class ModbusSimulator:
    """A pymodbus server with simulated units; counts the requests it receives."""

    def __init__(
        self,
        units: tuple[int, ...] = (1,),
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        framer: FramerType | None = None,
    ) -> None:
        self.units = units
        self.host = host
        self.port = port or free_port()
        self.serial_port = serial_port
        self.framer = framer
        self.requests: Counter[tuple[int, str]] = Counter()
        """(unit id, request name) -> how many arrived."""
        self.failing: dict[int, set[tuple[int, int]]] = {u: set() for u in units}
        """unit -> {(function code, address)} answered with exception 2."""
        self.silent: set[int] = set()
        """Units that take requests and never answer (the client times out): a unit that is off
        behind a gateway; with every unit in it, a device that accepts the connection but is mute."""
        self.unanswered: Counter[int] = Counter()
        """unit -> how many of its next requests go unanswered (a transient failure)."""
        self.arrivals: defaultdict[int, list[float]] = defaultdict(list)
        """unit -> monotonic times its requests arrived (answered or not)."""
        self.connections = 0
        """Client connections opened so far."""
        self.open_connections = 0
        """Client connections open now."""
        self.write_spans: dict[int, set[tuple[int, int]]] = {}
        """unit -> {(address, count)}: when set, a register write must cover one of these spans
        exactly (a device with typed points refuses half a float), else exception 2."""
        self._server: Any = None

    def _device(self, unit: int) -> SimDevice:
        def table(datatype: DataType, value: Any) -> list[SimData]:
            return [SimData(0, count=SIZE, values=value, datatype=datatype)]

        async def action(fc: int, start: int, address: int, count: int, regs: Any, set_values: Any) -> Any:
            if _LOCAL.get():
                return None
            if unit in self.silent or self.unanswered[unit] > 0:
                if unit not in self.silent:
                    self.unanswered[unit] -= 1
                # The server is made with ignore_missing_devices: it drops the request, no answer.
                raise NoSuchIdException(f"unit {unit} is silent")
            spans = self.write_spans.get(unit)
            if set_values is not None and fc in (6, 16) and spans and (address, count) not in spans:
                return ExcCodes.ILLEGAL_ADDRESS
            failing = self.failing[unit]
            if failing and any((fc, a) in failing for a in range(address, address + count)):
                return ExcCodes.ILLEGAL_ADDRESS
            return None

        simdata = (
            table(DataType.BITS, False),
            table(DataType.BITS, False),
            table(DataType.REGISTERS, 0),
            table(DataType.REGISTERS, 0),
        )
        return SimDevice(unit, simdata=simdata, action=action)

    def _connected(self, connected: bool) -> None:
        if connected:
            self.connections += 1
        self.open_connections += 1 if connected else -1

    def _trace(self, sending: bool, pdu: Any) -> Any:
        if not sending:
            unit = getattr(pdu, "dev_id", 0)
            self.requests[(unit, type(pdu).__name__)] += 1
            self.arrivals[unit].append(time.monotonic())
        return pdu

    async def start(self) -> ModbusSimulator:
        devices = [self._device(u) for u in self.units]
        if self.serial_port is not None:
            self._server = ModbusSerialServer(
                devices,
                framer=self.framer or FramerType.RTU,
                port=self.serial_port,
                baudrate=19200,
                trace_pdu=self._trace,
                ignore_missing_devices=True,
            )
        else:
            self._server = ModbusTcpServer(
                devices,
                framer=self.framer or FramerType.SOCKET,
                address=(self.host, self.port),
                trace_pdu=self._trace,
                trace_connect=self._connected,
                ignore_missing_devices=True,
            )
        await self._server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    @property
    def running(self) -> bool:
        return self._server is not None

    async def set(self, unit: int, register: str, address: int, values: list[int] | list[bool]) -> None:
        token = _LOCAL.set(True)
        try:
            await self._server.async_setValues(unit, TABLE_CODES[register], address, list(values))
        finally:
            _LOCAL.reset(token)

    async def get(self, unit: int, register: str, address: int, count: int) -> list[Any]:
        token = _LOCAL.set(True)
        try:
            return list(await self._server.async_getValues(unit, TABLE_CODES[register], address, count))
        finally:
            _LOCAL.reset(token)

    async def set_value(self, unit: int, visitor: dict[str, Any], twin_type: str, value: Any) -> None:
        """Store a typed value the way a property's visitor reads it."""
        where = layout(ModbusVisitor.model_validate(visitor), twin_type)
        data = encode(where, value)
        if where.visitor.bit is not None:
            (current,) = await self.get(unit, where.register, where.offset, 1)
            mask = 1 << where.visitor.bit
            data = [(current | mask) if value else (current & ~mask)]
        await self.set(unit, where.register, where.offset, [data] if isinstance(data, bool) else data)

    async def get_value(self, unit: int, visitor: dict[str, Any], twin_type: str) -> Any:
        where = layout(ModbusVisitor.model_validate(visitor), twin_type)
        return decode(where, await self.get(unit, where.register, where.offset, where.count))

    def total(self, unit: int | None = None) -> int:
        return sum(n for (u, _), n in self.requests.items() if unit is None or u == unit)


# How each conformance point sits on the device, written out from the Modbus rules (16-bit
# big-endian registers, high word first; isRegisterSwap: words reversed) and never through the
# driver's codec, which would agree with its own mistakes: (table, offset, form, registers, words
# reversed, scale).
WIRE: dict[str, tuple[str, int, str, int, bool, float]] = {
    "count": ("HoldingRegister", 0, ">h", 1, False, 1.0),
    "temperature": ("InputRegister", 10, ">h", 1, False, 0.1),
    "energy": ("HoldingRegister", 20, ">d", 4, True, 1.0),
    "label": ("HoldingRegister", 30, "text", 8, False, 1.0),
    "tag": ("HoldingRegister", 40, "bytes", 2, False, 1.0),
    "running": ("CoilRegister", 5, "bit", 1, False, 1.0),
}


class ModbusConformanceSimulator(DeviceSimulator):
    """The Modbus mapper's side of the kubeedge conformance suite."""

    protocol: ClassVar[str] = "modbus"
    point_error: ClassVar[str | None] = "illegal data address"
    mapper_settings: ClassVar[dict[str, Any]] = {"readTimeout": 3, "maxBackoff": 1}

    def __init__(self) -> None:
        self.server = ModbusSimulator(units=(1,))
        spans = {(offset, n) for table, offset, _, n, _, _ in WIRE.values() if table == "HoldingRegister"}
        self.server.write_spans[1] = spans

    async def start(self) -> None:
        await self.server.start()
        for point in self.points():
            await self.set_device_value(point.name, point.initial)

    async def stop(self) -> None:
        await self.server.stop()

    def protocol_config(self) -> dict[str, Any]:
        return {
            "communicateMode": "TCP",
            "ip": "127.0.0.1",
            "port": str(self.server.port),
            "slaveID": 1,
            "timeout": 500,
        }

    def points(self) -> list[Point]:
        return [
            Point(
                "count",
                "INT",
                {"register": "HoldingRegister", "offset": 0, "dataType": "int16"},
                -1234,
                writable=True,
                changed=4321,
            ),
            Point(
                "temperature",
                "FLOAT",
                {"register": "InputRegister", "offset": 10, "dataType": "int16", "scale": 0.1},
                21.5,
                changed=22.5,
            ),
            Point(
                "energy",
                "DOUBLE",
                {"register": "HoldingRegister", "offset": 20, "dataType": "float64", "isRegisterSwap": True},
                1234.125,
                writable=True,
                changed=99.5,
            ),
            Point(
                "label",
                "STRING",
                {"register": "HoldingRegister", "offset": 30, "dataType": "string", "limit": 8},
                "pump A",
                writable=True,
                changed="pump B",
            ),
            Point(
                "tag",
                "BYTES",
                {"register": "HoldingRegister", "offset": 40, "dataType": "bytes", "limit": 2},
                b"\x01\x02\x03\x04",
                writable=True,
                changed=b"\xde\xad\xbe\xef",
            ),
            Point(
                "running",
                "BOOLEAN",
                {"register": "CoilRegister", "offset": 5},
                False,
                writable=True,
                changed=True,
            ),
        ]

    def _point(self, name: str) -> Point:
        return next(p for p in self.points() if p.name == name)

    async def device_value(self, point: str) -> Any:
        table, offset, form, count, swap, scale = WIRE[point]
        words = await self.server.get(1, table, offset, count)
        if form == "bit":
            return bool(words[0])
        data = b"".join(struct.pack(">H", w) for w in (words[::-1] if swap else words))
        if form == "text":
            return data.rstrip(b"\0").decode()
        if form == "bytes":
            return data
        value = struct.unpack(form, data)[0]
        return value * scale if scale != 1.0 else value

    async def set_device_value(self, point: str, value: Any) -> None:
        table, offset, form, count, swap, scale = WIRE[point]
        if form == "bit":
            await self.server.set(1, table, offset, [bool(value)])
            return
        if form == "text":
            data = value.encode().ljust(count * 2, b"\0")
        elif form == "bytes":
            data = value
        else:
            data = struct.pack(form, round(value / scale) if form == ">h" else value / scale)
        words = [struct.unpack(">H", data[i : i + 2])[0] for i in range(0, len(data), 2)]
        await self.server.set(1, table, offset, words[::-1] if swap else words)

    def open_connections(self) -> int:
        return self.server.open_connections

    async def fail_point(self, point: str, failing: bool) -> None:
        spec = self._point(point)
        where = layout(ModbusVisitor.model_validate(spec.visitor), spec.type.lower())
        codes = {"HoldingRegister": 3, "InputRegister": 4, "CoilRegister": 1, "DiscreteInputRegister": 2}
        entry = (codes[where.register], where.offset)
        (self.server.failing[1].add if failing else self.server.failing[1].discard)(entry)

    async def set_reachable(self, reachable: bool) -> None:
        if reachable and not self.server.running:
            await self.start()
        elif not reachable:
            await self.server.stop()

    def bad_configs(self) -> list[BadConfig]:
        return [
            BadConfig({"communicateMode": "TCP", "port": "5502", "slaveID": 1}, "spec.protocol.configData"),
            BadConfig(
                {"communicateMode": "TCP", "ip": "127.0.0.1", "port": "70000"},
                "spec.protocol.configData.port",
            ),
            BadConfig(
                {"register": "HoldingRegistr", "offset": 0},
                "spec.properties[0].visitors.configData.register",
                point="count",
            ),
            BadConfig(
                {"register": "HoldingRegister", "offset": 0, "isswap": True},
                "spec.properties[0].visitors.configData.isswap",
                point="count",
            ),
        ]


async def _main() -> None:
    parser = argparse.ArgumentParser(description="Simulated Modbus TCP devices.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5502)
    parser.add_argument("--units", default="1", help="comma-separated unit ids")
    parser.add_argument("--silent", default="", help="comma-separated unit ids that never answer")
    args = parser.parse_args()
    silent = {int(u) for u in args.silent.split(",") if u}
    units = tuple(sorted({int(u) for u in args.units.split(",")} | silent))
    simulator = await ModbusSimulator(units, args.host, args.port).start()
    simulator.silent.update(silent)
    print(f"simulated Modbus units {','.join(map(str, units))} on {args.host}:{simulator.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main())
