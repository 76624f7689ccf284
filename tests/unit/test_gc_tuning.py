"""The worker's garbage-collector settings: the long-lived heap frozen, young collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dispatcher.gc_tuning import OLDER_THRESHOLD, YOUNG_THRESHOLD, settle_long_lived


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_what_the_process_holds_leaves_the_collectors_sight() -> None:
    long_lived = [["endpoint", i] for i in range(50_000)]  # like a catalog's records
    scanned_before = len(gc.get_objects())
    frozen = settle_long_lived()
    # A full collection now scans only what was made since: a small part of the heap.
    assert frozen >= len(long_lived)
    assert len(gc.get_objects()) < scanned_before / 10
    made_later = [["delivery", i] for i in range(10)]
    tracked = {id(o) for o in gc.get_objects()}
    assert all(id(o) in tracked for o in made_later)


@pytest.mark.usefixtures("restored_gc")
def test_young_collections_run_less_often_than_cpythons_default() -> None:
    settle_long_lived()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    assert YOUNG_THRESHOLD > 700
