"""The files source (the embedded default): Devices and DeviceModels from a folder of manifests.

The folder is read by :class:`kubeedge.manifest_folder.ManifestFolder`, the edge standalone
source's reader: validated as ``kubeedge validate`` does, within the manifest limits, followed
live (watchfiles, with a rescan as a safety net); a file or object with a problem keeps its last
good version and never holds back the others. Versions and status live in the cloud's SQLite
database (:mod:`kubeedge_cloud.sources.store`).

While the folder has a problem that left an object without a last good version (a file broken
when the cloud starts), nothing is deleted: objects stored by an earlier run stay until the
folder reads complete again, so a typo never takes devices away from their edges.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from kubeedge.api.channel import split_resource
from kubeedge.api.device import Device, DeviceModel
from kubeedge.api.manifests import ManifestLimits
from kubeedge.errors import ConfigError
from kubeedge.manifest_folder import FolderContents, ManifestFolder
from kubeedge_cloud.module import CloudContext
from kubeedge_cloud.sources.source import (
    DeviceStatusRecord,
    Gone,
    Listing,
    SourceObject,
    StatusChange,
    WatchEvent,
    sendable,
)
from kubeedge_cloud.sources.source import Source as _Source
from kubeedge_cloud.sources.store import Store, StoredObject, status_record

log = logging.getLogger(__name__)


class FilesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: Path
    """The folder of Device/DeviceModel manifests (relative to cloud.yaml)."""
    debounce_ms: int = Field(default=300, alias="debounceMs", ge=10)
    rescan_ms: int = Field(default=5000, alias="rescanMs", ge=50)
    limits: ManifestLimits = ManifestLimits()
    history: int = Field(default=10_000, ge=1)
    """Changes remembered for watchers; one further behind lists again."""


class FilesSource(_Source):
    name = "files"
    settings_model = FilesSettings

    def __init__(self, context: CloudContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        assert isinstance(settings, FilesSettings)
        self.folder = context.config.resolve(settings.path)
        self.manifests = ManifestFolder(self.folder, settings.limits, log)
        self.store = Store(context.config.database_path)
        self.objects: dict[str, SourceObject] = {}
        self.history: deque[WatchEvent] = deque(maxlen=settings.history)
        self._changed = asyncio.Condition()
        self._reading = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_contents = FolderContents()
        self.head = 0
        """The revision of the newest change in :attr:`history` (the store's counter once told)."""

    async def start(self) -> None:
        if not self.folder.is_dir():
            raise ConfigError(f"source.path: {self.folder} is not a folder")
        await self.store.open()
        self.objects = {o.resource: _parse(o) for o in self.store.objects.values()}
        self.head = self.store.counter
        await self.reload()
        settings = self.settings
        assert isinstance(settings, FilesSettings)
        self._task = asyncio.create_task(
            self.manifests.follow(self.reload, self._stop, settings.debounce_ms, settings.rescan_ms),
            name="files-source-follow",
        )

    async def open_view(self) -> None:
        """Open for reading only (the CLI): what the running cloud last stored."""
        self.store = Store(self.context.config.database_path, read_only=True)
        if not self.context.config.database_path.exists():
            raise ConfigError(
                f"dataDir: no cloud database at {self.context.config.database_path}: has the cloud run "
                "with this configuration?"
            )
        await self.store.open()
        self.objects = {o.resource: _parse(o) for o in self.store.objects.values()}
        self.head = self.store.counter

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.store.close()

    def describe(self) -> dict[str, Any]:
        devices = sum(1 for o in self.objects.values() if o.kind == "device")
        models = len(self.objects) - devices
        return {"source": f"files {self.folder} ({devices} device(s), {models} model(s))"}

    async def reload(self) -> None:
        """Read the folder and store what changed, with new versions; tell the watchers."""
        async with self._reading:
            contents = await asyncio.to_thread(self.manifests.read)
            self.last_contents = contents
            current: dict[str, tuple[str, bytes]] = {}
            parsed: dict[str, Device | DeviceModel] = {}
            for obj in contents.objects:
                kind = "device" if isinstance(obj, Device) else "devicemodel"
                resource = f"{kind}/{obj.namespace}/{obj.name}"
                content = orjson.dumps(sendable(obj), option=orjson.OPT_SORT_KEYS)
                current[resource] = (hashlib.sha256(content).hexdigest(), content)
                parsed[resource] = obj
            if not contents.complete:
                # keep what an earlier run stored for objects that have no last good version now
                for resource, stored in self.store.objects.items():
                    current.setdefault(resource, (stored.digest, stored.content))
            put, deleted = await self.store.run(self.store.put_objects, current)
            await self._drop_status_of_deleted_devices()
            if not put and not deleted:
                return
            revision = self.store.counter - len(deleted)
            events = []
            for stored in put:
                known = parsed.get(stored.resource)
                source_object = SourceObject(known, str(stored.version)) if known else _parse(stored)
                self.objects[stored.resource] = source_object
                events.append(WatchEvent("put", source_object, str(stored.version)))
            for stored in deleted:
                revision += 1
                gone = self.objects.pop(stored.resource, None) or _parse(stored)
                events.append(WatchEvent("delete", gone, str(revision)))
            log.info(
                "files source: %d object(s) added or changed, %d deleted (revision %d)",
                len(put),
                len(deleted),
                self.store.counter,
            )
            async with self._changed:
                self.history.extend(events)
                self.head = self.store.counter
                self._changed.notify_all()

    async def _drop_status_of_deleted_devices(self) -> None:
        """Forget the status of devices no longer in the store (gone from the folder now, or while
        the cloud was down): ``device list --cloud`` and a device made again under the same name
        start from nothing. Reports still on their way for them are not stored
        (:meth:`write_status`)."""
        objects = self.store.objects
        gone = self.store.drop_status(lambda key: f"device/{key}" in objects)
        if gone:
            await self.store.run(self.store.delete_status_rows, gone)
            log.info("files source: the status of %d deleted device(s) removed", len(gone))

    async def list(self) -> Listing:
        return Listing(list(self.objects.values()), str(self.head))

    async def watch(self, revision: str) -> AsyncIterator[WatchEvent]:
        cursor = int(revision)

        def moved() -> bool:
            return self.head > cursor

        while True:
            async with self._changed:
                await self._changed.wait_for(moved)
                oldest = int(self.history[0].revision) if self.history else self.head + 1
                if oldest > cursor + 1:
                    raise Gone(f"revision {cursor} is older than the {len(self.history)} changes remembered")
                events = [e for e in self.history if int(e.revision) > cursor]
            for event in events:
                cursor = int(event.revision)
                yield event

    async def write_status(self, batch: Mapping[str, tuple[str, StatusChange]]) -> None:
        objects = self.store.objects
        if any(f"device/{key}" not in objects for key in batch):
            # reports taken just before their device was deleted: its status went with it
            batch = {key: change for key, change in batch.items() if f"device/{key}" in objects}
        rows = self.store.merge_status(batch)
        await self.store.run(self.store.write_status_rows, rows)

    async def read_status(self, keys: Collection[str] | None = None) -> dict[str, DeviceStatusRecord]:
        held = self.store.status
        wanted = held if keys is None else [k for k in keys if k in held]
        return {key: status_record(held[key]) for key in wanted}


def _parse(stored: StoredObject) -> SourceObject:
    kind, _, _ = split_resource(stored.resource)
    cls = Device if kind == "device" else DeviceModel
    return SourceObject(cls.model_validate_json(stored.content, strict=False), str(stored.version))
