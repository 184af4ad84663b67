"""The convergence policy on its own: typed comparison, when a re-send is due, when it shows."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from kubeedge.api.values import format_value, values_equal
from kubeedge.twin.convergence import Convergence, ConvergenceSettings


def test_values_are_compared_as_their_type() -> None:
    assert values_equal("float", "21.5", "21.50")
    assert values_equal("double", "1e3", "1000")
    assert values_equal("int", "+7", "7")
    assert values_equal("boolean", "true", "true")
    assert not values_equal("boolean", "true", "false")
    assert not values_equal("string", "a ", "a")
    assert not values_equal("int", "7", None)
    assert not values_equal("int", "seven", "7")  # unparsable: only an exact match is equal
    assert values_equal("double", "NaN", "nan")


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_a_float32_equals_every_spelling_that_rounds_to_it(number: float) -> None:
    (rounded,) = struct.unpack("<f", struct.pack("<f", number))
    assert values_equal("float", format_value("float", number), repr(rounded))


def settings(**given: float) -> ConvergenceSettings:
    return ConvergenceSettings.model_validate(
        {"initialBackoff": 2, "maxBackoff": 8, "errorAfter": 3, "hold": 30, **given}
    )


def test_a_divergence_is_due_at_once_then_spaced_out_and_shown_after_error_after() -> None:
    policy = Convergence(settings())
    now, wall = 1000.0, 5_000_000
    assert policy.observe("d", "p", "1", diverged=True, now=now, read_ms=wall)  # first: at once
    for attempt in range(1, 6):
        policy.sent("d", "p", "1", now, wall)
        wait = policy.attempts[("d", "p")].next_at - now
        step = min(8, 2 * 2 ** (attempt - 1))
        assert step / 2 <= wait <= step, (attempt, wait)
        # a reading taken before the delta (or within settleMs of it) proves nothing
        assert not policy.observe("d", "p", "1", diverged=True, now=now + wait, read_ms=wall + 100)
        assert policy.not_holding("d", "p") == (attempt - 1 if attempt - 1 >= 3 else 0)
        # one taken after it does, but the back-off still spaces the re-sends
        assert not policy.observe("d", "p", "1", diverged=True, now=now + wait / 4, read_ms=wall + 600)
        assert policy.next_timer() == now + wait
        now += wait
        wall += int(wait * 1000)
        assert policy.due(now) == [("d", "p")]
        assert policy.observe("d", "p", "1", diverged=True, now=now)
        assert policy.not_holding("d", "p") == (attempt if attempt >= 3 else 0)


def test_without_a_fresh_reading_nothing_is_sent_again() -> None:
    """A write still on its way (slow device, busy mapper) is not piled on, nor called failed."""
    policy = Convergence(settings())
    policy.sent("d", "p", "1", 0.0, 1_000)
    for t in range(1, 100):
        assert not policy.observe("d", "p", "1", diverged=True, now=float(t), read_ms=900)
    assert policy.not_holding("d", "p") == 0
    assert policy.observe("d", "p", "1", diverged=True, now=100.0, read_ms=2_000)  # proven now


def test_a_value_that_holds_clears_and_a_new_desired_value_starts_over() -> None:
    policy = Convergence(settings())
    failing(policy, 3)
    assert policy.not_holding("d", "p") == 3
    policy.observe("d", "p", "1", diverged=False, now=1.0)
    assert policy.not_holding("d", "p") == 0
    # reverting soon after keeps the count (a device that keeps reverting stays shown)
    policy.observe("d", "p", "1", diverged=True, now=2.0)
    assert policy.not_holding("d", "p") == 3
    # held for `hold` seconds: a new divergence starts over, due at once
    policy.observe("d", "p", "1", diverged=False, now=3.0)
    assert policy.observe("d", "p", "1", diverged=True, now=40.0)
    assert policy.not_holding("d", "p") == 0
    # a new desired value starts over too
    failing(policy, 3)
    assert policy.observe("d", "p", "2", diverged=True, now=50.0)
    assert policy.not_holding("d", "p") == 0


def failing(policy: Convergence, writes: int) -> None:
    """``writes`` deltas for "1", each proven not to hold by a later reading."""
    for i in range(writes):
        policy.sent("d", "p", "1", 0.0, i * 10_000)
        policy.observe("d", "p", "1", diverged=True, now=0.0, read_ms=i * 10_000 + 5_000)


def test_setting_the_same_value_again_is_due_at_once_and_forgets_the_count() -> None:
    policy = Convergence(settings())
    failing(policy, 4)
    assert policy.not_holding("d", "p") == 4
    assert not policy.observe("d", "p", "1", diverged=True, now=0.1)
    policy.retry_now("d", "p")
    assert policy.observe("d", "p", "1", diverged=True, now=0.1)
    assert policy.not_holding("d", "p") == 0


def test_held_entries_expire_so_memory_stays_bounded() -> None:
    policy = Convergence(settings(hold=5))
    for i in range(100):
        policy.sent("d", f"p{i}", "1", 0.0, 0)
        policy.observe("d", f"p{i}", "1", diverged=False, now=1.0)
    policy.expire(now=7.0)
    assert policy.attempts == {}
    assert policy.next_timer() is None
