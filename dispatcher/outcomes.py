"""Classify what one webhook POST came to (DESIGN.md, "Outcome classification").

Pure: the HTTP adapter reports an `HttpResult`; this module decides what it means, and the
pipeline acts on the decision (outcome record, retry topic, DLQ, disabling the endpoint).
"""

from __future__ import annotations

import enum

from dispatcher.model import HttpResult


class OutcomeClass(enum.Enum):
    DELIVERED = "delivered"  # 2xx
    RETRYABLE = "retryable"  # try again later (backoff.py decides when)
    PERMANENT = "permanent"  # dead-letter now; retrying cannot help
    GONE = "gone"  # 410: dead-letter and disable the endpoint (Standard Webhooks)

    @property
    def is_final(self) -> bool:
        """True when no retry follows this outcome."""
        return self is not OutcomeClass.RETRYABLE


# Error kinds (the text before the first ":" of `HttpResult.error`) that no retry can fix.
# The HTTP adapter reports a request it refused to send with one of these; every other error
# without a response (timeout, connect, reset, ...) is transient.
ERROR_INVALID_URL = "invalid-url"
ERROR_BODY_TOO_LARGE = "body-too-large"
# "blocked: <addr>": the egress guard refused the address (dispatcher.egress); the same
# address is refused on every attempt.
ERROR_BLOCKED = "blocked"
ERROR_INSECURE_URL = "insecure-url"  # plain http while [security] https_only is set
PERMANENT_ERROR_KINDS = frozenset(
    {ERROR_INVALID_URL, ERROR_BODY_TOO_LARGE, ERROR_BLOCKED, ERROR_INSECURE_URL}
)

# 408 Request Timeout, 425 Too Early, 429 Too Many Requests: the receiver asks us to come back.
_RETRYABLE_4XX = frozenset({408, 425, 429})


def _class_of_status(status: int) -> OutcomeClass:
    if 200 <= status <= 299:
        return OutcomeClass.DELIVERED
    if status == 410:
        return OutcomeClass.GONE
    if 500 <= status <= 599 or status in _RETRYABLE_4XX:
        return OutcomeClass.RETRYABLE
    # 1xx (should never be final), 3xx (redirects are not followed), other 4xx, nonsense codes.
    return OutcomeClass.PERMANENT


# classify() runs once per delivery: a table lookup instead of a chain of comparisons.
_BY_STATUS: tuple[OutcomeClass, ...] = tuple(_class_of_status(s) for s in range(600))


def classify_status(status: int) -> OutcomeClass:
    """The class of an HTTP status code that arrived from the receiver."""
    if 0 <= status < 600:
        return _BY_STATUS[status]
    return OutcomeClass.PERMANENT


def classify_error(error: str | None) -> OutcomeClass:
    """The class of a request that got no response; `error` as in `HttpResult.error`."""
    if error is not None and error.partition(":")[0].strip() in PERMANENT_ERROR_KINDS:
        return OutcomeClass.PERMANENT
    return OutcomeClass.RETRYABLE


def classify(result: HttpResult) -> OutcomeClass:
    """What `result` means for the delivery: delivered, retry later, give up, or endpoint gone."""
    status = result.status
    if status is None:
        return classify_error(result.error)
    return classify_status(status)
