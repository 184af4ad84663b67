"""Reconnect pacing: exponential, capped, jittered; the bus client really waits that long."""

import asyncio
import itertools
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.backoff import backoff_delay
from kubeedge.bus import BusClient


@given(attempt=st.integers(1, 1000), first=st.floats(0.01, 5), limit=st.floats(0.01, 600))
def test_each_wait_is_in_the_upper_half_of_its_capped_exponential_step(
    attempt: int, first: float, limit: float
) -> None:
    step = min(limit, first * 2 ** min(attempt - 1, 16))
    assert step / 2 <= backoff_delay(attempt, first=first, limit=limit) <= step


def test_waits_grow_until_the_cap_and_are_spread() -> None:
    means = [sum(backoff_delay(n, first=0.2, limit=30) for _ in range(200)) / 200 for n in range(1, 12)]
    assert all(a < b for a, b in itertools.pairwise(means[:9]))  # 0.2, 0.4, ... 25.6
    assert 0.5 * 30 <= means[-1] <= 30  # capped
    assert len({round(backoff_delay(3, first=0.2, limit=30), 6) for _ in range(50)}) > 40  # jittered


@pytest.mark.parametrize(
    "answer",
    [b"", bytes([0x20, 0x02, 0x00, 0x05])],  # hang up; CONNACK "not authorized"
    ids=["hangs-up", "refuses-credentials"],
)
async def test_the_bus_client_backs_off_while_the_broker_refuses_it(answer: bytes) -> None:
    """A broker port that accepts, then closes at once or refuses the credentials: attempts come
    at 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s ... apart, so 5 or 6 in 4 s, not hundreds (no back-off)
    and not 1 (gave up). The client's probes of the port every 0.5 s (it stays open) do not cut
    the waits short: only a port seen closed and then open again (a restarted broker) does."""
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.read(1):  # a CONNECT; a probe of the port sends nothing and closes
            attempts.append(loop.time())
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    client = BusClient(f"mqtt://127.0.0.1:{port}", client_id="backoff-test")
    await client.start(timeout=None)
    await asyncio.sleep(4)
    error = client.last_error or ""
    await client.stop()
    server.close()
    assert ("not authorized" in error.lower()) if answer else error, error
    assert 3 <= len(attempts) <= 7, attempts
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[-1] >= 2 * gaps[0], gaps  # the 3rd gap is at least 0.4 s, the 1st at most 0.2 s
    assert max(gaps) >= 0.75, gaps  # the 4th wait (0.8-1.6 s) was not ended by a probe at 0.5 s
