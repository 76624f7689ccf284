import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dispatcher.offsets import PartitionWatermark


def watermark_with(*offsets: int) -> PartitionWatermark:
    watermark = PartitionWatermark()
    for offset in offsets:
        watermark.add(offset)
    return watermark


def test_nothing_added_nothing_committable() -> None:
    watermark = PartitionWatermark()
    assert watermark.committable() is None
    assert watermark.watermark() is None
    assert watermark.pending_count == 0


def test_added_but_unfinished_is_not_new() -> None:
    assert watermark_with(10, 11, 12).committable() is None


def test_in_order_finishes_advance_the_watermark() -> None:
    watermark = watermark_with(10, 11, 12)
    watermark.finish(10)
    assert watermark.committable() == 11
    watermark.finish(11)
    watermark.finish(12)
    assert watermark.committable() == 13
    assert watermark.pending_count == 0


def test_never_past_unfinished_work() -> None:
    watermark = watermark_with(10, 11, 12, 13)
    assert watermark.finish(12)
    assert watermark.finish(13)
    assert watermark.committable() is None  # 10 still runs
    watermark.finish(10)
    assert watermark.committable() == 11  # 11 still runs
    watermark.finish(11)
    assert watermark.committable() == 14


def test_gaps_in_offsets_are_followed() -> None:
    watermark = watermark_with(5, 9, 20)
    watermark.finish(5)
    assert watermark.committable() == 9
    watermark.finish(20)
    watermark.finish(9)
    assert watermark.committable() == 21


def test_mark_committed_hides_until_it_moves_again() -> None:
    watermark = watermark_with(1, 2, 3)
    watermark.finish(1)
    watermark.mark_committed(2)
    assert watermark.committable() is None
    watermark.finish(2)
    assert watermark.committable() == 3


def test_mark_committed_past_the_watermark_raises() -> None:
    watermark = watermark_with(1, 2)
    with pytest.raises(ValueError, match="past the watermark"):
        watermark.mark_committed(2)
    with pytest.raises(ValueError, match="past the watermark"):
        PartitionWatermark().mark_committed(0)


def test_unknown_and_duplicate_finishes_are_ignored() -> None:
    watermark = watermark_with(10, 11)
    assert not watermark.finish(9)
    assert not watermark.finish(12)
    assert watermark.finish(11)
    assert not watermark.finish(11)
    assert watermark.pending_count == 1
    assert watermark.committable() is None
    assert watermark.finish(10)
    assert not watermark.finish(10)
    assert watermark.committable() == 12


def test_offsets_must_rise() -> None:
    watermark = watermark_with(10)
    with pytest.raises(ValueError, match="must rise"):
        watermark.add(10)
    with pytest.raises(ValueError, match="must rise"):
        watermark.add(3)


def test_revoked_watermark_ignores_finishes_and_refuses_adds() -> None:
    watermark = watermark_with(1, 2)
    watermark.revoke()
    assert watermark.revoked
    assert not watermark.finish(1)
    with pytest.raises(ValueError, match="revoked"):
        watermark.add(3)


class WatermarkModel(RuleBasedStateMachine):
    """Random interleavings of add, finish (including bogus ones) and commit, checked
    against a plain reference: the lowest unfinished offset, or last added + 1."""

    def __init__(self) -> None:
        super().__init__()
        self.watermark = PartitionWatermark()
        self.added: list[int] = []
        self.unfinished: set[int] = set()
        self.reported: int | None = None

    @rule(gap=st.integers(1, 3))
    def add(self, gap: int) -> None:
        offset = self.added[-1] + gap if self.added else gap * 10
        self.watermark.add(offset)
        self.added.append(offset)
        self.unfinished.add(offset)

    @precondition(lambda self: self.added)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from(self.added))
        expected = offset in self.unfinished
        assert self.watermark.finish(offset) is expected
        self.unfinished.discard(offset)

    @rule(offset=st.integers(0, 200))
    def finish_anything(self, offset: int) -> None:
        expected = offset in self.unfinished
        assert self.watermark.finish(offset) is expected
        self.unfinished.discard(offset)

    @rule()
    def commit(self) -> None:
        offset = self.watermark.committable()
        if offset is not None:
            self.watermark.mark_committed(offset)
            self.reported = offset

    def reference(self) -> int | None:
        if not self.added:
            return None
        return min(self.unfinished, default=self.added[-1] + 1)

    @invariant()
    def matches_reference(self) -> None:
        expected = self.reference()
        assert self.watermark.watermark() == expected
        assert self.watermark.pending_count == len(self.unfinished)
        committable = self.watermark.committable()
        if committable is not None:
            assert committable == expected
            assert all(committable <= offset for offset in self.unfinished)
            assert committable > (self.reported if self.reported is not None else self.added[0])
        elif expected is not None:
            assert expected == (self.reported if self.reported is not None else self.added[0])


TestWatermarkModel = WatermarkModel.TestCase


@given(
    offsets=st.lists(st.integers(0, 10_000), min_size=1, max_size=60, unique=True).map(sorted),
    data=st.data(),
)
def test_random_finish_orders_end_at_max_plus_one(offsets: list[int], data: st.DataObject) -> None:
    watermark = watermark_with(*offsets)
    order = data.draw(st.permutations(offsets))
    unfinished = set(offsets)
    for offset in order:
        watermark.finish(offset)
        unfinished.discard(offset)
        committable = watermark.committable()
        if committable is not None:
            assert all(committable <= o for o in unfinished)
            assert committable == min(unfinished, default=offsets[-1] + 1)
    assert watermark.committable() == offsets[-1] + 1
    assert watermark.pending_count == 0


def test_finished_above_lists_what_a_new_owner_may_skip() -> None:
    watermark = watermark_with(10, 11, 12, 14, 15)
    watermark.finish(11)
    watermark.finish(14)
    assert watermark.watermark() == 10
    assert watermark.finished_above() == [11, 14]
    assert watermark.finished_above_count == 2
    watermark.finish(10)  # the watermark moves to 12; 11 is below it now
    assert watermark.finished_above() == [14]
