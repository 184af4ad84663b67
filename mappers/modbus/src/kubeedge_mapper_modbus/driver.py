"""The Modbus driver (pymodbus): batched reads, shared links, exception codes as property errors.

* **Batching.** The runtime hands a whole cycle's properties to :meth:`ModbusDriver.read_many`,
  which plans blocks with :func:`kubeedge.plan_blocks`: one request per run of near addresses of
  one register type, up to ``maxRegisters`` (125) registers or ``maxBits`` (2000) coils, merging
  across gaps of up to ``maxGap`` unused addresses. A block the device refuses (an illegal
  address inside the gap) is read again property by property, so one bad address costs only its
  property.
* **Shared links.** Devices on the same link (same ``ip``/``port``, or the same serial line)
  share one pymodbus client; a lock makes their requests strictly one after another.
* **Errors.** A Modbus exception response marks the properties of that request with its code
  (``Modbus exception 2 (illegal data address)``); no answer within ``timeout`` (after
  ``retries`` resends) marks the device offline, with ``timeout`` in the reason, and the runtime
  reconnects with back-off. A reading outside the visitor's ``max``/``min`` is a property error,
  and a desired value outside them is refused before it reaches the wire.
* **Silent units.** On a gateway or a serial line the link stays up while one unit is silent, so
  a connected link says nothing about that unit: after a timeout, the unit's next ``connect``
  asks it once (the request that went unanswered) and fails if it is still silent. The runtime
  then keeps it offline and retries with its doubling back-off (up to ``maxBackoff``): a silent
  unit costs the others on its link one ``timeout`` per back-off step, not one per cycle, and its
  state does not flap online at every attempt.
* **Per-device settings on a shared link.** ``timeout`` and ``retries`` are applied to the shared
  client before each exchange, so each device keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from kubeedge import (
    Block,
    DeviceError,
    DeviceUnreachable,
    Driver,
    Property,
    Shared,
    SharedConnections,
    Span,
    plan_blocks,
)
from kubeedge_mapper_modbus.codec import Layout, decode, encode, layout
from kubeedge_mapper_modbus.config import BIT_REGISTERS, WRITABLE_REGISTERS, ModbusConfig, ModbusVisitor

log = logging.getLogger(__name__)
# pymodbus logs every failed exchange as an ERROR with hex dumps; the runtime reports errors itself.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
Client = AsyncModbusTcpClient | AsyncModbusSerialClient
Probe = tuple[str, int, int]
"""A read that tells whether a unit answers: (register type, start, count)."""


def _open(config: ModbusConfig) -> Client:
    timeout = config.timeout / 1000
    if config.communicate_mode == "RTU":
        assert config.serial_port is not None
        return AsyncModbusSerialClient(
            config.serial_port,
            framer=FramerType.RTU,
            baudrate=config.baud_rate,
            bytesize=config.data_bits,
            parity=config.parity,
            stopbits=config.stop_bits,
            timeout=timeout,
            retries=config.retries,
            reconnect_delay=0,  # the kubeedge runtime owns reconnection and its back-off
        )
    assert config.ip is not None and config.port is not None
    return AsyncModbusTcpClient(
        config.ip,
        port=config.port,
        framer=FramerType.RTU if config.communicate_mode == "RTUOverTCP" else FramerType.SOCKET,
        timeout=timeout,
        retries=config.retries,
        reconnect_delay=0,
    )


class _Links:
    """One pymodbus client per physical link, for every device of this process."""

    def __init__(self) -> None:
        self.pool: SharedConnections[Client] = SharedConnections(self._open, self._close)
        self._configs: dict[Hashable, ModbusConfig] = {}
        self.silent: dict[tuple[Hashable, int], Probe] = {}
        """(link, unit) -> the request that unit last left unanswered, to ask it again on connect.
        Kept here, not in a driver: the runtime makes a new driver for every connection attempt."""

    async def acquire(self, config: ModbusConfig) -> Shared[Client]:
        self._configs[config.link()] = config  # the latest settings open the next connection
        return await self.pool.acquire(config.link())

    async def _open(self, key: Hashable) -> Client:
        return _open(self._configs[key])

    @staticmethod
    async def _close(client: Client) -> None:
        client.close()


LINKS = _Links()

_NOTED: set[tuple[str, str, str]] = set()
"""(device, property, note) already logged: a note is logged once per device and property, not
at every reconnection (the runtime makes a new driver for each)."""


class ModbusDriver(Driver[ModbusConfig, ModbusVisitor]):
    protocol = "modbus"
    config_model = ModbusConfig
    visitor_model = ModbusVisitor
    max_batch = 100_000  # all of a cycle's properties: this driver plans its own requests

    _link: Shared[Client] | None = None

    async def connect(self) -> None:
        self._layouts: dict[str, Layout | DeviceError] = {}
        self._link = await LINKS.acquire(self.config)
        self.requests = 0
        async with self._link.lock:
            await self._ensure_connected()
        probe = LINKS.silent.get(self._unit)
        if probe is not None:
            # The unit timed out last time; the link being up says nothing about it (a gateway, a
            # serial line). Ask it again: any answer, an exception code too, means it is back;
            # silence fails the connection, so the runtime keeps it offline and backs off.
            with contextlib.suppress(DeviceError):
                await self._request_read(*probe)

    @property
    def _unit(self) -> tuple[Hashable, int]:
        return (self.config.link(), self.config.slave_id)

    def _where(self) -> str:
        return self.config.serial_port or f"{self.config.ip}:{self.config.port}"

    async def close(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            await LINKS.pool.release(link)

    async def _ensure_connected(self) -> Client:
        assert self._link is not None
        client = self._link.connection
        if not client.connected:
            self._use_settings(client)  # pymodbus also connects within this timeout: this device's
            connected = await client.connect()
            _raise_if_cancelled()
            if not connected:
                raise DeviceUnreachable(
                    f"cannot connect to Modbus {self.config.communicate_mode} {self._where()}"
                )
        return client

    # ----------------------------------------------------------------- reads

    async def read(self, prop: Property[ModbusVisitor]) -> Any:
        (result,) = await self.read_many([prop])
        if isinstance(result, BaseException):
            raise result
        return result

    def _layout(self, prop: Property[ModbusVisitor]) -> Layout:
        """How a property sits on the device (worked out once); ``DeviceError`` if it cannot."""
        cached = self._layouts.get(prop.name)
        if cached is None:
            try:
                cached = layout(prop.visitor, prop.type)
            except ValueError as exc:
                cached = DeviceError(f"property {prop.name}: {exc}")
            else:
                self._log_note(prop, cached)
            self._layouts[prop.name] = cached
        if isinstance(cached, DeviceError):
            raise cached
        return cached

    def _log_note(self, prop: Property[ModbusVisitor], where: Layout) -> None:
        """Say once how an ambiguous manifest is read (KubeEdge's float with limit 1, or none)."""
        if where.note is None:
            return
        noted = (self.device.key, prop.name, where.note)
        if noted in _NOTED:
            return
        _NOTED.add(noted)
        # a register without a limit: the manifest did not say which convention it follows
        level = logging.WARNING if prop.visitor.limit is None and not where.is_bits else logging.INFO
        log.log(level, "device %s property %s: %s", self.device.key, prop.name, where.note)

    async def read_many(self, props: Sequence[Property[ModbusVisitor]]) -> list[Any]:
        results: dict[str, Any] = {}
        layouts: dict[str, Layout] = {}
        for prop in props:
            try:
                layouts[prop.name] = self._layout(prop)
            except DeviceError as exc:
                results[prop.name] = exc
        spans = [
            (p, Span(layouts[p.name].register, layouts[p.name].offset, layouts[p.name].count))
            for p in props
            if p.name in layouts
        ]
        blocks = plan_blocks(spans, self._limit, self.config.max_gap)
        for block in blocks:
            await self._read_block(block, layouts, results)
        return [results[p.name] for p in props]

    def _limit(self, register: Hashable) -> int:
        return self.config.max_bits if register in BIT_REGISTERS else self.config.max_registers

    async def _read_block(
        self, block: Block[Property[ModbusVisitor]], layouts: dict[str, Layout], results: dict[str, Any]
    ) -> None:
        try:
            words = await self._request_read(str(block.space), block.start, block.count)
        except DeviceError as exc:
            if len(block.items) > 1 and exc.code in (2, 3):
                # An unmapped address inside the merged range: read the properties one by one.
                for prop, span in block.items:
                    single: Block[Property[ModbusVisitor]] = Block(
                        span.space, span.start, span.count, [(prop, span)]
                    )
                    await self._read_block(single, layouts, results)
                return
            for prop, _ in block.items:
                results[prop.name] = exc
            return
        for prop, span in block.items:
            where = layouts[prop.name]
            try:
                value = decode(where, words[block.slice(span)])
                results[prop.name] = self._check(prop, value)
            except (ValueError, struct.error, LookupError, IndexError) as exc:  # a short or odd answer
                results[prop.name] = DeviceError(f"cannot decode {where.data_type}: {exc}")

    @staticmethod
    def _out_of_bounds(prop: Property[ModbusVisitor], value: Any) -> str | None:
        """Which of the visitor's ``max``/``min`` a number breaks, as text; None when within."""
        visitor = prop.visitor
        if isinstance(value, int | float) and not isinstance(value, bool):
            if visitor.max is not None and value > visitor.max:
                return f"above max {visitor.max:g}"
            if visitor.min is not None and value < visitor.min:
                return f"below min {visitor.min:g}"
        return None

    def _check(self, prop: Property[ModbusVisitor], value: Any) -> Any:
        broken = self._out_of_bounds(prop, value)
        if broken is not None:
            return DeviceError(f"property {prop.name}: reading {value} is {broken}")
        return value

    async def _request_read(self, register: str, start: int, count: int) -> list[Any]:
        unit = self.config.slave_id

        def request(client: Client) -> Awaitable[Any]:
            if register == "HoldingRegister":
                return client.read_holding_registers(start, count=count, device_id=unit)
            if register == "InputRegister":
                return client.read_input_registers(start, count=count, device_id=unit)
            if register == "CoilRegister":
                return client.read_coils(start, count=count, device_id=unit)
            return client.read_discrete_inputs(start, count=count, device_id=unit)

        response = await self._exchange(
            request, f"reading {count} {register} at {start}", (register, start, count)
        )
        return list(response.bits[:count] if register in BIT_REGISTERS else response.registers)

    async def _exchange(self, request: Callable[[Client], Awaitable[Any]], what: str, probe: Probe) -> Any:
        """One request and its answer, alone on the (shared) link; errors as the runtime wants them.

        ``probe`` is a read that tells whether this unit answers, asked on the next connect if
        this request goes unanswered.
        """
        assert self._link is not None
        async with self._link.lock:
            client = await self._ensure_connected()
            self._use_settings(client)
            self.requests += 1
            try:
                response = await request(client)
            except ModbusException as exc:
                if _timed_out(exc):
                    LINKS.silent[self._unit] = probe
                raise self._no_answer(exc) from None
            _raise_if_cancelled()
        LINKS.silent.pop(self._unit, None)
        self._raise_for_exception(response, what)
        return response

    def _use_settings(self, client: Client) -> None:
        """This device's timeout and retries, on a client other devices of the link share.

        pymodbus reads both from its transaction manager at each request (3.16), so setting them
        here, under the link's lock, gives every device its own. The timeout is also pymodbus'
        connect timeout: a (re)connection of the link uses the timeout of the device that asks.
        """
        client.ctx.retries = self.config.retries
        client.ctx.comm_params.timeout_connect = self.config.timeout / 1000

    # ----------------------------------------------------------------- writes

    async def write(self, prop: Property[ModbusVisitor], value: Any) -> None:
        where = self._layout(prop)
        if where.register not in WRITABLE_REGISTERS:
            raise DeviceError(f"{where.register} is read-only in Modbus; {prop.name} cannot be written")
        broken = self._out_of_bounds(prop, value)
        if broken is not None:
            raise DeviceError(f"property {prop.name}: {value} is {broken}; not written")
        try:
            data = encode(where, value)
            if prop.visitor.bit is not None:  # one bit of a holding register: read, change, write
                (current,) = await self._request_read("HoldingRegister", where.offset, 1)
                mask = 1 << prop.visitor.bit
                data = [(current | mask) if value else (current & ~mask)]
        except ValueError as exc:
            raise DeviceError(
                f"property {prop.name}: cannot write {value!r} to {where.register} {where.offset}"
                f" as {where.data_type}: {exc}"
            ) from None
        unit = self.config.slave_id

        def request(client: Client) -> Awaitable[Any]:
            if where.register == "CoilRegister":
                return client.write_coil(where.offset, bool(data), device_id=unit)
            assert isinstance(data, list)
            if len(data) == 1:
                return client.write_register(where.offset, data[0], device_id=unit)
            return client.write_registers(where.offset, data, device_id=unit)

        await self._exchange(
            request, f"writing {where.register} at {where.offset}", (where.register, where.offset, 1)
        )

    # ----------------------------------------------------------------- errors

    def _no_answer(self, exc: ModbusException) -> DeviceUnreachable:
        unit, where = self.config.slave_id, self._where()
        if _timed_out(exc):
            tries = self.config.retries + 1
            return DeviceUnreachable(
                f"timeout: no answer from unit {unit} at {where} within {self.config.timeout} ms"
                f" ({tries} {'try' if tries == 1 else 'tries'})"
            )
        return DeviceUnreachable(f"no answer from unit {unit} at {where}: {exc}")

    @staticmethod
    def _raise_for_exception(response: Any, what: str) -> None:
        if response.isError():
            code = getattr(response, "exception_code", None)
            name = EXCEPTION_NAMES.get(code or 0, "error")
            raise DeviceError(f"Modbus exception {code} ({name}) {what}", code=code)


def _timed_out(exc: ModbusException) -> bool:
    """pymodbus (3.16) says "No response received ..." when its timeout ran out on every try."""
    return isinstance(exc, ModbusIOException) and "No response received" in str(exc)


def _raise_if_cancelled() -> None:
    """Raise the cancellation pymodbus may have dropped.

    pymodbus waits with ``asyncio.wait_for``, which on Python 3.11 returns an answer that arrives
    in the same loop iteration as a cancellation and drops the cancellation: the device's task
    would go on polling after the runtime stopped it (and its stop would wait in vain).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
