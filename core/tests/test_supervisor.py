"""The supervisor: a long-lived task that fails is logged, restarted and reported; past its
restart budget (or when it cannot be restarted) the process is told to stop, with the reason."""

import asyncio
import logging

import pytest

from kubeedge.supervisor import Supervisor


async def test_a_failing_task_is_logged_restarted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor()
    runs: list[int] = []
    changes: list[list[str]] = []
    supervisor.on_change = lambda: changes.append(supervisor.problems)

    async def work() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("bad luck")
        await asyncio.Event().wait()

    handle = supervisor.spawn("worker", work)
    while len(runs) < 2:
        await asyncio.sleep(0.01)
    assert not handle.done()
    assert "task worker failed" in caplog.text and "ValueError: bad luck" in caplog.text
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    assert supervisor.problems == ["task worker failed 1x (restarted); last: ValueError: bad luck"]
    assert changes and supervisor.fatal is None
    handle.cancel()
    await asyncio.gather(handle, return_exceptions=True)
    assert handle.done()


async def test_past_its_restart_budget_a_task_stops_the_process() -> None:
    supervisor = Supervisor(max_restarts=2)
    reasons: list[str] = []
    supervisor.on_fatal = reasons.append

    async def always_fails() -> None:
        raise RuntimeError("broken for good")

    handle = supervisor.spawn("doomed", always_fails)
    while not reasons:
        await asyncio.sleep(0.01)
    assert reasons == ["task doomed cannot go on: RuntimeError: broken for good"]
    assert handle.done()
    assert supervisor.problems[-1] == reasons[0]


async def test_a_watched_task_that_ends_stops_the_process_and_stopping_is_not_failing() -> None:
    supervisor = Supervisor()
    reasons: list[str] = []
    supervisor.on_fatal = reasons.append
    task = asyncio.create_task(asyncio.Event().wait())
    supervisor.watch("bus", task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert reasons == ["task bus cannot go on: cancelled by someone other than its owner"]

    quiet = Supervisor()
    quiet.on_fatal = reasons.append
    handle = quiet.spawn("worker", asyncio.Event().wait)
    await asyncio.sleep(0)
    quiet.stop()
    await asyncio.gather(handle, return_exceptions=True)
    assert len(reasons) == 1 and quiet.problems == []
