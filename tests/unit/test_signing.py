"""Signatures must verify with the reference `standardwebhooks` library, and only when intact."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatcher.signing import Signer, decode_secret

OLD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BODY = b'{"id":"evt_1","type":"order.created","timestamp":"2024-05-01T10:00:00Z","data":{"n":1}}'


def _signed_headers(secrets: list[str], body: bytes = BODY) -> dict[str, str]:
    signer = Signer(tuple(decode_secret(s) for s in secrets))
    return signer.headers("evt_1", int(time.time()), body)


def test_signature_verifies_with_the_reference_library() -> None:
    headers = _signed_headers([OLD_SECRET])

    assert Webhook(OLD_SECRET).verify(BODY, headers)["data"] == {"n": 1}


def test_headers_follow_the_specification() -> None:
    headers = Signer((decode_secret(OLD_SECRET),)).headers("evt_9", 1_700_000_000, BODY)

    assert headers["webhook-id"] == "evt_9"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"


def test_known_signature_matches_the_reference_library_sign() -> None:
    expected = Webhook(OLD_SECRET).sign(
        "evt_1", datetime.fromtimestamp(1_700_000_000, UTC), BODY.decode()
    )

    assert Signer((decode_secret(OLD_SECRET),)).sign("evt_1", 1_700_000_000, BODY) == expected


@pytest.mark.parametrize("receiver_secret", [OLD_SECRET, NEW_SECRET])
def test_during_rotation_either_secret_verifies(receiver_secret: str) -> None:
    headers = _signed_headers([NEW_SECRET, OLD_SECRET])

    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(receiver_secret).verify(BODY, headers)


def test_tampered_body_fails() -> None:
    headers = _signed_headers([OLD_SECRET])

    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(BODY.replace(b'"n":1', b'"n":2'), headers)


def test_other_secret_fails() -> None:
    headers = _signed_headers([OLD_SECRET])

    with pytest.raises(WebhookVerificationError):
        Webhook(NEW_SECRET).verify(BODY, headers)


def test_changed_id_fails() -> None:
    headers = _signed_headers([OLD_SECRET])
    headers["webhook-id"] = "evt_2"

    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(BODY, headers)


@given(msg_id=st.text(min_size=1), body=st.binary(), timestamp=st.integers(0, 2**40))
def test_signing_is_deterministic_and_key_dependent(
    msg_id: str, body: bytes, timestamp: int
) -> None:
    old = Signer((decode_secret(OLD_SECRET),))
    new = Signer((decode_secret(NEW_SECRET),))

    assert old.sign(msg_id, timestamp, body) == old.sign(msg_id, timestamp, body)
    assert old.sign(msg_id, timestamp, body) != new.sign(msg_id, timestamp, body)


def test_decode_secret_returns_the_base64_key() -> None:
    assert decode_secret(NEW_SECRET) == bytes(range(32))


def test_decode_secret_tolerates_missing_padding() -> None:
    padded = "whsec_" + base64.b64encode(bytes(range(25))).decode()
    assert padded.endswith("=")

    assert decode_secret(padded.rstrip("=")) == bytes(range(25))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_", "must decode to 24..64 bytes, got 0"),
        ("whsec_not base64!!", "not valid base64"),
        ("whsec_é", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "got 5 bytes"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "got 65 bytes"),
    ],
)
def test_decode_secret_rejects_bad_input(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_secret(text)


def test_signer_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Signer(())
