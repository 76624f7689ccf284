"""What the receiver records and how an endpoint answers: values and counts, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

HOOKS_PREFIX = "/hooks/"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one endpoint answers. Ratios are exact shares, spread evenly over arrivals."""

    latency_s: float = 0.0
    status: int = 204
    fail_ratio: float = 0.0  # this share of answered requests get 503
    hang_ratio: float = 0.0  # this share is held open until the client gives up

    def __post_init__(self) -> None:
        if self.latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {self.latency_s}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        for name in ("fail_ratio", "hang_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)}")


class Received(NamedTuple):
    """One request as it arrived. A tuple: the benchmark sink appends ~10k of these a second."""

    endpoint_id: str
    webhook_id: str | None
    received_at: float  # time.time() on arrival
    body_len: int
    status: int | None  # the answer given; None when held open (hang)
    signature_ok: bool | None  # None when the endpoint has no secrets to check with
    in_flight: int  # requests of this endpoint in flight on arrival, this one included
    headers: tuple[tuple[str, str], ...]  # every webhook-* header, names lower-case


def webhook_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Every webhook-* header, names lower-case: what `Received.headers` holds."""
    return tuple((k.lower(), v) for k, v in headers.items() if k.lower().startswith("webhook-"))


def hits(count: int, ratio: float) -> bool:
    """True for the count-th event when `ratio` of all events should hit (evenly spread)."""
    return int(count * ratio) > int((count - 1) * ratio)


class EndpointState:
    """Counts and answer choice for one endpoint id. Touched only by the server's loop."""

    __slots__ = (
        "answered",
        "bad_signatures",
        "behaviour",
        "in_flight",
        "max_in_flight",
        "received",
        "statuses",
    )

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received = 0
        self.answered = 0  # received and not held open
        self.in_flight = 0
        self.max_in_flight = 0
        self.bad_signatures = 0
        self.statuses: dict[int | None, int] = {}

    def enter(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def choose_answer(self, signature_ok: bool | None) -> int | None:
        """The status for the next request (401 on a bad signature); None means hang."""
        self.received += 1
        status = self._answer_for(signature_ok)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status

    def _answer_for(self, signature_ok: bool | None) -> int | None:
        if signature_ok is False:
            self.bad_signatures += 1
            return 401
        behaviour = self.behaviour
        if behaviour.hang_ratio and hits(self.received - self.bad_signatures, behaviour.hang_ratio):
            return None
        self.answered += 1
        if behaviour.fail_ratio and hits(self.answered, behaviour.fail_ratio):
            return 503
        return behaviour.status

    def stats(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "statuses": {("hung" if s is None else str(s)): n for s, n in self.statuses.items()},
            "bad_signatures": self.bad_signatures,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }
