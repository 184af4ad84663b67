"""A folder of Device/DeviceModel manifests, read with per-object isolation and followed live.

One implementation for every place that serves manifests from a folder: the edge's standalone
source and the cloud's files source. The folder is validated with the same rules as ``kubeedge
validate``, within :class:`~kubeedge.api.manifests.ManifestLimits`. A file that cannot be read
whole (YAML syntax, a limit) keeps its last good objects (an editor saving half a file must not
remove devices, and neither must one that is empty for a moment while it is rewritten); in a
file that was read, an object with a problem keeps its last good version
and the others are taken as they are. Every problem is logged with file, line, object and field.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchfiles import awatch

from kubeedge.api.device import Device, DeviceModel
from kubeedge.api.manifests import DEFAULT_LIMITS, ManifestLimits, manifest_files, read_documents
from kubeedge.api.validation import validate_documents


@dataclass
class FolderContents:
    """What a folder serves after one read."""

    objects: list[Device | DeviceModel] = field(default_factory=list)
    """Every object served: the valid ones, and the last good version of those with a problem."""
    kept: dict[str, str] = field(default_factory=dict)
    """Device key -> why its last good version is served instead of what the file says."""
    notes: list[str] = field(default_factory=list)
    """Every problem, each saying whether a last good version is served."""
    complete: bool = True
    """False when an object or file with a problem has no last good version: whoever mirrors
    the folder should keep what it may have held for it rather than delete it."""

    @property
    def devices(self) -> list[Device]:
        return [o for o in self.objects if isinstance(o, Device)]

    @property
    def models(self) -> list[DeviceModel]:
        return [o for o in self.objects if isinstance(o, DeviceModel)]


def _is_blank(path: Path) -> bool:
    """Whether ``path`` exists and holds nothing but whitespace (a file being rewritten)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return not head.strip() and len(head) < 4096


class ManifestFolder:
    """Reads a folder of manifests, remembering the last good version of every file and object."""

    def __init__(
        self, folder: Path, limits: ManifestLimits = DEFAULT_LIMITS, logger: logging.Logger | None = None
    ) -> None:
        self.folder = folder
        self.limits = limits
        self.log = logger or logging.getLogger(__name__)
        self._good: dict[str, list[Any]] = {}
        self._seen: list[tuple[str, int, int]] = []
        self.reads = 0

    def signature(self) -> list[tuple[str, int, int]]:
        """The folder's files with their modification times and sizes."""
        out = []
        for path in manifest_files(self.folder):
            try:
                stat = path.stat()
            except OSError:
                continue
            out.append((str(path), stat.st_mtime_ns, stat.st_size))
        return out

    def changed(self) -> bool:
        """Whether the folder's files differ from those of the last read (a rescan's question)."""
        return self.signature() != self._seen

    def read(self) -> FolderContents:
        """Read and validate the folder; objects with problems keep their last good version."""
        self.reads += 1
        self._seen = self.signature()
        log = self.log
        documents, read_problems = read_documents([self.folder], self.limits)
        report = validate_documents(documents)
        unreadable = {p.source for p in read_problems}
        out = FolderContents()
        current: dict[str, list[Any]] = {}
        for problem in read_problems:
            log.warning("%s", problem)
        for source in sorted(unreadable):
            if source in self._good:
                log.warning("%s has problems; keeping its last good version", source)
                current[source] = self._good[source]
                first = next(str(p) for p in read_problems if p.source == source)
                for obj in current[source]:
                    if isinstance(obj, Device):
                        out.kept[obj.key] = f"manifest kept at its last good version: {first}"
            else:
                out.complete = False
            served = " (its last good version is served)" if source in current else " (not loaded)"
            out.notes += [str(p) + served for p in read_problems if p.source == source]
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
                log.warning("%s", problem)
            old = previous.get((source, checked.kind, checked.key))
            if old is not None:
                log.warning("%s: keeping the last good version of %s", source, checked.label)
                current.setdefault(source, []).append(old)
                if isinstance(old, Device):
                    out.kept[old.key] = f"manifest kept at its last good version: {checked.problems[0]}"
            else:
                out.complete = False
            served = " (its last good version is served)" if old is not None else " (not loaded)"
            out.notes += [str(p) + served for p in checked.problems]
        for source, objs in self._good.items():
            if source not in current and objs and _is_blank(Path(source)):
                # An editor or `cp` truncates before it writes: an empty file that served
                # objects is a file mid-write far more often than a wish to delete them all.
                log.warning(
                    "%s is empty; keeping its last good version (%d object(s)); "
                    "delete the file to remove them",
                    source,
                    len(objs),
                )
                current[source] = objs
                for obj in objs:
                    if isinstance(obj, Device):
                        out.kept[obj.key] = "manifest kept at its last good version: its file is empty"
                out.notes.append(f"{source}: the file is empty (its last good version is served)")
        self._good = current
        out.objects = [obj for objs in current.values() for obj in objs]
        return out

    async def follow(
        self,
        on_change: Callable[[], Awaitable[None] | None],
        stop: asyncio.Event,
        debounce_ms: int = 300,
        rescan_ms: int = 5000,
    ) -> None:
        """Call ``on_change`` whenever the folder changes, until ``stop`` is set.

        File events come from watchfiles (inotify); a comparison of the files' sizes and times
        every ``rescan_ms`` is the safety net for filesystems that send no events. A failing
        ``on_change`` is logged and the folder is followed on.
        """
        async for changes in awatch(
            self.folder,
            debounce=debounce_ms,
            stop_event=stop,
            rust_timeout=rescan_ms,
            yield_on_timeout=True,
        ):
            if not changes and not self.changed():
                continue
            try:
                result = on_change()
                if result is not None:
                    await result
            except Exception:
                self.log.exception("reading %s failed", self.folder)
