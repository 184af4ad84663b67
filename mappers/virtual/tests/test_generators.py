"""The simulated values: random walk and sine keep to what their visitor declares."""

import math
import random
import time
from itertools import pairwise

import pytest

from kubeedge_mapper_virtual.simulator import SimulatedProperty


def test_random_walk_stays_within_min_and_max_and_moves() -> None:
    rng = random.Random(1)
    walk = SimulatedProperty("random-walk", 0.5, step=0.4, minimum=0.0, maximum=1.0)
    values = [walk.next(rng) for _ in range(500)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(abs(b - a) <= 0.4 + 1e-12 for a, b in pairwise([0.5, *values]))  # steps of at most `step`
    assert len(set(values)) > 100  # it moves ...
    assert min(values) == 0.0 and max(values) == 1.0  # ... and reaches its bounds, where it stops


def test_random_walk_repeats_with_the_same_seed() -> None:
    def walk(seed: int) -> list[float]:
        rng = random.Random(seed)
        prop = SimulatedProperty("random-walk", 0.0, step=1.0)
        return [prop.next(rng) for _ in range(20)]

    assert walk(7) == walk(7)
    assert walk(7) != walk(8)


def sine_at(wave: SimulatedProperty, t: float) -> float:
    """The sine's value ``t`` seconds after it started."""
    wave.started = time.monotonic() - t
    return float(wave.next(random.Random()))


@pytest.mark.parametrize(("centre", "amplitude", "period"), [(21.0, 1.5, 30.0), (0.0, 10.0, 600.0)])
def test_sine_has_its_centre_amplitude_and_period(centre: float, amplitude: float, period: float) -> None:
    wave = SimulatedProperty("sine", centre, amplitude=amplitude, period=period)
    tolerance = amplitude * 1e-3  # the clock moves between setting `started` and reading it
    assert sine_at(wave, 0) == pytest.approx(centre, abs=tolerance)
    assert sine_at(wave, period / 4) == pytest.approx(centre + amplitude, abs=tolerance)
    assert sine_at(wave, period / 2) == pytest.approx(centre, abs=tolerance)
    assert sine_at(wave, 3 * period / 4) == pytest.approx(centre - amplitude, abs=tolerance)
    assert sine_at(wave, period + period / 4) == pytest.approx(centre + amplitude, abs=tolerance)
    samples = [sine_at(wave, period * i / 97) for i in range(97)]
    assert all(centre - amplitude - tolerance <= v <= centre + amplitude + tolerance for v in samples)
    assert wave.value == centre  # the centre is not moved by reading


def test_sine_phase_shifts_the_wave() -> None:
    wave = SimulatedProperty("sine", 0.0, amplitude=1.0, period=100.0, phase=math.pi / 2)
    assert sine_at(wave, 0) == pytest.approx(1.0, abs=1e-3)


def test_a_written_value_stops_the_generator() -> None:
    wave = SimulatedProperty("sine", 5.0, amplitude=3.0, period=0.01)
    wave.value, wave.written = 7.25, True
    assert {wave.next(random.Random()) for _ in range(20)} == {7.25}
