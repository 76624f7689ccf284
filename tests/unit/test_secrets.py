"""Secrets never show: everything a config round writes is searched for every configured secret.

The written text is gathered from the log records (caplog, at DEBUG), the messages of the
config errors that name a secret's field, and the reprs and strs of settings and endpoints.
Each secret is searched in every form it could leak in: the `whsec_` text, its base64 part,
the raw key's bytes repr, hex and base64, and a URL's password.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import logging
import pprint
from typing import Any

import pytest

from dispatcher.config import parse_settings
from dispatcher.errors import ConfigError
from dispatcher.model import Endpoint
from dispatcher.secret import REDACTED, Secret
from dispatcher.signing import Signer, decode_secret

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROTATING = (
    "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "whsec_c2VjcmV0LWtleS1mb3ItdGhlLXJvdGF0aW9uLXRlc3Q=",
)
URL_PASSWORD = "pa55-w0rd-in-url"
SASL_PASSWORD = "sasl-pa55word-for-kafka"
ALL_SECRETS = (SECRET, *ROTATING)

log = logging.getLogger("tests.secrets")


def _config() -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": "kafka:9092",
            "source_topics": ["s"],
            "client": {"sasl.username": "u", "sasl.password": SASL_PASSWORD},
        },
        "endpoints": [
            {"id": "one", "url": "https://a.example/h", "secret": SECRET, "event_types": ["*"]},
            {
                "id": "two",
                "url": "https://b.example/h",
                "secrets": list(ROTATING),
                "event_types": ["*"],
            },
        ],
    }


def _forms(secret: str) -> list[str]:
    """Every text form in which the secret `secret` (a whsec_ string) could leak."""
    key = decode_secret(secret)
    encoded = secret.removeprefix("whsec_")
    return [
        secret,
        encoded.rstrip("="),
        repr(bytes(key))[2:-1],
        key.hex(),
        base64.b64encode(key).decode().rstrip("="),
    ]


# Each bad config puts a secret (or a URL password) where an error will be raised about it.
BAD_CONFIGS: list[tuple[str, object]] = [
    ("endpoints.0.secret", SECRET[:-8]),  # too short a key
    ("endpoints.0.secret", SECRET + "!"),  # not base64
    ("endpoints.0.secret", SECRET.removeprefix("whsec_")),  # no prefix
    ("endpoints.0.secret", [SECRET]),  # an array instead of a string
    ("endpoints.0.secrets", [SECRET]),  # both secret and secrets
    ("endpoints.1.secrets", SECRET),  # a string instead of an array
    ("endpoints.1.secrets", [ROTATING[0], ROTATING[1][:-30]]),
    ("endpoints.1.secret", ROTATING[0]),  # both, the other way round
    ("endpoints.0.secert", SECRET),  # a typo of the key
    ("endpoints.0.url", f"https://user:{URL_PASSWORD}@a.example/h"),
    ("endpoints.0.url", f"https://user:{URL_PASSWORD}@[::1/h"),  # and unparseable
    ("endpoints.0.url", f"ftp://user:{URL_PASSWORD}@a.example/h"),  # and not http
    ("endpoints.0.url", f"https://{URL_PASSWORD}@a.example/h"),  # a token as the user
]


def _changed(path: str, value: object) -> dict[str, Any]:
    data = _config()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = copy.deepcopy(value)
    return data


def _written(
    caplog: pytest.LogCaptureFixture, errors: list[ConfigError], objects: list[object]
) -> str:
    texts = [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    texts += [text for error in errors for text in (str(error), repr(error), error.problem)]
    texts += [text for obj in objects for text in (repr(obj), str(obj), pprint.pformat(obj))]
    return "\n".join(texts)


def test_no_secret_is_written_anywhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = parse_settings(_config(), "c.toml", {})
    endpoint = settings.endpoints[1]
    log.info("loaded %s", settings)
    log.debug("endpoint %r, keys %s, first %s", endpoint, endpoint.secrets, endpoint.secrets[0])
    log.warning(f"f-string {endpoint} {endpoint.secrets[0]!s}")  # a leak path too
    errors = []
    for path, value in BAD_CONFIGS:
        with pytest.raises(ConfigError) as caught:
            parse_settings(_changed(path, value), "c.toml", {})
        log.error("config refused: %s", caught.value)
        errors.append(caught.value)
    # asdict copies the keys too: they must stay Secret (kafka.client is plain data there).
    objects = [
        settings,
        endpoint,
        settings.kafka,
        [dataclasses.asdict(e) for e in settings.endpoints],
    ]

    written = _written(caplog, errors, objects)

    assert len(errors) == len(BAD_CONFIGS)
    assert REDACTED in written  # the secrets were there, redacted
    for secret in ALL_SECRETS:
        for form in _forms(secret):
            assert form not in written, f"a form of a configured secret leaked: {form[:6]}..."
    assert URL_PASSWORD not in written
    assert SASL_PASSWORD not in written


def test_each_bad_secret_error_names_its_field() -> None:
    fields = []
    for path, value in BAD_CONFIGS:
        with pytest.raises(ConfigError) as caught:
            parse_settings(_changed(path, value), "c.toml", {})
        fields.append(caught.value.field)
    assert fields == [
        "endpoints[0].secret",
        "endpoints[0].secret",
        "endpoints[0].secret",
        "endpoints[0].secret",
        "endpoints[0].secrets",
        "endpoints[1].secrets",
        "endpoints[1].secrets[1]",
        "endpoints[1].secrets",
        "endpoints[0].secert",
        *["endpoints[0].url"] * 4,
    ]


def test_url_with_credentials_is_refused_with_the_field_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(_changed("endpoints.0.url", "https://u:p@a.example/h"), "c.toml", {})
    assert (caught.value.field, caught.value.problem) == (
        "endpoints[0].url",
        "must not carry credentials (user:password@host)",
    )


def test_an_at_sign_in_the_query_is_not_a_credential() -> None:
    url = "https://a.example/h?notify=ops@example.com"
    settings = parse_settings(_changed("endpoints.0.url", url), "c.toml", {})
    assert settings.endpoints[0].url == url


def test_endpoint_holds_secrets_that_sign_like_the_raw_key() -> None:
    settings = parse_settings(_config(), "c.toml", {})
    [key] = settings.endpoints[0].secrets
    raw = decode_secret(SECRET)
    assert type(key) is Secret
    assert key == raw  # the same bytes, for the HMAC
    assert key.reveal() == raw
    assert type(key.reveal()) is bytes
    signed_with_secret = Signer(settings.endpoints[0].secrets).sign("m", 1, b"{}")
    assert signed_with_secret == Signer((raw,)).sign("m", 1, b"{}")


def test_plain_bytes_given_to_an_endpoint_are_wrapped() -> None:
    endpoint = Endpoint("e", "https://h.example", (b"k" * 24,), ("*",))
    assert [type(key) for key in endpoint.secrets] == [Secret]
    assert "kkkk" not in repr(endpoint)


@pytest.mark.parametrize("render", [repr, str, "{}".format, "{:>20}".format, "%s".__mod__])
def test_secret_renders_redacted(render: Any) -> None:
    assert "hunter2" not in render(Secret(b"hunter2"))
