"""Fixtures: a real cloud in process (hub with TLS from a trustme CA, files source, SQLite on disk)
and real websocket clients (hub_client.HubClient)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from hub_client import HubClient
from kubeedge_cloud.config import load_cloud_config
from kubeedge_cloud.controllers.devices import DeviceController
from kubeedge_cloud.hub.server import HubModule
from kubeedge_cloud.runtime import CloudCore
from kubeedge_cloud.sources.files import FilesSource
from kubeedge_cloud.tokens import create_token, load_or_create_secret


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "hub.crt", tmp_path / "hub.key"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        with cert_file.open("ab") as out:
            out.write(extra.bytes())
    return cert_file, key_file


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@dataclass
class CloudHandle:
    folder: Path
    config_path: Path
    client_tls: ssl.SSLContext
    core: CloudCore | None = None
    clients: list[HubClient] = field(default_factory=list)

    @property
    def hub(self) -> HubModule:
        assert self.core is not None
        return self.core.context.find(HubModule)

    @property
    def controller(self) -> DeviceController:
        assert self.core is not None
        return self.core.context.find(DeviceController)

    @property
    def source(self) -> FilesSource:
        assert self.core is not None
        return self.core.context.find(FilesSource)

    @property
    def url(self) -> str:
        return self.hub.url.replace("127.0.0.1", "localhost")

    @property
    def secret(self) -> bytes:
        assert self.core is not None
        return load_or_create_secret(self.core.config.secret_path)

    def token(self, node: str, ttl: float = 3600, now: dt.datetime | None = None) -> str:
        return create_token(self.secret, node, dt.timedelta(seconds=ttl), now)

    async def start(self) -> None:
        self.core = CloudCore(load_cloud_config(self.config_path))
        await self.core.start()

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()
        if self.core is not None:
            await self.core.stop()
            self.core = None

    async def connect(self, node: str, token: str | None = "", **kwargs: Any) -> HubClient:
        client = await HubClient.open(
            self.url, node, self.token(node) if token == "" else token, self.client_tls, **kwargs
        )
        self.clients.append(client)
        return client

    def write(self, name: str, *documents: dict[str, Any]) -> None:
        (self.folder / name).write_text(yaml.safe_dump_all(documents))

    async def reload(self) -> None:
        """Read the folder now (tests do not wait for the file watcher, which is covered apart)."""
        await self.source.reload()
        await self.settled()

    async def settled(self) -> None:
        """Until the controller has taken every change of the source and reconciled the nodes."""
        controller = self.controller
        async with asyncio.timeout(10):
            while True:
                listing = await self.source.list()
                cached = {
                    o.resource: o.version for o in (*controller.devices.values(), *controller.models.values())
                }
                if cached == {o.resource: o.version for o in listing.objects} and not controller._queue:
                    await asyncio.sleep(0)
                    if not controller._queue:
                        return
                await asyncio.sleep(0.01)


@pytest.fixture
async def cloud_factory(
    tmp_path: Path, tls_files: tuple[Path, Path], client_tls: ssl.SSLContext
) -> AsyncIterator[Callable[..., Any]]:
    handles: list[CloudHandle] = []

    async def make(start: bool = True, **settings: Any) -> CloudHandle:
        folder = tmp_path / "manifests"
        folder.mkdir(exist_ok=True)
        config = {
            "listen": "127.0.0.1:0",
            "tls": {"certFile": str(tls_files[0]), "keyFile": str(tls_files[1])},
            "dataDir": str(tmp_path / "data"),
            "source": {"kind": "files", "path": str(folder), "debounceMs": 20, "rescanMs": 200},
            "resend": {"firstMs": 200, "maxMs": 1000},
            "status": {"flushMs": 10},
            **settings,
        }
        config_path = tmp_path / "cloud.yaml"
        config_path.write_text(yaml.safe_dump(config))
        handle = CloudHandle(folder, config_path, client_tls)
        handles.append(handle)
        if start:
            await handle.start()
        return handle

    yield make
    for handle in handles:
        await handle.stop()


@pytest.fixture
async def cloud(cloud_factory: Callable[..., Any]) -> CloudHandle:
    handle: CloudHandle = await cloud_factory()
    return handle
