import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.model import Endpoint
from dispatcher.routing import SubscriptionRouter


def endpoint(id_: str, *patterns: str) -> Endpoint:
    return Endpoint(
        id=id_, url=f"https://{id_}.example/hook", secrets=(b"k",), event_types=patterns
    )


ENDPOINTS = (
    endpoint("orders", "order.*"),
    endpoint("paid", "invoice.paid"),
    endpoint("all", "*"),
    endpoint("both", "invoice.paid", "invoice.*", "order.refund.*"),
    endpoint("deep", "order.x.*"),
    endpoint("exact-order", "order"),
)


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("order.created", ["orders", "all"]),
        ("order.x.y", ["orders", "all", "deep"]),
        ("order.x", ["orders", "all"]),
        ("order", ["all", "exact-order"]),
        ("orders.created", ["all"]),
        ("order.refund.issued", ["orders", "all", "both"]),
        ("order.refund", ["orders", "all"]),
        ("invoice.paid", ["paid", "all", "both"]),
        ("invoice.void", ["all", "both"]),
        ("invoice", ["all"]),
        ("invoice.paid.late", ["all", "both"]),
        ("user.signup", ["all"]),
        ("", ["all"]),
    ],
)
def test_match_table(event_type: str, expected: list[str]) -> None:
    router = SubscriptionRouter(ENDPOINTS)
    assert [e.id for e in router.match(event_type)] == expected


def test_no_subscribers_gives_empty_tuple() -> None:
    router = SubscriptionRouter([endpoint("a", "a.b")])
    assert router.match("c.d") == ()


def test_each_endpoint_once_even_when_many_patterns_match() -> None:
    router = SubscriptionRouter([endpoint("a", "x.y", "x.*", "*", "x.y")])
    assert [e.id for e in router.match("x.y")] == ["a"]


def test_result_is_cached_and_stable() -> None:
    router = SubscriptionRouter(ENDPOINTS)
    assert router.match("order.created") is router.match("order.created")


def test_cache_is_bounded_and_stays_correct() -> None:
    router = SubscriptionRouter(ENDPOINTS, cache_size=8)
    for i in range(100):
        assert [e.id for e in router.match(f"order.t{i}")] == ["orders", "all"]
    assert 0 < router.cached_types <= 8


@pytest.mark.parametrize("pattern", ["", "order*", "*.created", "order.*.created", ".*", "**"])
def test_bad_pattern_names_the_endpoint(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"endpoint 'bad'.*not an exact type"):
        SubscriptionRouter([endpoint("ok", "a"), endpoint("bad", pattern)])


def naive_match(endpoints: list[Endpoint], event_type: str) -> list[str]:
    def matches(pattern: str) -> bool:
        if pattern == "*":
            return True
        if pattern.endswith(".*"):
            return event_type.startswith(pattern[:-1])
        return event_type == pattern

    return [e.id for e in endpoints if any(matches(p) for p in e.event_types)]


segments = st.sampled_from(["a", "b", "c", "ab", ""])
types = st.lists(segments, min_size=1, max_size=4).map(".".join)
patterns = st.one_of(
    st.just("*"),
    types.filter(bool),
    st.lists(segments.filter(bool), min_size=1, max_size=3).map(lambda s: ".".join(s) + ".*"),
)


@given(
    pattern_sets=st.lists(st.lists(patterns, max_size=4), max_size=6),
    event_types=st.lists(types, min_size=1, max_size=10),
)
def test_matches_naive_reference(pattern_sets: list[list[str]], event_types: list[str]) -> None:
    endpoints = [endpoint(f"e{i}", *ps) for i, ps in enumerate(pattern_sets)]
    router = SubscriptionRouter(endpoints, cache_size=3)
    for event_type in event_types + event_types:  # the second pass reads the cache
        assert [e.id for e in router.match(event_type)] == naive_match(endpoints, event_type)
