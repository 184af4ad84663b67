"""One connection to a device broker, shared by every device on it (:class:`BrokerLink`).

paho-mqtt is driven by the asyncio event loop (paho's documented "external event loop" API:
``loop_read`` when the socket is readable, ``loop_write`` while paho has something to send,
``loop_misc`` every second for keep-alives), so there is no network thread: no hand-over of each
message between threads and no contention for the GIL, which measured 20-30 % of the mapper's CPU
at 1,000 messages/s with paho's own thread. Only the blocking TCP/TLS connect runs in a worker
thread. Each message is handed to the listeners of the topics it matches.

paho does not reconnect on its own here: a lost broker ends the link, every device on it learns
it (and goes offline with the reason), and the mapper runtime reconnects them with its back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import ssl
import threading
import uuid
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from kubeedge import DeviceUnreachable, SharedConnections
from kubeedge_mapper_mqtt.config import MqttConfig, TlsConfig

log = logging.getLogger(__name__)
READ_PACKETS = 256
"""Packets paho reads per readable event (it stops early when the socket has no more)."""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float
    """Event-loop time it reached the mapper."""


Listener = Callable[[Message], None]
"""Called on the event loop for each message on a watched topic; must not block."""
LinkLost = Callable[[str], None]


class BrokerLink:
    """A paho client connected to one broker, with reference-counted subscriptions."""

    SYNC_PREFIX = "kubeedge-mapper-mqtt/sync/"

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.where = f"{config.host}:{config.port}"
        self.client_id = config.client_id or f"kubeedge-mqtt-{uuid.uuid4().hex[:12]}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            reconnect_on_failure=False,
        )
        self.loop = asyncio.get_running_loop()
        self.lost_reason: str | None = None
        self._exact: dict[str, list[Listener]] = {}
        self._wild: dict[str, list[Listener]] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}
        """Each wildcard filter as a regular expression (paho's topic_matches_sub builds a matcher
        at every call: too slow for every message)."""
        self._subscribed: dict[str, int] = {}
        """filter -> users."""
        self._lost_listeners: list[LinkLost] = []
        self._loop_thread = threading.get_ident()
        self._misc: asyncio.Task[None] | None = None
        self._socket_closed = asyncio.Event()
        self._connack: asyncio.Future[None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._syncs: dict[str, asyncio.Future[None]] = {}
        self._sync_ids = itertools.count()
        self.received = 0

    # ----------------------------------------------------------------- connection

    async def open(self, timeout: float = 10.0) -> None:
        config = self.config
        client = self.client
        if config.username is not None:
            client.username_pw_set(config.username, self._password())
        if config.uses_tls:
            client.tls_set_context(await asyncio.to_thread(_tls_context, config.tls))
            if isinstance(config.tls, TlsConfig) and config.tls.insecure:
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.connect_timeout = timeout
        self._connack = self.loop.create_future()
        try:
            await asyncio.to_thread(client.connect, config.host, config.port, config.keepalive)
        except (OSError, ssl.SSLError) as exc:
            raise DeviceUnreachable(f"cannot connect to the broker {self.where}: {exc}") from None
        self._misc = self.loop.create_task(self._keepalive(), name=f"mqtt-keepalive:{self.where}")
        try:
            await asyncio.wait_for(self._connack, timeout)
        except TimeoutError:
            await self.close()
            raise DeviceUnreachable(
                f"the broker {self.where} did not answer CONNECT within {timeout:g}s"
            ) from None
        except DeviceUnreachable:
            await self.close()
            raise
        self._sync_topic = self.SYNC_PREFIX + self.client_id
        self.subscribe_filter(self._sync_topic, self._on_sync)

    def _password(self) -> str | None:
        config = self.config
        if config.password_env is not None:
            password = os.environ.get(config.password_env)
            if password is None:
                raise DeviceUnreachable(
                    f"the environment variable {config.password_env} (passwordEnv) is not set"
                )
            return password
        if config.password_file is not None:
            try:
                return config.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise DeviceUnreachable(
                    f"cannot read passwordFile {config.password_file}: {exc.strerror}"
                ) from None
        return None

    async def close(self) -> None:
        """Disconnect (DISCONNECT sent, socket closed); never raises."""
        self.lost_reason = self.lost_reason or "closed"
        if self._misc is not None:
            self._misc.cancel()
        sock = self.client.socket()
        if sock is None:
            return
        with contextlib.suppress(Exception):
            self.client.disconnect()  # paho closes the socket once DISCONNECT is written
            await asyncio.wait_for(self._socket_closed.wait(), 1.0)
        if self.client.socket() is not None:  # the broker stopped reading: close it ourselves
            self._unwatch(sock)
            with contextlib.suppress(OSError):
                sock.close()

    # paho's socket, watched by the event loop ------------------------------------

    def _in_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        else:  # paho's connect() in its worker thread
            self.loop.call_soon_threadsafe(callback, *args)

    def _on_socket_open(self, _c: Any, _u: Any, sock: Any) -> None:
        self._in_loop(self._watch, sock)

    def _watch(self, sock: Any) -> None:
        self.loop.add_reader(sock, self._readable)
        if self.client.want_write():
            self.loop.add_writer(sock, self._writable)

    def _on_socket_close(self, _c: Any, _u: Any, sock: Any) -> None:
        self._in_loop(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(sock)
        with contextlib.suppress(Exception):
            self.loop.remove_writer(sock)
        self._socket_closed.set()

    def _on_register_write(self, _c: Any, _u: Any, sock: Any) -> None:
        self._in_loop(self._want_write, sock, True)

    def _on_unregister_write(self, _c: Any, _u: Any, sock: Any) -> None:
        self._in_loop(self._want_write, sock, False)

    def _want_write(self, sock: Any, wanted: bool) -> None:
        if self.client.socket() is not sock:
            return
        if wanted:
            self.loop.add_writer(sock, self._writable)
        else:
            with contextlib.suppress(Exception):
                self.loop.remove_writer(sock)

    def _readable(self) -> None:
        self.client.loop_read(READ_PACKETS)
        sock = self.client.socket()
        # TLS: records already decrypted wait in the SSL object, where epoll cannot see them
        while isinstance(sock, ssl.SSLSocket) and sock.pending():
            self.client.loop_read(READ_PACKETS)
            sock = self.client.socket()

    def _writable(self) -> None:
        self.client.loop_write()

    async def _keepalive(self) -> None:
        while self.client.socket() is not None:
            self.client.loop_misc()  # pings, and a broker that stopped answering them
            await asyncio.sleep(1.0)

    @property
    def alive(self) -> bool:
        return self.lost_reason is None

    def on_lost(self, callback: LinkLost) -> Callable[[], None]:
        """Call ``callback(reason)`` when the connection ends; returns the way to stop."""
        self._lost_listeners.append(callback)
        return lambda: self._lost_listeners.remove(callback) if callback in self._lost_listeners else None

    # paho's thread ------------------------------------------------------------

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connected(None if not reason.is_failure else str(reason))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._in_loop(self._lost, f"lost the broker {self.where}: {reason}")

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: Any, _props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        self._acked(mid, ", ".join(failed) or None)

    def _on_message(self, _c: Any, _u: Any, raw: mqtt.MQTTMessage) -> None:
        self.received += 1
        message = Message(raw.topic, bytes(raw.payload), bool(raw.retain), self.loop.time())
        for listener in self._exact.get(message.topic, ()):
            listener(message)
        if self._wild:
            for pattern, listeners in self._wild.items():
                if self._patterns[pattern].match(message.topic):
                    for listener in listeners:
                        listener(message)

    # the event loop -----------------------------------------------------------

    def _connected(self, refused: str | None) -> None:
        future = self._connack
        if future is None or future.done():
            return
        if refused is None:
            future.set_result(None)
        else:
            future.set_exception(
                DeviceUnreachable(f"the broker {self.where} refused the connection: {refused}")
            )

    def _lost(self, reason: str) -> None:
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        log.info("%s", reason)
        for future in [
            *self._acks.values(),
            *self._syncs.values(),
            *([self._connack] if self._connack else []),
        ]:
            if not future.done():
                future.set_exception(DeviceUnreachable(reason))
        for callback in list(self._lost_listeners):
            callback(reason)

    def _acked(self, mid: int, failure: str | None) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            if failure:
                future.set_exception(
                    DeviceUnreachable(f"the broker {self.where} refused a subscription: {failure}")
                )
            else:
                future.set_result(None)

    # ----------------------------------------------------------------- subscriptions

    def subscribe_filter(self, topic: str, listener: Listener, qos: int = 0) -> asyncio.Future[None]:
        """Hand messages on ``topic`` (a filter) to ``listener``; the future resolves at SUBACK."""
        wild = "+" in topic or "#" in topic
        table = self._wild if wild else self._exact
        table.setdefault(topic, []).append(listener)
        if wild:
            self._patterns[topic] = filter_pattern(topic)
        users = self._subscribed.get(topic, 0)
        self._subscribed[topic] = users + 1
        future: asyncio.Future[None] = self.loop.create_future()
        if users:
            future.set_result(None)  # retained messages went to the first listener; see Watch
            return future
        if not self.alive:
            future.set_exception(DeviceUnreachable(self.lost_reason or "closed"))
            return future
        result, mid = self.client.subscribe(topic, qos)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            future.set_exception(
                DeviceUnreachable(f"cannot subscribe on {self.where}: {mqtt.error_string(result)}")
            )
        else:
            self._acks[mid] = future
        return future

    def unsubscribe_filter(self, topic: str, listener: Listener) -> None:
        table = self._wild if ("+" in topic or "#" in topic) else self._exact
        listeners = table.get(topic, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            table.pop(topic, None)
            self._patterns.pop(topic, None)
        users = self._subscribed.get(topic, 0) - 1
        if users > 0:
            self._subscribed[topic] = users
            return
        self._subscribed.pop(topic, None)
        if self.alive:
            with contextlib.suppress(Exception):
                self.client.unsubscribe(topic)

    async def sync(self, timeout: float) -> None:
        """Return once the broker has sent everything it queued for us before now (the retained
        messages of new subscriptions): a message to ourselves comes back after them."""
        token = str(next(self._sync_ids))
        future: asyncio.Future[None] = self.loop.create_future()
        self._syncs[token] = future
        try:
            self.publish(self._sync_topic, token.encode(), 0, False)
            await asyncio.wait_for(future, timeout)
        finally:
            self._syncs.pop(token, None)

    def _on_sync(self, message: Message) -> None:
        future = self._syncs.get(message.payload.decode("ascii", errors="replace"))
        if future is not None and not future.done():
            future.set_result(None)

    def retained_for_new_listener(self, topic: str) -> bool:
        """Whether a new listener of ``topic`` misses its retained message (another listener's
        subscription got it); the caller then asks for it again."""
        return self._subscribed.get(topic, 0) > 1

    def resubscribe(self, topic: str, qos: int) -> asyncio.Future[None]:
        """Subscribe again to a filter already subscribed: the broker sends its retained message
        again (MQTT 3.1.1 §3.8.4), which every listener of the filter then sees."""
        future: asyncio.Future[None] = self.loop.create_future()
        result, mid = self.client.subscribe(topic, qos)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            future.set_exception(
                DeviceUnreachable(f"cannot subscribe on {self.where}: {mqtt.error_string(result)}")
            )
        else:
            self._acks[mid] = future
        return future

    # ----------------------------------------------------------------- publishing

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Queue a message (paho's thread sends it); ``DeviceUnreachable`` if the link is down."""
        if not self.alive:
            raise DeviceUnreachable(self.lost_reason or "the broker connection is closed")
        info = self.client.publish(topic, payload, qos, retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise DeviceUnreachable(f"cannot publish to {self.where}: {mqtt.error_string(info.rc)}")


def filter_pattern(topic_filter: str) -> re.Pattern[str]:
    """An MQTT topic filter (``+`` one level, ``#`` the rest) as a regular expression; topics
    starting with ``$`` match only filters that start with it (MQTT 3.1.1 §4.7.2)."""
    parts = []
    for level in topic_filter.split("/"):
        parts.append("[^/]*" if level == "+" else ".*" if level == "#" else re.escape(level))
    pattern = "/".join(parts)
    if topic_filter.endswith("/#"):  # "a/#" matches "a" too
        pattern = pattern[: -len("/.*")] + "(/.*)?"
    if not topic_filter.startswith("$"):
        pattern = r"(?!\$)" + pattern
    return re.compile(pattern + r"\Z")


def _tls_context(tls: TlsConfig | bool | None) -> ssl.SSLContext:
    settings = tls if isinstance(tls, TlsConfig) else TlsConfig()
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    if settings.cert_file is not None and settings.key_file is not None:
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    if settings.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Links:
    """One :class:`BrokerLink` per broker, credentials and client id, for every device of the
    event loop (a process has one; a test suite runs one per test, and a connection is watched
    by the loop that opened it)."""

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedConnections[BrokerLink]] = (
            weakref.WeakKeyDictionary()
        )
        self._configs: dict[Hashable, MqttConfig] = {}
        self.timeout = 10.0

    @property
    def pool(self) -> SharedConnections[BrokerLink]:
        """The running event loop's connections."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = SharedConnections(self._open, self._close)
        return pool

    async def _open(self, key: Hashable) -> BrokerLink:
        link = BrokerLink(self._configs[key])
        await link.open(self.timeout)
        return link

    @staticmethod
    async def _close(link: BrokerLink) -> None:
        await link.close()

    async def acquire(self, config: MqttConfig) -> Any:
        key = config.link()
        self._configs[key] = config
        entry = await self.pool.acquire(key)
        if not entry.connection.alive:  # lost since: the next user gets a new connection
            await self.pool.release(entry)
            await self.pool.discard(entry)
            entry = await self.pool.acquire(key)
        return entry


LINKS = _Links()
