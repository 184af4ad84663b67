"""A client of a running edge, over its bus with KubeEdge's own topics: what the CLI uses.

Requests carry a fresh ``event_id`` and the answer with the same id is awaited, so several
clients can ask at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from kubeedge.api import topics
from kubeedge.api.twin import now_ms
from kubeedge.api.values import normalize_type, values_equal
from kubeedge.bus import BusClient
from kubeedge.errors import KubeEdgeError


class EdgeRequestError(KubeEdgeError):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        super().__init__(f"{reason} (code {code})")


class EdgeClient:
    def __init__(self, bus: BusClient, node: str, timeout: float = 5.0) -> None:
        self.bus = bus
        self.node = node
        self.timeout = timeout
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribed: set[str] = set()

    def _on_result(self, _topic: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        future = self._waiting.get(body.get("event_id", "")) if isinstance(body, dict) else None
        if future is not None and not future.done():
            future.set_result(body)

    async def _request(self, topic: str, result_topic: str, body: dict[str, Any]) -> dict[str, Any]:
        if result_topic not in self._subscribed:
            self.bus.subscribe(result_topic, self._on_result, qos=1)
            self._subscribed.add(result_topic)
            await asyncio.sleep(0.05)  # let the SUBSCRIBE reach the broker before the request
        event_id = body.setdefault("event_id", uuid.uuid4().hex)
        body.setdefault("timestamp", now_ms())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[event_id] = future
        try:
            self.bus.publish(topic, json.dumps(body).encode(), qos=1)
            try:
                answer = await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                raise EdgeRequestError(
                    504, f"no answer from edge node {self.node!r} within {self.timeout:g}s on {topic}"
                ) from None
        finally:
            self._waiting.pop(event_id, None)
        if answer.get("code"):
            raise EdgeRequestError(int(answer["code"]), str(answer.get("reason", "")))
        return answer

    async def devices(self) -> list[dict[str, Any]]:
        """The devices the edge serves (membership entries)."""
        return list((await self.membership()).get("devices") or [])

    async def membership(self, other_nodes: bool = False) -> dict[str, Any]:
        """The whole ``membership/get`` answer: ``devices``, and our additions ``problems`` (the
        device source's), ``other_nodes_count`` and, if asked, ``other_nodes`` (devices in the
        manifests for other nodes)."""
        return await self._request(
            topics.node_topic(self.node, topics.MEMBERSHIP_GET),
            topics.node_topic(self.node, topics.MEMBERSHIP_GET_RESULT),
            {"other_nodes": True} if other_nodes else {},
        )

    async def twin(self, key: str) -> dict[str, Any]:
        namespace, name = split_key(key)
        answer = await self._request(
            topics.device_topic(namespace, name, topics.TWIN_GET),
            topics.device_topic(namespace, name, topics.TWIN_GET_RESULT),
            {},
        )
        return dict(answer.get("twin") or {})

    async def set_desired(self, key: str, prop: str, value: str) -> dict[str, Any]:
        namespace, name = split_key(key)
        answer = await self._request(
            topics.device_topic(namespace, name, topics.TWIN_UPDATE),
            topics.device_topic(namespace, name, topics.TWIN_UPDATE_RESULT),
            {"twin": {prop: {"expected": {"value": value}}}},
        )
        return dict((answer.get("twin") or {}).get(prop) or {})

    async def wait_reported(self, key: str, prop: str, value: str, timeout: float) -> float:
        """Wait until the reported value equals ``value``; returns the seconds it took."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            twin = (await self.twin(key)).get(prop) or {}
            metadata = twin.get("metadata") or {}
            reported = (twin.get("actual") or {}).get("value")
            if values_equal(normalize_type(metadata.get("type")), reported, value):
                return loop.time() - start
            error = metadata.get("error")
            if error and "write" in error:
                raise EdgeRequestError(502, f"{key} {prop}: {error}")
            if loop.time() - start > timeout:
                now = f"it reports {reported!r}" if reported is not None else "it reported nothing"
                raise EdgeRequestError(
                    504,
                    f"{key} {prop} did not report {value!r} within {timeout:g}s ({now}"
                    + (f"; {error}" if error else "")
                    + await self._why_not_served(key)
                    + "); the edge keeps re-sending it with back-off",
                )
            await asyncio.sleep(0.1)

    async def _why_not_served(self, key: str) -> str:
        """``; the device is STATE: REASON`` when it is not online (no mapper, offline), else ""."""
        namespace, name = split_key(key)
        for entry in await self.devices():
            if entry.get("id") != f"{namespace}/{name}" or entry.get("state") in ("online", "ok", None):
                continue
            reason = ((entry.get("attributes") or {}).get("stateReason") or {}).get("value")
            return f"; the device is {entry['state']}" + (f": {reason}" if reason else "")
        return ""


def split_key(key: str, default_namespace: str = "default") -> tuple[str, str]:
    """``ns/name`` or ``name`` (in the default namespace)."""
    namespace, _, name = key.rpartition("/")
    return namespace or default_namespace, name
