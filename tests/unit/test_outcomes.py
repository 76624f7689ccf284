import pytest

from dispatcher.model import HttpResult
from dispatcher.outcomes import (
    ERROR_BODY_TOO_LARGE,
    ERROR_INVALID_URL,
    OutcomeClass,
    classify,
    classify_status,
)

D, R, P, G = (
    OutcomeClass.DELIVERED,
    OutcomeClass.RETRYABLE,
    OutcomeClass.PERMANENT,
    OutcomeClass.GONE,
)


def response(status: int, retry_after_s: float | None = None) -> HttpResult:
    return HttpResult(status=status, error=None, retry_after_s=retry_after_s, latency_s=0.01)


def no_response(error: str) -> HttpResult:
    return HttpResult(status=None, error=error, retry_after_s=None, latency_s=10.0)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, D),
        (201, D),
        (202, D),
        (204, D),
        (299, D),
        (100, P),
        (101, P),
        (199, P),
        (300, P),
        (301, P),
        (302, P),
        (307, P),
        (308, P),
        (400, P),
        (401, P),
        (403, P),
        (404, P),
        (405, P),
        (409, P),
        (413, P),
        (422, P),
        (499, P),
        (408, R),
        (425, R),
        (429, R),
        (410, G),
        (500, R),
        (502, R),
        (503, R),
        (504, R),
        (599, R),
        (0, P),
        (-1, P),
        (600, P),
        (999, P),
    ],
)
def test_status_table(status: int, expected: OutcomeClass) -> None:
    assert classify(response(status)) is expected
    assert classify_status(status) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("timeout", R),
        ("connect: Connection refused", R),
        ("reset: peer closed connection", R),
        ("tls: certificate verify failed", R),
        ("", R),
        (ERROR_INVALID_URL, P),
        (f"{ERROR_INVALID_URL}: ftp://x", P),
        (f"{ERROR_BODY_TOO_LARGE}: 2000000 > 1048576", P),
    ],
)
def test_no_response_table(error: str, expected: OutcomeClass) -> None:
    assert classify(no_response(error)) is expected


def test_no_response_without_error_text_is_retryable() -> None:
    result = HttpResult(status=None, error=None, retry_after_s=None, latency_s=0.0)
    assert classify(result) is R


def test_retry_after_does_not_change_the_class() -> None:
    assert classify(response(200, retry_after_s=30.0)) is D
    assert classify(response(503, retry_after_s=30.0)) is R


def test_only_retryable_is_not_final() -> None:
    assert [c for c in OutcomeClass if not c.is_final] == [R]
