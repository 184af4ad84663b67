"""A real websocket client speaking the cloud-edge channel, as an edge would: for the cloud's tests.

It is deliberately small and literal (no retries, no outbox): each test drives the conversation
message by message and looks at every frame the hub sends.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from kubeedge.api import channel
from kubeedge.api.channel import Header, Message, Route


class HubClient:
    def __init__(self, connection: ClientConnection, node: str) -> None:
        self.connection = connection
        self.node = node
        self.received: list[Message] = []

    @classmethod
    async def open(
        cls, url: str, node: str, token: str | None, ca: ssl.SSLContext | None, **kwargs: Any
    ) -> HubClient:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        connection = await connect(
            f"{url}{channel.CHANNEL_PATH.format(node=node)}",
            ssl=ca,
            additional_headers=headers,
            max_size=None,
            open_timeout=10,
            **kwargs,
        )
        return cls(connection, node)

    async def close(self) -> None:
        await self.connection.close()

    async def send(self, message: Message | bytes | str) -> Message | None:
        if isinstance(message, Message):
            await self.connection.send(message.to_json().decode())
            return message
        await self.connection.send(message)
        return None

    async def recv(self, timeout: float = 10) -> Message:
        frame = await asyncio.wait_for(self.connection.recv(), timeout)
        message = channel.parse_message(frame)
        self.received.append(message)
        return message

    async def sync(self, versions: dict[str, str] | None = None, instance: str = "test-edge") -> Message:
        return await self.send(  # type: ignore[return-value]
            Message(
                route=Route(source="edgehub", group="hub", operation="sync"),
                content={"instance": instance, "versions": versions or {}},
            )
        )

    async def until_synced(self, ack: bool = True, timeout: float = 10) -> tuple[list[Message], int]:
        """The resource messages before ``hub/synced`` (acked unless ``ack`` is false), and its count."""
        objects = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv()
                if message.route.group == "resource":
                    objects.append(message)
                    if ack:
                        await self.ack(message)
                elif message.route.operation == "synced":
                    return objects, int(message.content["sent"])

    async def ack(self, message: Message) -> None:
        await self.send(
            Message(
                header=Header(parent_msg_id=message.id),
                route=Route(source="edgehub", group="hub", operation="ack"),
            )
        )

    async def report(self, devices: dict[str, Any]) -> Message:
        return await self.send(  # type: ignore[return-value]
            Message(
                route=Route(source="edgehub", group="twin", operation="report"),
                content={"devices": devices},
            )
        )

    async def answer_to(self, message: Message, timeout: float = 10) -> Message:
        """The hub's ack or error for ``message`` (resource messages arriving meanwhile are kept)."""
        async with asyncio.timeout(timeout):
            while True:
                got = await self.recv()
                if got.route.group == "hub" and got.header.parent_msg_id == message.id:
                    return got

    async def next_of(self, group: str, timeout: float = 10) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                got = await self.recv()
                if got.route.group == group:
                    return got

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


def reported(value: str, at: int = 1, kind: str = "float", **more: Any) -> dict[str, Any]:
    """One property's report, as the edge sends it."""
    return {"reported": value, "reported_at": at, "type": kind, **more}


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Until ``check()`` holds (state the hub changes between two frames it sends)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


__all__ = ["HubClient", "channel", "reported", "wait_for"]
