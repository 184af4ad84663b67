"""An event-loop watchdog for tests: which code of a mapper blocked the loop, and for how long.

Every device a mapper serves shares one event loop with the edge, so one blocking call in a
driver (``time.sleep``, a blocking socket, a synchronous library) stalls every device and the bus
at once; on a fast machine it shows only as rare, misleading timeouts. :class:`LoopWatchdog`
beats in the loop every few milliseconds; a thread samples the loop thread's stack while a beat
is late and records a :class:`Stall` when the same call of the watched code (frames from the
given source folders, typically the mapper's package) stayed on the stack past the threshold.

Samples need the GIL, and a thread descheduled by a loaded machine cannot be sampled, so a loop
that was merely not scheduled is not mistaken for a blocking call: a stall counts only when the
sampler saw the same call stay on the stack for most of the threshold.
"""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

BEAT_S = 0.01
SAMPLE_S = 0.005


@dataclass
class Stall:
    """The loop was blocked for ``seconds`` in ``where`` (the innermost watched frame)."""

    where: str
    """``Class.method`` of the innermost frame from the watched code."""
    location: str
    """``file:line  source`` of that frame when it was last seen blocking."""
    seconds: float
    outer: list[str] = field(default_factory=list)
    """The watched frames around it, outermost first (``Class.method``)."""

    def describe(self) -> str:
        chain = " -> ".join([*self.outer, self.where]) if self.outer else self.where
        return f"the event loop was blocked for {self.seconds:.2f}s in {chain} ({self.location})"


class LoopWatchdog:
    """Records calls into the code under ``folders`` that block ``loop`` longer than ``threshold`` s."""

    def __init__(self, loop: asyncio.AbstractEventLoop, folders: list[Path], threshold: float = 0.1) -> None:
        self.loop = loop
        self.folders = [str(f.resolve()) for f in folders]
        self.threshold = threshold
        self.stalls: list[Stall] = []
        self._beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._frames: list[FrameType] = []
        self._line = 0

    def start(self) -> None:
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(BEAT_S, self._tick)
        self._thread = threading.Thread(target=self._sample, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join(2)

    def worst(self) -> Stall | None:
        with self._lock:
            return max(self.stalls, key=lambda s: s.seconds, default=None)

    def _tick(self) -> None:
        self._beat = time.monotonic()
        if not self._stop.is_set():
            self._handle = self.loop.call_later(BEAT_S, self._tick)

    def _watched(self, frame: FrameType | None) -> list[FrameType]:
        """The watched frames on a stack, innermost first; none while a module is being imported
        (an import blocks once, at start, and is not a driver's doing)."""
        found = []
        while frame is not None:
            code = frame.f_code
            if code.co_filename.startswith("<frozen importlib"):
                return []
            if any(code.co_filename.startswith(folder) for folder in self.folders):
                found.append(frame)
            frame = frame.f_back
        return found

    def _sample(self) -> None:
        current: FrameType | None = None  # the watched call seen blocking, kept while it lasts
        first_seen = last_seen = 0.0
        beat_then = 0.0
        while not self._stop.wait(SAMPLE_S):
            now = time.monotonic()
            beat = self._beat
            if now - beat < self.threshold / 2:
                if current is not None:
                    self._record(current, first_seen, last_seen, beat_then)
                    current = None
                continue
            frames = self._watched(sys._current_frames().get(self._loop_thread))
            inner = frames[0] if frames else None
            if current is not None and (inner is not current or beat != beat_then):
                self._record(current, first_seen, last_seen, beat_then)
                current = None
            if inner is not None and current is None:
                current, first_seen, beat_then = inner, now, beat
                self._frames = frames
            if current is not None:
                last_seen = now
                self._line = current.f_lineno
        if current is not None:
            self._record(current, first_seen, last_seen, beat_then)

    def _record(self, frame: FrameType, first_seen: float, last_seen: float, beat: float) -> None:
        blocked = last_seen - beat
        # Seen for most of the threshold by the sampler itself: a process that was merely not
        # scheduled shows one late sample, not a run of them.
        if blocked < self.threshold or last_seen - first_seen < self.threshold / 2:
            return
        code = frame.f_code
        line = self._line
        source = linecache.getline(code.co_filename, line).strip()
        stall = Stall(
            where=code.co_qualname,
            location=f"{_short(code.co_filename)}:{line}  {source}",
            seconds=blocked,
            outer=[f.f_code.co_qualname for f in reversed(self._frames[1:])],
        )
        with self._lock:
            self.stalls.append(stall)


def _short(filename: str) -> str:
    """The path from the package folder on (``kubeedge_mapper_acme/driver.py``)."""
    path = Path(filename)
    for parent in path.parents:
        if not (parent / "__init__.py").exists():
            return str(path.relative_to(parent))
    return filename
