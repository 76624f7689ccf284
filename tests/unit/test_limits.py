import pytest

from dispatcher.limits import TokenBucket, Unlimited, limiter_for, unlimited


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_starts_full_and_allows_a_burst() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=3.0, clock=FakeClock())
    assert [bucket.try_take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take() == pytest.approx(0.1)


def test_wait_is_the_time_to_the_next_token_and_takes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=4.0, burst=1.0, clock=clock)
    assert bucket.try_take() == 0.0
    assert bucket.try_take() == pytest.approx(0.25)
    clock.now += 0.1
    assert bucket.try_take() == pytest.approx(0.15)  # a refused take spent nothing
    clock.now += 0.15
    assert bucket.try_take() == 0.0
    assert bucket.try_take() == pytest.approx(0.25)


def test_refill_never_exceeds_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=100.0, burst=5.0, clock=clock)
    clock.now += 3600.0
    assert bucket.tokens == 5.0
    assert sum(bucket.try_take() == 0.0 for _ in range(10)) == 5


def test_rate_holds_over_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=50.0, burst=1.0, clock=clock)
    taken = 0
    for _ in range(10_000):  # 10 s in 1 ms steps
        clock.now += 0.001
        if bucket.try_take() == 0.0:
            taken += 1
    assert 499 <= taken <= 501


def test_waiting_as_told_always_succeeds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=3.0, burst=2.0, clock=clock)
    for _ in range(20):
        wait = bucket.try_take()
        if wait:
            clock.now += wait
            assert bucket.try_take() == 0.0


def test_clock_stepping_back_adds_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=1.0, clock=clock)
    assert bucket.try_take() == 0.0
    clock.now -= 100.0
    assert bucket.try_take() == pytest.approx(1.0)
    clock.now += 100.5
    assert bucket.try_take() == pytest.approx(0.5)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.5), (1.0, 0.0)])
def test_bad_settings_raise(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst, FakeClock())


def test_unlimited_always_allows() -> None:
    limiter = unlimited()
    assert all(limiter.try_take() == 0.0 for _ in range(1000))


def test_limiter_for_no_rate_is_unlimited() -> None:
    assert isinstance(limiter_for(None, FakeClock()), Unlimited)


def test_limiter_for_rate_bursts_one_second_by_default() -> None:
    limiter = limiter_for(20.0, FakeClock())
    assert sum(limiter.try_take() == 0.0 for _ in range(100)) == 20


def test_limiter_for_slow_rate_still_allows_one() -> None:
    limiter = limiter_for(0.5, FakeClock())
    assert limiter.try_take() == 0.0
    assert limiter.try_take() == pytest.approx(2.0)


def test_limiter_for_explicit_burst() -> None:
    limiter = limiter_for(20.0, FakeClock(), burst=2.0)
    assert sum(limiter.try_take() == 0.0 for _ in range(100)) == 2
