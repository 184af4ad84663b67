"""Long-lived tasks that cannot die unnoticed.

An asyncio task that raises just ends: nothing is logged until the task object is garbage
collected (often never, when something keeps a reference), and the process goes on without it.
That is how the edge's twin writer once died on a ``struct.error`` and the edge stopped answering
while it looked alive. Every task that should live as long as the process is started through a
:class:`Supervisor` instead:

* its end, other than by being stopped, is logged at ERROR with the traceback;
* it is restarted (after a short back-off), up to ``max_restarts`` times in ``window`` seconds;
  past that, or for a task started with ``restart=False``, the supervisor calls ``on_fatal``
  with the reason, and the edge stops with it (``kubeedge edge run`` exits with status 1);
* :attr:`Supervisor.problems` says what failed, for the edge's health (its retained status and
  ``kubeedge edge status``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from kubeedge.backoff import backoff_delay

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class Supervised:
    """One supervised task, across its restarts: ``cancel()`` stops it for good; awaiting the
    handle waits for the task that runs now."""

    def __init__(self, supervisor: Supervisor, name: str, factory: TaskFactory, restart: bool) -> None:
        self.supervisor = supervisor
        self.name = name
        self.factory = factory
        self.restart = restart
        self.task: asyncio.Task[None] | None = None
        self.stopped = False
        self.failures: deque[float] = deque()
        """Monotonic times of recent failures (within the supervisor's window)."""
        self.total_failures = 0
        self.last_error = ""

    def done(self) -> bool:
        """True when no task runs and none is about to be restarted."""
        return self.task is None or (self.task.done() and (self.stopped or not self.restart))

    def cancel(self) -> None:
        self.stopped = True
        if self.task is not None:
            self.task.cancel()

    def __await__(self) -> Generator[Any, None, None]:
        if self.task is not None:
            yield from self.task.__await__()


class Supervisor:
    """Starts, watches and restarts the long-lived tasks of one process."""

    def __init__(self, max_restarts: int = 5, window: float = 600.0) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self.on_fatal: Callable[[str], None] | None = None
        """Called once with the reason when a task cannot go on (the edge stops with it)."""
        self.on_change: Callable[[], None] | None = None
        """Called when :attr:`problems` changes (the edge republishes its status)."""
        self.fatal: str | None = None
        self.stopping = False
        self._tasks: dict[str, Supervised] = {}

    def spawn(self, name: str, factory: TaskFactory, *, restart: bool = True) -> Supervised:
        """Run ``factory()`` as the task ``name``; call ``factory`` again to restart it."""
        handle = Supervised(self, name, factory, restart)
        self._tasks[name] = handle
        self._start(handle)
        return handle

    def watch(self, name: str, task: asyncio.Task[Any]) -> None:
        """Watch a task started elsewhere (not restartable: its end stops the process)."""
        handle = Supervised(self, name, _not_restartable, restart=False)
        handle.task = task
        self._tasks[name] = handle
        task.add_done_callback(lambda t: self._ended(handle, t))

    @property
    def problems(self) -> list[str]:
        """One line per task that failed (restarted or not), for health reports."""
        lines = []
        for handle in self._tasks.values():
            if handle.total_failures:
                state = "stopped" if handle.done() else "restarted"
                lines.append(
                    f"task {handle.name} failed {handle.total_failures}x ({state}); last: {handle.last_error}"
                )
        if self.fatal:
            lines.append(self.fatal)
        return lines

    def stop(self, cancel: bool = True) -> None:
        """The process is stopping: tasks that end from now on are not failures and are not
        restarted. ``cancel``: cancel the tasks still running too (else their owners do)."""
        self.stopping = True
        if cancel:
            for handle in self._tasks.values():
                handle.cancel()

    def _start(self, handle: Supervised) -> None:
        task = asyncio.get_running_loop().create_task(handle.factory(), name=handle.name)
        handle.task = task
        task.add_done_callback(lambda t: self._ended(handle, t))

    def _ended(self, handle: Supervised, task: asyncio.Task[Any]) -> None:
        if handle.stopped or self.stopping or task is not handle.task:
            return
        if task.cancelled():
            error = "cancelled by someone other than its owner"
            log.error("task %s was cancelled while it should run", handle.name)
        elif (exc := task.exception()) is not None:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.error("task %s failed", handle.name, exc_info=exc)
        else:
            error = "returned while it should run"
            log.error("task %s ended while it should run", handle.name)
        now = time.monotonic()
        handle.total_failures += 1
        handle.last_error = error
        handle.failures.append(now)
        while handle.failures and now - handle.failures[0] > self.window:
            handle.failures.popleft()
        if handle.restart and len(handle.failures) <= self.max_restarts:
            delay = backoff_delay(len(handle.failures), first=0.1, limit=5.0)
            log.warning(
                "task %s restarts in %.1fs (failure %d of %d allowed in %gs)",
                handle.name,
                delay,
                len(handle.failures),
                self.max_restarts,
                self.window,
            )
            asyncio.get_running_loop().call_later(delay, self._restart, handle)
        else:
            handle.stopped = True  # given up on: not restarted
            self._fail(f"task {handle.name} cannot go on: {error}")
        self._changed()

    def _restart(self, handle: Supervised) -> None:
        if not handle.stopped:
            self._start(handle)

    def _fail(self, reason: str) -> None:
        if self.fatal is not None:
            return
        self.fatal = reason
        log.critical("%s; the edge stops", reason)
        if self.on_fatal is not None:
            self.on_fatal(reason)

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("supervisor: reporting a change failed")


async def _not_restartable() -> None:
    raise RuntimeError("a watched task cannot be restarted")
