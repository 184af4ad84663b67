"""The edge MQTT bus: an embedded broker and an asyncio client."""

from kubeedge.bus.broker import EmbeddedBroker, free_port
from kubeedge.bus.client import BusClient

__all__ = ["BusClient", "EmbeddedBroker", "free_port"]
