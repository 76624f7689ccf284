"""Which endpoints an event type goes to. Pure; built once from the configured endpoints.

Patterns: an exact type (`invoice.paid`), a prefix (`order.*`: any type starting with
`order.`, so `order.created` and `order.x.y`, not `order` nor `orders.created`), or `*`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dispatcher.model import Endpoint

WILDCARD = "*"
_PREFIX_SUFFIX = ".*"
# Event types are few; the cap keeps a flood of random types from growing memory.
DEFAULT_CACHE_SIZE = 10_000


def check_pattern(pattern: str) -> None:
    """Raise ValueError unless `pattern` is an exact type, `prefix.*` or `*`."""
    if pattern == WILDCARD:
        return
    body = pattern.removesuffix(_PREFIX_SUFFIX)
    if not body or "*" in body:
        raise ValueError(f"event type pattern {pattern!r} is not an exact type, 'prefix.*' or '*'")


class SubscriptionRouter:
    """Maps an event type to its subscribed endpoints, in config order, each at most once.

    Exact types and prefixes live in dicts, so a lookup costs O(dots in the type), not
    O(endpoints); results are cached per type.
    """

    __slots__ = ("_cache", "_cache_size", "_endpoints", "_everything", "_exact", "_prefixes")

    def __init__(self, endpoints: Sequence[Endpoint], cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._endpoints = tuple(endpoints)
        self._exact: dict[str, list[int]] = {}
        self._prefixes: dict[str, list[int]] = {}
        self._everything: list[int] = []
        for index, endpoint in enumerate(self._endpoints):
            for pattern in endpoint.event_types:
                self._subscribe(index, endpoint, pattern)
        self._cache: dict[str, tuple[Endpoint, ...]] = {}
        self._cache_size = cache_size

    def _subscribe(self, index: int, endpoint: Endpoint, pattern: str) -> None:
        try:
            check_pattern(pattern)
        except ValueError as exc:
            raise ValueError(f"endpoint {endpoint.id!r}: {exc}") from None
        if pattern == WILDCARD:
            self._everything.append(index)
        elif pattern.endswith(_PREFIX_SUFFIX):
            self._prefixes.setdefault(pattern[: -len(_PREFIX_SUFFIX)], []).append(index)
        else:
            self._exact.setdefault(pattern, []).append(index)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def cached_types(self) -> int:
        """Event types whose result is cached now (never more than the cache size)."""
        return len(self._cache)

    def match(self, event_type: str) -> tuple[Endpoint, ...]:
        """The endpoints subscribed to `event_type`, in config order; () when none."""
        found = self._cache.get(event_type)
        if found is None:
            found = self._compute(event_type)
            if len(self._cache) >= self._cache_size:
                # Clearing beats LRU bookkeeping: the real types refill it at once.
                self._cache.clear()
            self._cache[event_type] = found
        return found

    def _compute(self, event_type: str) -> tuple[Endpoint, ...]:
        indices = set(self._everything)
        indices.update(self._exact.get(event_type, ()))
        dot = event_type.find(".")
        while dot != -1:
            indices.update(self._prefixes.get(event_type[:dot], ()))
            dot = event_type.find(".", dot + 1)
        endpoints = self._endpoints
        return tuple(endpoints[i] for i in sorted(indices))
