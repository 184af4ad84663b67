"""Standalone mode: devices come from a folder of Device/DeviceModel manifests, followed live.

The folder is validated with the same rules as ``kubeedge validate``, within the manifest limits
(``modules.standalone.limits``). A file that cannot be read whole (YAML syntax, a limit) keeps
its last good objects (an editor saving half a file must not remove devices); in a file that was
read, an object with a problem keeps its last good version and the others are taken as they are.
Every problem is logged with file, line, object and field.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from watchfiles import awatch

from kubeedge.api.device import Device, DeviceModel
from kubeedge.api.manifests import ManifestLimits, manifest_files, read_documents
from kubeedge.api.validation import validate_documents
from kubeedge.errors import ConfigError
from kubeedge.module import EdgeContext, EdgeModule
from kubeedge.supervisor import Supervised

log = logging.getLogger(__name__)


class StandaloneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    debounce_ms: int = Field(default=300, alias="debounceMs", ge=10)
    """How long changes must settle before the folder is read again."""
    rescan_ms: int = Field(default=5000, alias="rescanMs", ge=50)
    """A safety net under file events (which some filesystems do not send): the folder's file
    list, sizes and times are compared this often, and a difference reads it again."""
    limits: ManifestLimits = ManifestLimits()
    """How much one manifest file may ask of the edge (size, nesting, aliases, integer digits)."""


class StandaloneSource(EdgeModule):
    name = "standalone"
    settings_model = StandaloneSettings

    def __init__(self, context: EdgeContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        assert isinstance(settings, StandaloneSettings)
        folder = context.config.manifests
        if folder is None:
            raise ConfigError(
                "module standalone needs 'manifests': the folder of Device/DeviceModel manifests"
            )
        self.folder = folder
        self._good: dict[str, list[Any]] = {}
        self._seen: list[tuple[str, int, int]] = []
        self._task: Supervised | None = None
        self._stop = asyncio.Event()
        self.reloads = 0

    async def start(self) -> None:
        if not self.folder.is_dir():
            raise ConfigError(f"manifests: {self.folder} is not a folder")
        self.reload()
        self._task = self.context.supervisor.spawn("standalone-watch", self._watch)  # restarted if it fails

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        settings = self.settings
        assert isinstance(settings, StandaloneSettings)
        async for changes in awatch(
            self.folder,
            debounce=settings.debounce_ms,
            stop_event=self._stop,
            rust_timeout=settings.rescan_ms,
            yield_on_timeout=True,
        ):
            if not changes and self._signature() == self._seen:
                continue
            try:
                self.reload()
            except Exception:
                log.exception("standalone: reading %s failed", self.folder)

    def _signature(self) -> list[tuple[str, int, int]]:
        out = []
        for path in manifest_files(self.folder):
            try:
                stat = path.stat()
            except OSError:
                continue
            out.append((str(path), stat.st_mtime_ns, stat.st_size))
        return out

    def reload(self) -> None:
        """Read the folder and make the registry match it."""
        self.reloads += 1
        self._seen = self._signature()
        settings = self.settings
        assert isinstance(settings, StandaloneSettings)
        documents, read_problems = read_documents([self.folder], settings.limits)
        report = validate_documents(documents)
        # A file that could not be read whole (YAML syntax, a limit) keeps its last good version
        # whole: an editor saving half a file must not remove devices. In a file that was read,
        # each object stands alone: a bad one keeps its last good version (or is not loaded), and
        # never holds back the good objects beside it.
        unreadable = {p.source for p in read_problems}
        current: dict[str, list[Any]] = {}
        kept: dict[str, str] = {}  # device key -> why its last good version is served
        notes: list[str] = []  # every problem, for `kubeedge device list`
        complete = True
        for problem in read_problems:
            log.warning("standalone: %s", problem)
        for source in sorted(unreadable):
            if source in self._good:
                log.warning("standalone: %s has problems; keeping its last good version", source)
                current[source] = self._good[source]
                first = next(str(p) for p in read_problems if p.source == source)
                for obj in current[source]:
                    if isinstance(obj, Device):
                        kept[obj.key] = f"manifest kept at its last good version: {first}"
            else:
                complete = False  # twins of devices it may hold are kept
            served = " (its last good version is served)" if source in current else " (not loaded)"
            notes += [str(p) + served for p in read_problems if p.source == source]
        previous = {
            (source, type(obj).__name__, obj.key): obj
            for source, objs in self._good.items()
            if source not in unreadable
            for obj in objs
        }
        for checked in report.objects:
            source = checked.document.source
            if source in unreadable:
                continue
            if checked.valid:
                current.setdefault(source, []).append(checked.obj)
                continue
            for problem in checked.problems:
                log.warning("standalone: %s", problem)
            old = previous.get((source, checked.kind, checked.key))
            if old is not None:
                log.warning("standalone: %s: keeping the last good version of %s", source, checked.label)
                current.setdefault(source, []).append(old)
                if isinstance(old, Device):
                    kept[old.key] = f"manifest kept at its last good version: {checked.problems[0]}"
            else:
                complete = False
            served = " (its last good version is served)" if old is not None else " (not loaded)"
            notes += [str(p) + served for p in checked.problems]
        self._good = current
        # shown by `kubeedge device list`, not only logged
        self.context.registry.report_problems(kept, notes)
        everything = [obj for objs in current.values() for obj in objs]
        self.context.registry.replace(
            [o for o in everything if isinstance(o, Device)],
            [o for o in everything if isinstance(o, DeviceModel)],
            # an object or file with problems and no last good version: twins it may hold are kept
            complete=complete,
        )
