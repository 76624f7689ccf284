import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.backoff import (
    DEFAULT_MAX_RETRY_AFTER_S,
    retry_delay_s,
    retry_tier,
    should_retry,
    waiting_tier,
)

DELAYS = (5.0, 30.0, 120.0, 600.0, 3600.0)


def fixed(u: float) -> random.Random:
    """A Random whose draws are all `u`."""

    class Fixed(random.Random):
        def random(self) -> float:
            return u

    return Fixed()


@pytest.mark.parametrize(
    ("attempt", "tiers", "expected"),
    [(1, 5, 1), (2, 5, 2), (5, 5, 5), (6, 5, 5), (100, 5, 5), (1, 1, 1), (3, 1, 1)],
)
def test_retry_tier(attempt: int, tiers: int, expected: int) -> None:
    assert retry_tier(attempt, tiers) == expected


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "expected"),
    [(1, 6, True), (5, 6, True), (6, 6, False), (7, 6, False), (1, 1, False), (1, 2, True)],
)
def test_should_retry(attempt: int, max_attempts: int, expected: bool) -> None:
    assert should_retry(attempt, max_attempts) is expected


@pytest.mark.parametrize(
    ("attempt", "u", "expected"),
    [
        (1, 0.5, 5.0),  # the middle of the spread is the configured delay
        (2, 0.5, 30.0),
        (5, 0.5, 3600.0),
        (9, 0.5, 3600.0),  # past the last delay: the last delay
        (1, 0.0, 4.0),  # -20%
        (2, 0.0, 24.0),
        (2, 0.75, 33.0),  # +10%
    ],
)
def test_delay_table(attempt: int, u: float, expected: float) -> None:
    got = retry_delay_s(attempt, DELAYS, None, 0.2, fixed(u))
    assert got == pytest.approx(expected)


def test_no_jitter_gives_the_configured_delay() -> None:
    assert retry_delay_s(3, DELAYS, None, 0.0, lambda: 0.99) == 120.0


def test_callable_rng_is_accepted() -> None:
    assert retry_delay_s(1, DELAYS, None, 0.2, lambda: 0.0) == pytest.approx(4.0)


def test_retry_after_wins_when_longer_and_is_never_shortened() -> None:
    assert retry_delay_s(1, DELAYS, 60.0, 0.2, fixed(0.5)) == pytest.approx(60.0)
    # u = 0 spreads the base down by 20%, the Retry-After up by 20%.
    assert retry_delay_s(1, DELAYS, 60.0, 0.2, fixed(0.0)) == pytest.approx(72.0)
    assert retry_delay_s(1, DELAYS, 60.0, 0.2, fixed(1.0)) == pytest.approx(72.0)


def test_retry_after_shorter_than_the_delay_is_ignored() -> None:
    assert retry_delay_s(2, DELAYS, 1.0, 0.2, fixed(0.5)) == pytest.approx(30.0)


def test_retry_after_is_capped() -> None:
    assert retry_delay_s(1, DELAYS, 86_400.0, 0.2, fixed(0.5)) == DEFAULT_MAX_RETRY_AFTER_S
    assert retry_delay_s(1, DELAYS, 86_400.0, 0.0, fixed(0.5), max_retry_after_s=100.0) == 100.0


def test_cap_below_the_configured_delay_keeps_the_configured_delay() -> None:
    got = retry_delay_s(5, DELAYS, 86_400.0, 0.0, fixed(0.5), max_retry_after_s=100.0)
    assert got == 3600.0


def test_jitter_spreads_a_wave() -> None:
    rng = random.Random(7)
    delays = {retry_delay_s(1, DELAYS, None, 0.2, rng) for _ in range(100)}
    assert len(delays) == 100
    assert min(delays) < 4.5
    assert max(delays) > 5.5


@pytest.mark.parametrize(
    "call",
    [
        lambda: retry_delay_s(0, DELAYS, None, 0.2, fixed(0.5)),
        lambda: retry_delay_s(1, (), None, 0.2, fixed(0.5)),
        lambda: retry_delay_s(1, DELAYS, None, 1.5, fixed(0.5)),
        lambda: retry_delay_s(1, DELAYS, None, -0.1, fixed(0.5)),
        lambda: retry_tier(0, 5),
        lambda: retry_tier(1, 0),
        lambda: should_retry(0, 6),
    ],
)
def test_bad_arguments_raise(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (each case has its own message)
        call()


@given(
    attempt=st.integers(1, 50),
    delays=st.lists(st.floats(0.0, 10_000.0), min_size=1, max_size=8),
    retry_after=st.none() | st.floats(0.0, 1_000_000.0),
    jitter=st.floats(0.0, 1.0),
    u=st.floats(0.0, 1.0, exclude_max=True),
    cap=st.floats(0.0, 100_000.0),
)
def test_delay_always_within_bounds(
    attempt: int,
    delays: list[float],
    retry_after: float | None,
    jitter: float,
    u: float,
    cap: float,
) -> None:
    base = delays[min(attempt, len(delays)) - 1]
    got = retry_delay_s(attempt, delays, retry_after, jitter, lambda: u, max_retry_after_s=cap)
    low = base * (1 - jitter)
    high = base * (1 + jitter)
    eps = 1e-9 * max(1.0, high, cap)
    assert got >= low - eps
    if retry_after is None:
        assert got <= high + eps
    else:
        assert got <= max(high, cap) + eps
        assert got >= min(retry_after, cap) - eps  # Retry-After honoured up to the cap


@pytest.mark.parametrize(
    ("wait_s", "expected"),
    [
        (0.0, (1, 0.0)),
        (3.0, (1, 3.0)),
        (4.0, (1, 4.0)),  # 5 s * (1 - 0.2): nothing written after it is due sooner
        (4.5, (2, 4.5)),
        (24.0, (2, 24.0)),
        (90.0, (3, 90.0)),
        (500.0, (3, 96.0)),  # past every tier: the last tier's shortest wait, then again
        (-1.0, (1, 0.0)),
    ],
)
def test_waiting_tier_is_the_first_whose_shortest_wait_covers_it(
    wait_s: float, expected: tuple[int, float]
) -> None:
    tier, wait = waiting_tier(wait_s, (5.0, 30.0, 120.0), 0.2)
    assert (tier, round(wait, 9)) == expected


def test_waiting_tier_needs_a_tier() -> None:
    with pytest.raises(ValueError, match="delays_s"):
        waiting_tier(1.0, (), 0.2)
