"""The embedded MQTT broker: amqtt in the edge process, listening on loopback only.

amqtt (pinned) refuses PUBLISH to topics starting with ``$`` ([MQTT-4.7.2-1] is about topics the
*server* reserves, such as ``$SYS``) and, worse, then stops delivering anything from that client
while still acknowledging its messages: a silent loss. KubeEdge's bus lives under ``$hw/``, so
:func:`_edge_broker_class` accepts client publishes to the edge's own ``$`` prefixes and treats them as
any other topic. Wildcard subscriptions (``#``, ``+/...``) still do not match ``$`` topics, as the
MQTT specification requires.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Iterator
from typing import Any

from kubeedge.errors import KubeEdgeError

log = logging.getLogger(__name__)

EDGE_DOLLAR_PREFIXES = ("$hw/", "$ke/")


@functools.cache
def _edge_broker_class() -> type[Any]:
    # amqtt is imported only when an embedded broker is started (it costs ~9 MB and 0.2 s).
    from amqtt.broker import Action, Broker, BrokerEvents

    class EdgeBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # amqtt iterates this dict with awaits in between when a client connects, and fails
            # with "dictionary changed size during iteration" if another client subscribes then.
            self._subscriptions = _SnapshotDict()

        async def _handle_message_delivery(
            self, client_session: Any, handler: Any, wait_deliver: asyncio.Future[Any]
        ) -> bool:
            message = wait_deliver.result()
            topic = getattr(message, "topic", None)
            if not topic or not topic.startswith(EDGE_DOLLAR_PREFIXES) or "#" in topic or "+" in topic:
                return bool(await super()._handle_message_delivery(client_session, handler, wait_deliver))
            client_id = client_session.client_id
            await self.plugins_manager.fire_event(
                BrokerEvents.MESSAGE_RECEIVED, client_id=client_id, message=message
            )
            if await self._topic_filtering(client_session, topic=topic, action=Action.PUBLISH):
                await self.plugins_manager.fire_event(
                    BrokerEvents.MESSAGE_BROADCAST, client_id=client_id, message=message
                )
                # amqtt delivers at the *subscription's* QoS; MQTT says min(publish, subscription).
                # Forcing the publish QoS keeps QoS 0 traffic at QoS 0 (no PUBACK round trips).
                await self._broadcast_message(client_session, topic, message.data, force_qos=message.qos)
                if message.publish_packet and message.publish_packet.retain_flag:
                    await self.retain_message(client_session, topic, message.data, message.qos)
            return True

    return EdgeBroker


class _SnapshotDict(dict[str, Any]):
    """A dict whose plain iteration walks a copy of its keys (safe across awaits)."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))


def _check_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise KubeEdgeError(
                f"bus.listen {host}:{port}: {exc.strerror or exc} (another broker or edge is using it? "
                "set bus.listen to a free port, or bus.url to use that broker)"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker for the edge bus (loopback only by default)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        _check_free(self.host, self.port)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only anonymous access on loopback; no $SYS publisher, no packet/event loggers.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        # amqtt logs every retried or late acknowledgement as a warning; keep its noise out
        # (unless its level was set on purpose: `kubeedge -vv` asks for its debug output)
        if logging.getLogger("amqtt").level == logging.NOTSET:
            logging.getLogger("amqtt").setLevel(logging.ERROR)
        self._broker = _edge_broker_class()(config)
        try:
            await self._broker.start()
        except Exception as exc:
            self._broker = None
            raise OSError(f"embedded MQTT broker cannot listen on {self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
