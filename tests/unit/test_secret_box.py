"""Endpoint secrets sealed at rest: AES-GCM, bound to the endpoint, keys that rotate, and
errors that never show a secret or a key."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.secret import Secret
from dispatcher.secret_box import KEYS_ENV, SecretBox, SecretBoxError, is_sealed, main

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 132))
SECRET = Secret(b"whsec-key-bytes-0123456789abcdef")
ENDPOINT_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # as config.py takes them
SEALED_FORM = re.compile(r"aesgcm:v1:(?P<kid>[A-Za-z0-9_-]+):(?P<data>[A-Za-z0-9_-]+)")


def entry(key_id: str, key: bytes) -> str:
    return f"{key_id}:{base64.b64encode(key).decode()}"


def box(*entries: str) -> SecretBox:
    made = SecretBox.from_env({KEYS_ENV: ",".join(entries)})
    assert made is not None
    return made


def never_shown(message: str) -> None:
    for key in (KEY_1, KEY_2):
        assert base64.b64encode(key).decode() not in message
        assert base64.b64encode(key).decode()[:16] not in message
    assert SECRET.reveal().decode() not in message


def test_a_sealed_secret_opens_for_its_endpoint() -> None:
    secrets = box(entry("k1", KEY_1))
    sealed = secrets.seal("shop-1", SECRET)

    match = SEALED_FORM.fullmatch(sealed)
    assert match is not None
    assert match["kid"] == "k1"
    assert is_sealed(sealed)
    never_shown(sealed)
    opened = secrets.open("shop-1", sealed)
    assert opened == SECRET
    assert type(opened) is Secret  # redacted repr from the moment it is opened


def test_every_seal_uses_a_fresh_nonce() -> None:
    secrets = box(entry("k1", KEY_1))
    assert secrets.seal("e", SECRET) != secrets.seal("e", SECRET)


def test_a_sealed_secret_moved_to_another_endpoint_does_not_open() -> None:
    secrets = box(entry("k1", KEY_1))
    sealed = secrets.seal("shop-1", SECRET)
    with pytest.raises(SecretBoxError) as refused:
        secrets.open("shop-2", sealed)
    assert str(refused.value) == (
        "the secret of endpoint 'shop-2' does not open under key id 'k1': it was altered,"
        " sealed for another endpoint, or sealed with another key of that id"
    )


def tampered(sealed: str, position: int) -> str:
    header, _, data = sealed.rpartition(":")
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    raw[position] ^= 0x01
    return f"{header}:{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


@pytest.mark.parametrize("position", [0, 11, 12, -17, -1])  # nonce, ciphertext, tag
def test_a_changed_bit_anywhere_is_refused(position: int) -> None:
    secrets = box(entry("k1", KEY_1))
    with pytest.raises(SecretBoxError, match="does not open under key id 'k1'") as refused:
        secrets.open("e", tampered(secrets.seal("e", SECRET), position))
    never_shown(str(refused.value))


def test_a_relabelled_key_id_is_refused() -> None:
    # k2 holds the same key as k1: only the associated data tells them apart.
    secrets = box(entry("k1", KEY_1), entry("k2", KEY_1))
    sealed = secrets.seal("e", SECRET).replace(":k1:", ":k2:")
    with pytest.raises(SecretBoxError, match="does not open under key id 'k2'"):
        secrets.open("e", sealed)


def test_keys_rotate_the_first_seals_and_every_listed_one_opens() -> None:
    old = box(entry("k1", KEY_1))
    sealed_old = old.seal("e", SECRET)
    rotating = box(entry("k2", KEY_2), entry("k1", KEY_1))

    assert rotating.open("e", sealed_old) == SECRET
    resealed = rotating.reseal("e", sealed_old)
    assert resealed.startswith("aesgcm:v1:k2:")
    assert rotating.reseal("e", resealed) == resealed  # already under the sealing key

    rotated = box(entry("k2", KEY_2))
    assert rotated.open("e", resealed) == SECRET
    with pytest.raises(SecretBoxError) as refused:
        rotated.open("e", sealed_old)
    assert str(refused.value) == (
        f"the secret of endpoint 'e' is sealed with key id 'k1', which {KEYS_ENV} does not"
        " hold (it holds k2): add that key back to open it"
    )


def test_another_key_under_the_same_id_does_not_open() -> None:
    sealed = box(entry("k1", KEY_1)).seal("e", SECRET)
    with pytest.raises(SecretBoxError, match="does not open under key id 'k1'"):
        box(entry("k1", KEY_2)).open("e", sealed)


@pytest.mark.parametrize(
    ("sealed", "problem"),
    [
        ("whsec_plain", "is not sealed as 'aesgcm:v1:<key id>:<data>'"),
        ("aesgcm:v2:k1:AAAA", "is not sealed as"),
        ("aesgcm:v1:k1:!!!", "is damaged"),
        ("aesgcm:v1:k1:" + "A" * 30, "is damaged"),  # shorter than nonce + tag
    ],
)
def test_what_is_not_a_sealed_secret_is_named(sealed: str, problem: str) -> None:
    with pytest.raises(SecretBoxError, match=re.escape(problem)):
        box(entry("k1", KEY_1)).open("e", sealed)


def test_without_the_variable_there_is_no_box() -> None:
    assert SecretBox.from_env({}) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", f"{KEYS_ENV} is set but empty"),
        (base64.b64encode(KEY_1).decode(), "entry 1: must be 'key-id:base64-key'"),
        ("k 1:" + base64.b64encode(KEY_1).decode(), "entry 1: the key id must be 1..32"),
        (
            "k1:" + base64.b64encode(KEY_1).decode()[:-4] + "%%%%",
            "entry 1 ('k1'): the key is not base64",
        ),
        (entry("k1", KEY_1[:16]), "key 'k1' has 16 bytes; AES-256 needs 32"),
        (f"{entry('k1', KEY_1)},{entry('k1', KEY_2)}", "key id 'k1' is listed twice"),
        (f"{entry('k1', KEY_1)},", "entry 2: must be 'key-id:base64-key'"),
    ],
)
def test_a_bad_key_list_is_named_without_its_keys(value: str, problem: str) -> None:
    with pytest.raises(SecretBoxError) as refused:
        SecretBox.from_env({KEYS_ENV: value})
    message = str(refused.value)
    assert problem in message
    never_shown(message)


def test_the_box_never_shows_its_keys() -> None:
    secrets = box(entry("k2", KEY_2), entry("k1", KEY_1))
    assert repr(secrets) == "SecretBox(key_ids=('k2', 'k1'))"
    never_shown(repr(secrets))


def test_urlsafe_base64_keys_are_taken_too() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # '+' and '/' in standard base64
    urlsafe = f"k1:{base64.urlsafe_b64encode(key).decode()}"
    assert box(urlsafe).open("e", box(entry("k1", key)).seal("e", SECRET)) == SECRET


def test_new_key_prints_an_entry_that_loads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-key", "k3"]) == 0
    printed = capsys.readouterr().out.strip()
    assert box(printed).key_ids == ("k3",)
    assert main(["new-key", "bad id"]) == 2


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=0, max_size=200),
    endpoint_id=st.from_regex(ENDPOINT_ID, fullmatch=True),
    other_id=st.from_regex(ENDPOINT_ID, fullmatch=True),
)
def test_any_secret_round_trips_and_only_for_its_endpoint(
    secret: bytes, endpoint_id: str, other_id: str
) -> None:
    secrets = box(entry("k2", KEY_2), entry("k1", KEY_1))
    sealed = secrets.seal(endpoint_id, Secret(secret))
    assert secrets.open(endpoint_id, sealed) == secret
    if other_id != endpoint_id:
        with pytest.raises(SecretBoxError):
            secrets.open(other_id, sealed)
