"""The hub: the websocket server edge nodes connect to (``wss://HOST:PORT/v1/nodes/{node}/events``).

Before the upgrade (websockets' ``process_request``), the path must name a node and the bearer
token must be valid for it: a refusal is an HTTP 401 (missing, malformed, badly signed or expired
token) or 403 (a token for another node), with the reason in the body, logged on the cloud (one
line per peer and reason a minute). One connection per node: a new one replaces the old (the old
may be a half-open socket the node gave up on). Frames beyond ``limits.maxMessageBytes`` close
the connection (1009, "message too big"); beyond ``limits.messagesPerSecond`` the connection is
read more slowly. Connects, syncs and disconnects are summarised in one INFO line a second
(:mod:`kubeedge_cloud.hub.activity`): a connect storm of thousands of edges is not thousands of
lines.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import ssl
from typing import Any

from pydantic import BaseModel
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kubeedge.ratelimit import ThrottledLog
from kubeedge_cloud.controllers.devices import DeviceController
from kubeedge_cloud.hub.activity import NodeActivityLog
from kubeedge_cloud.hub.session import Session
from kubeedge_cloud.module import CloudContext, CloudModule
from kubeedge_cloud.tokens import check_token, load_or_create_secret

log = logging.getLogger(__name__)
refused_connections = ThrottledLog(log)

PATH = re.compile(r"^/v1/nodes/([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)/events$")


class HubModule(CloudModule):
    name = "hub"
    order = 30

    def __init__(self, context: CloudContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        self.sessions: dict[str, Session] = {}
        self.server: Server | None = None
        self.secret = b""
        self.refused = 0
        self.closed_too_big = 0
        self.url = ""
        self._closing: set[asyncio.Future[None]] = set()
        self.activity = NodeActivityLog(log)
        """Connects, syncs and disconnects: one INFO line a second at most (each at DEBUG)."""

    async def start(self) -> None:
        config = self.context.config
        self.secret = load_or_create_secret(config.secret_path)
        self.controller = self.context.find(DeviceController)
        tls: ssl.SSLContext | None = None
        if config.tls is not None:
            _small_tls_read_buffers()
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(config.tls.cert_file, config.tls.key_file)
        host, port = config.listen_address
        self.server = await serve(
            self._serve,
            host,
            port,
            ssl=tls,
            process_request=self._check_request,
            max_size=config.limits.max_message_bytes,
            # Per-message deflate would cost every connection its own zlib buffers: with thousands
            # of nodes, most of the cloud's memory, for frames of a few hundred bytes.
            compression=None,
            ping_interval=20,
            ping_timeout=20,
            server_header=None,
        )
        bound = next(iter(self.server.sockets)).getsockname()
        scheme = "wss" if tls else "ws"
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"{scheme}://{shown}:{bound[1]}"
        log.info("hub listening on %s", self.url)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        self.activity.flush()

    def describe(self) -> dict[str, Any]:
        return {"hub": self.url}

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        peer = _peer(connection)
        match = PATH.match(request.path.split("?", 1)[0])
        if match is None:
            reason = "no such path: use /v1/nodes/NODE/events"
            return self._refuse(connection, peer, http.HTTPStatus.NOT_FOUND, reason)
        node = match.group(1)
        token = _bearer(request.headers)
        refusal = check_token(self.secret, token, node)
        if refusal is not None:
            return self._refuse(connection, peer, http.HTTPStatus(refusal.status), refusal.reason, node)
        return None

    def _refuse(
        self, connection: ServerConnection, peer: str, status: http.HTTPStatus, reason: str, node: str = "?"
    ) -> Response:
        self.refused += 1
        refused_connections.log(
            (peer, str(status.value), reason[:40]),
            f"refused a connection from {peer} for node {node}: {status.value} {reason}",
        )
        return connection.respond(status, reason + "\n")

    async def _serve(self, connection: ServerConnection) -> None:
        match = PATH.match(connection.request.path.split("?", 1)[0]) if connection.request else None
        assert match is not None  # checked before the upgrade
        node = match.group(1)
        session = Session(connection, node, self.controller, self.context.config, self.activity)
        previous = self.sessions.get(node)
        self.sessions[node] = session
        self.controller.attach(session)
        if previous is not None:
            # not awaited: a half-open old socket would hold the new session for the close timeout
            closing = asyncio.ensure_future(previous.close("replaced by a newer connection of the same node"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self.activity.connected(node, _peer(connection), replaced=previous is not None)
        source = self.controller.source
        if source is not None:
            source.node_connected(node, _peer(connection))
        try:
            await session.run()
        finally:
            self.controller.detach(session)
            if self.sessions.get(node) is session:
                del self.sessions[node]
                if source is not None:
                    source.node_disconnected(node)
            sent = connection.protocol.close_sent
            code = sent.code if sent is not None else connection.close_code
            if code == 1009:
                self.closed_too_big += 1
                limit = self.context.config.limits.max_message_bytes
                refused_connections.log(
                    (node, "1009"), f"node {node}: closed its connection: a message over {limit} bytes"
                )
            reason = sent.reason if sent is not None else connection.close_reason
            self.activity.disconnected(node, code, reason or "")


def _bearer(headers: Headers) -> str | None:
    value = headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _peer(connection: ServerConnection) -> str:
    try:
        address = connection.remote_address
        return str(address[0]) if address else "?"
    except (OSError, AttributeError):
        return "?"


TLS_READ_BUFFER = 32 * 1024


def _small_tls_read_buffers() -> None:
    """Give each TLS connection a 32 KiB read buffer instead of asyncio's 256 KiB.

    CPython's asyncio (``sslproto.SSLProtocol``, 3.11 and later) allocates a zero-filled
    ``max_size`` bytearray per TLS connection: with a thousand edge nodes connected, 256 MB of the
    hub's RSS was read buffers that never hold more than a few TLS records (16 KiB each) at a
    time (hack/bench/cloud_fanin.py). The class attribute is the one knob asyncio offers; it only
    bounds how much is read from the socket per call, so larger frames just take more reads.
    """
    try:
        from asyncio import sslproto
    except ImportError:  # pragma: no cover - every CPython has it
        return
    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
