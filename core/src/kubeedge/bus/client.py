"""An MQTT client for the edge bus: paho-mqtt driven by the asyncio event loop.

No thread per message and no paho network thread: the socket is watched with
``loop.add_reader`` / ``add_writer`` and paho does the protocol work inside those callbacks (paho's
"external event loop" mode). Only the blocking TCP/TLS connect runs in a worker thread, so an
unreachable broker never stalls the loop. The client reconnects with exponential back-off and
jitter (cut short when the broker's port is seen to close and accept again: a broker restart is
rejoined within about half a second), and subscribes again to everything after each reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
import ssl
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from kubeedge.api.topics import quote
from kubeedge.backoff import backoff_delay
from kubeedge.config import BusConfig
from kubeedge.errors import ConfigError
from kubeedge.ratelimit import ThrottledLog

log = logging.getLogger(__name__)

HELD_LIMIT = 10_000
PROBE_INTERVAL = 0.5
"""Seconds between checks of a lost broker's TCP port while waiting to reconnect."""
MessageHandler = Callable[[str, bytes], None]
"""``handler(topic, payload)``; called on the event loop, in arrival order. Must not block."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ConfigError(f"bus url {url!r} is not mqtt://host[:port] or mqtts://host[:port]")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls)


class _BufferedClient(mqtt.Client):
    """paho client that reads the socket in large chunks.

    paho reads a packet with several small ``recv`` calls (1 byte of type, 1 byte per length
    byte, then the body): with a non-blocking socket watched by asyncio that is one event-loop
    wake-up per message. Here one wake-up reads everything that arrived and paho parses it from
    memory. This overrides a private method of paho-mqtt 2.x (pinned in pyproject).
    """

    _chunk = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self.eof = False
        self.read_error: OSError | None = None
        """Why the connection ended, when the socket said (a TLS alert from the broker, a reset)."""

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            if self.eof:
                return b""  # paho reads this as "connection lost" and cleans up itself
            raise BlockingIOError
        data = bytes(self._rbuf[:bufsize])
        del self._rbuf[:bufsize]
        return data

    def fill(self) -> None:
        """Move what the socket has into the buffer; note when the peer has closed."""
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(self._chunk)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            self.eof = True
            self.read_error = exc
            return
        if not data:
            self.eof = True
            return
        self._rbuf += data
        # TLS may hold decrypted bytes the OS socket no longer signals as readable.
        while isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._rbuf += sock.recv(self._chunk)

    def _packet_write(self) -> MQTTErrorCode:
        # paho sends each queued packet with its own send(); QoS 0 publishes queued by
        # BusClient.publish are joined and sent together (one system call for many messages).
        out = self._out_packet
        while out and out[0]["info"] is _UNTRACKED and out[0]["pos"] == 0:
            chunks: list[bytes] = []
            size = 0
            while out and out[0]["info"] is _UNTRACKED and out[0]["pos"] == 0 and size < self._chunk:
                packet = out.popleft()
                chunks.append(packet["packet"])  # type: ignore[arg-type]
                size += len(packet["packet"])
            data = b"".join(chunks)
            try:
                sent = self._sock_send(data)
            except (AttributeError, ValueError):
                out.appendleft(_queued(data, 0))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.appendleft(_queued(data, 0))
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:
                out.appendleft(_queued(data, 0))
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if sent < len(data):
                out.appendleft(_queued(data, sent))  # paho's own path finishes a partial one
                break
        return super()._packet_write()

    def reset_buffer(self) -> None:
        self._rbuf.clear()
        self.eof = False

    def buffered(self) -> int:
        return len(self._rbuf)


class BusClient:
    """One connection to the edge MQTT bus."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        keepalive: int = 30,
        will: tuple[str, bytes, int, bool] | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self.address = BrokerAddress.parse(url)
        self.client_id = client_id or f"kubeedge-{uuid.uuid4().hex[:12]}"
        self._keepalive = keepalive
        self._max_backoff = max_backoff
        self._client = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client = self._client
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        if username is not None:
            client.username_pw_set(username, password)
        if self.address.tls:
            client.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                certfile=str(cert_file) if cert_file else None,
                keyfile=str(key_file) if key_file else None,
            )
        if will is not None:
            topic, payload, qos, retain = will
            client.will_set(topic, payload, qos, retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._subscriptions: dict[str, int] = {}
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._connect_hooks: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._refused = asyncio.Event()
        self._session_ok = False
        self._held: list[tuple[str, bytes | str, int, bool]] = []
        self.dropped = 0
        """QoS 1+ messages dropped because more than HELD_LIMIT waited for a connection."""
        self.refused = 0
        """Messages not published because MQTT cannot carry them (see :meth:`publish`)."""
        self._refusals = ThrottledLog(log, level=logging.ERROR)
        self._refused_is_final = False
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._sock: Any = None
        self._fd = -1
        self.reconnects = 0
        self.last_error: str | None = None

    @classmethod
    def from_config(
        cls, config: BusConfig, client_id: str, url: str | None = None, **kwargs: Any
    ) -> BusClient:
        """A client with the credentials and TLS files of the edge configuration's ``bus``."""
        return cls(
            url or config.client_url(),
            client_id=client_id,
            username=config.username,
            password=config.password,
            ca_file=config.ca_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
            **kwargs,
        )

    # ----------------------------------------------------------------- public

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def runner(self) -> asyncio.Task[None] | None:
        """The task that keeps the connection (for a supervisor to watch)."""
        return self._runner

    async def start(self, timeout: float | None = 10.0, refused_is_final: bool = False) -> None:
        """Connect (and keep reconnecting in the background); wait for the first connection.

        ``timeout=None`` returns at once and lets the connection come when the broker does.
        Refused credentials or an untrusted certificate fail at once: waiting will not help.
        With ``refused_is_final`` a refused TCP connection (nothing listening) fails at once too,
        as a command line wants; a long-running client keeps trying instead.
        """
        self._refused_is_final = refused_is_final
        self._loop = asyncio.get_running_loop()
        self._runner = asyncio.create_task(self._run(), name=f"bus:{self.client_id}")
        if timeout is None:
            return
        connected = asyncio.ensure_future(self._connected.wait())
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait([connected, refused], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            refused.cancel()
        if not self._connected.is_set():
            await self.stop()
            where = f"{self.address.host}:{self.address.port}"
            if self._refused.is_set() and (self.last_error or "").startswith("ConnectionRefusedError"):
                raise ConnectionError(
                    f"cannot connect to the MQTT broker at {where}: nothing is listening there"
                )
            if self._refused.is_set():
                raise ConnectionError(f"the MQTT broker at {where} refused this client: {self.last_error}")
            reason = self.last_error or "no answer"
            raise ConnectionError(
                f"cannot connect to the MQTT broker at {where} within {timeout:g}s: {reason}"
            )

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def stop(self) -> None:
        """Disconnect cleanly (the broker does not send the will) and stop reconnecting."""
        self._stopping = True
        if self._client.is_connected():
            self._client.disconnect()
            # Let the DISCONNECT packet go out before the socket closes.
            for _ in range(50):
                if not self._client.want_write():
                    break
                self._client.loop_write()
                await asyncio.sleep(0.01)
        self._close_socket()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        if self._connecting is not None and not self._connecting.done():
            # A connect still running in its thread would open a socket nobody closes.
            await asyncio.wait([self._connecting], timeout=30)
            await asyncio.sleep(0)  # let its socket-open callback run, then close that socket too
        self._close_socket()

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 0) -> None:
        """Call ``handler`` for every message matching ``topic_filter`` (now and after reconnects).

        Several handlers may share a filter; each gets every message, in subscription order.
        """
        handlers = self._handlers.get(topic_filter)
        if handlers is None:
            handlers = self._handlers[topic_filter] = []

            def on_message(_client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
                payload = bytes(message.payload)
                for each in handlers:
                    try:
                        each(message.topic, payload)
                    except Exception:  # a failing handler must not break the connection
                        log.exception("handler for %s failed on %s", topic_filter, message.topic)

            self._client.message_callback_add(topic_filter, on_message)
        handlers.append(handler)
        if qos > self._subscriptions.get(topic_filter, -1):
            self._subscriptions[topic_filter] = qos
            if self.connected:
                self._client.subscribe(topic_filter, qos)

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop every handler of ``topic_filter``."""
        self._client.message_callback_remove(topic_filter)
        self._handlers.pop(topic_filter, None)
        if self._subscriptions.pop(topic_filter, None) is not None and self.connected:
            self._client.unsubscribe(topic_filter)

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every (re)connection, once subscriptions are renewed."""
        self._connect_hooks.append(hook)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> bool:
        """Queue a message; never blocks, never raises. QoS 0 while disconnected is dropped
        (returns False); QoS 1 and 2 are kept (the newest :data:`HELD_LIMIT`) and sent once
        connected. A message MQTT cannot carry (a topic over 65,535 bytes or with a wildcard or
        NUL in it, text that is not UTF-8, a packet over 256 MiB) is refused: False, and an
        error in the log that names it (one line per reason and minute)."""
        try:
            data = payload.encode() if isinstance(payload, str) else payload
            topic_field = _topic_field(topic)
            if len(topic_field) + len(data) > MQTT_MAX_PACKET:
                raise ValueError(f"{len(data)} bytes of payload do not fit an MQTT packet")
        except ValueError as exc:  # UnicodeEncodeError included
            self._refuse(topic, exc)
            return False
        if qos > 0 and not self.connected:
            # Held here, not handed to paho: paho would send it as soon as a socket exists,
            # which can be before CONNECT (a protocol error the broker closes the connection for).
            self._held.append((topic, payload, qos, retain))
            if len(self._held) > HELD_LIMIT:
                del self._held[0]
                self.dropped += 1
            return True
        if qos == 0 and self._client.is_connected():
            # The hot path: paho builds a tracking object with a threading.Condition for every
            # publish, a third of the edge's time at full load. A QoS 0 PUBLISH needs no
            # tracking: encode it here and queue it behind paho's other packets, in order.
            packet = _packet(topic_field, data, retain)
            self._client._packet_queue(mqtt.PUBLISH, packet, 0, 0, _UNTRACKED)
            return True
        try:
            info = self._client.publish(topic, data, qos, retain)
        except ValueError as exc:  # what paho refuses beyond the checks above
            self._refuse(topic, exc)
            return False
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _refuse(self, topic: str, exc: ValueError) -> None:
        self.refused += 1
        kind = (type(exc).__name__, re.sub(r"\d+", "N", str(exc))[:60])  # numbers vary, reasons do not
        self._refusals.log(kind, f"bus {self.client_id}: not published to {quote(topic)}: {exc}")

    # ----------------------------------------------------------------- connection loop

    async def _run(self) -> None:
        assert self._loop is not None
        attempt = 0
        misc = asyncio.create_task(self._misc_loop())
        try:
            while not self._stopping:
                self._lost.clear()
                try:
                    self._connecting = self._loop.run_in_executor(None, self._connect_blocking)
                    await asyncio.shield(self._connecting)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, ssl.SSLCertVerificationError) or (
                        self._refused_is_final and isinstance(exc, ConnectionRefusedError)
                    ):
                        self._refused.set()
                    self._close_socket()
                    # Nothing answered at all (not a TLS or broker refusal): the port was closed.
                    unreachable = isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError)
                else:
                    unreachable = False
                    await self._lost.wait()
                    if self._stopping:
                        return
                    if self._session_ok:  # it was a working session, not a failed attempt
                        attempt = 0
                        self._session_ok = False
                    self._connected.clear()
                    self.reconnects += 1
                attempt += 1
                delay = backoff_delay(attempt, first=0.2, limit=self._max_backoff)
                log.info(
                    "bus %s: disconnected (%s); reconnecting in %.1fs", self.client_id, self.last_error, delay
                )
                await self._wait_to_retry(delay, port_seen_closed=unreachable)
        finally:
            misc.cancel()

    async def _wait_to_retry(self, delay: float, *, port_seen_closed: bool) -> None:
        """Sleep ``delay``, or less when the broker is seen restarting.

        The back-off protects a broker that refuses us (credentials, TLS, a full server) and the
        network from reconnect storms; it must not make a client that lost a restarting broker
        wait its full length (a local broker down for 10 s was rejoined 10.6 s after it was back).
        So the broker's TCP port is probed every :data:`PROBE_INTERVAL`: once it has been seen
        closed (nothing listening) and then accepts a connection again, the wait ends at once.
        A port that stays open (the broker is up and closed or refused our session) never ends
        the wait early, so a refusing broker still gets the full back-off.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(PROBE_INTERVAL, remaining))
            if loop.time() >= deadline:
                return
            if await self._port_accepts():
                if port_seen_closed:
                    log.info("bus %s: the broker's port accepts again; reconnecting now", self.client_id)
                    return
            else:
                port_seen_closed = True

    async def _port_accepts(self) -> bool:
        """Does the broker's TCP port accept a connection? (Closed again at once, no MQTT.)"""
        try:
            async with asyncio.timeout(PROBE_INTERVAL):
                _reader, writer = await asyncio.open_connection(self.address.host, self.address.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _connect_blocking(self) -> None:
        # Runs in a worker thread: DNS, TCP connect and TLS handshake may block.
        self._client.connect(self.address.host, self.address.port, self._keepalive)

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._client.socket() is not None:
                self._client.loop_misc()

    # ----------------------------------------------------------------- paho callbacks

    def _on_socket_open(self, _client: Any, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._watch, sock)

    def _watch(self, sock: Any) -> None:
        assert self._loop is not None
        if id(sock) != id(self._client.socket()) or sock.fileno() < 0:
            return  # closed again before the loop got to it (refused, handshake failed)
        self._sock = sock
        self._fd = sock.fileno()
        self._client.reset_buffer()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A descriptor number can be reused; drop whatever the selector still holds for it.
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._loop.add_reader(self._fd, self._readable)
        if self._client.want_write():
            self._loop.add_writer(self._fd, self._writable)

    def _readable(self) -> None:
        client = self._client
        client.fill()
        while client.socket() is not None and (client.buffered() or client.eof):
            before = client.buffered()
            client.loop_read()
            if client.buffered() == before and not client.eof:
                break  # a partial packet: wait for the rest

    def _writable(self) -> None:
        self._client.loop_write()

    def _on_socket_close(self, _client: Any, _userdata: Any, sock: Any) -> None:
        # paho calls this just before closing the socket: stop watching its descriptor now, in
        # the loop's thread, or a later socket reusing the number would meet a stale registration.
        if self._loop is None or self._loop.is_closed():
            return
        if _in_loop_thread(self._loop):
            self._unwatch(sock)
        else:
            self._loop.call_soon_threadsafe(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        if sock is not self._sock:
            return
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._sock = None
        self._fd = -1
        self._lost.set()

    def _on_register_write(self, _client: Any, _userdata: Any, sock: Any) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if _in_loop_thread(self._loop):
            self._want_write(sock, True)
        else:
            self._loop.call_soon_threadsafe(self._want_write, sock, True)

    def _on_unregister_write(self, _client: Any, _userdata: Any, sock: Any) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if _in_loop_thread(self._loop):
            self._want_write(sock, False)
        else:
            self._loop.call_soon_threadsafe(self._want_write, sock, False)

    def _want_write(self, sock: Any, wanted: bool) -> None:
        # Only for the socket being watched (before _watch runs, it picks want_write up itself).
        if self._loop is None or sock is not self._sock or self._fd < 0:
            return
        if wanted:
            self._loop.add_writer(self._fd, self._writable)
        else:
            self._loop.remove_writer(self._fd)

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            if reason.value in (4, 5, 134, 135):  # bad user name or password / not authorized
                self._refused.set()
            # Not from inside paho's callback: paho holds its callback lock while calling us, and
            # closing the socket needs that lock again (a self-deadlock).
            assert self._loop is not None
            self._loop.call_soon(self._close_socket)
            return
        for topic_filter, qos in self._subscriptions.items():
            self._client.subscribe(topic_filter, qos)
        self.last_error = None
        self._refused.clear()
        self._session_ok = True
        self._connected.set()
        held, self._held = self._held, []
        for topic, payload, qos, retain in held:
            self._client.publish(topic, payload, qos, retain)
        log.debug("bus %s: connected to %s:%s", self.client_id, self.address.host, self.address.port)
        for hook in self._connect_hooks:
            try:
                hook()
            except Exception:
                log.exception("bus %s: on-connect hook failed", self.client_id)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connected.clear()
        cause, self._client.read_error = self._client.read_error, None
        if isinstance(cause, ssl.SSLError) and "CERTIFICATE" in str(cause).upper():
            # With TLS 1.3 a broker checks the client's certificate after the handshake and
            # answers a missing or untrusted one with an alert on the first read: final.
            self.last_error = f"the broker rejected this client's TLS certificate ({cause.reason or cause})"
            self._refused.set()
        elif not self._stopping and self.last_error is None:
            self.last_error = f"disconnected: {cause or reason}"

    def _close_socket(self) -> None:
        sock = self._client.socket()
        if sock is not None:
            self._client._sock_close()  # paho calls on_socket_close, which unwatches
        self._connected.clear()
        self._lost.set()


class _Untracked:
    """Stands in for paho's per-message tracking object on QoS 0 packets queued directly."""

    rc = mqtt.MQTT_ERR_SUCCESS

    def _set_as_published(self) -> None:
        pass


_UNTRACKED: Any = _Untracked()


def _queued(data: bytes, sent: int) -> Any:
    """An entry of paho's outgoing queue for (the rest of) joined QoS 0 publishes."""
    return {
        "command": mqtt.PUBLISH,
        "mid": 0,
        "qos": 0,
        "pos": sent,
        "to_process": len(data) - sent,
        "packet": data,
        "info": _UNTRACKED,
    }


MQTT_MAX_PACKET = 268_435_455
"""The largest remaining length an MQTT packet can state (four bytes of varint)."""


@functools.lru_cache(maxsize=4096)
def _topic_field(topic: str) -> bytes:
    """A topic as a PUBLISH carries it (16-bit length, UTF-8); ValueError if MQTT forbids it."""
    encoded = topic.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
    if len(encoded) > 65_535:
        raise ValueError(f"the topic is {len(encoded)} bytes, more than MQTT's 65,535")
    if not encoded or "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError("a topic to publish to must not be empty or hold a wildcard (+, #) or NUL")
    return struct.pack("!H", len(encoded)) + encoded


def _publish_packet(topic: str, payload: bytes, retain: bool) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet (fixed header, topic, payload)."""
    return _packet(_topic_field(topic), payload, retain)


def _packet(body: bytes, payload: bytes, retain: bool) -> bytes:
    remaining = len(body) + len(payload)
    header = bytearray((0x31 if retain else 0x30,))
    while True:
        byte, remaining = remaining % 128, remaining // 128
        header.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    return bytes(header) + body + payload


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
