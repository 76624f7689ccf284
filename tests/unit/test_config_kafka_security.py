"""`[kafka]` SASL and TLS keys: read, validated with the field named, passwords from the
environment only and never shown, and applied by every client builder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispatcher.config import parse_settings
from dispatcher.errors import ConfigError
from dispatcher.kafka.clients import admin_config, consumer_config, producer_config
from dispatcher.model import KafkaProtocol, KafkaSecurity, KafkaSettings, SaslMechanism
from dispatcher.secret import Secret
from tests.pipeline_harness import new_secret
from tests.tls_certs import Pki, make_pki

PASSWORD = "kafka-pw-3f9a1c"  # what the environment holds; must never show anywhere
KEY_PASSWORD = "a password"  # tests.tls_certs encrypts client_encrypted_key with it
ENV = {"KAFKA_PW": PASSWORD, "KEY_PW": KEY_PASSWORD, "EMPTY": ""}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def config(**kafka: Any) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": "kafka-1:9093", "source_topics": ["s"], **kafka},
        "endpoints": [
            {"id": "e", "url": "https://e.example/", "secret": new_secret(), "event_types": ["*"]}
        ],
    }


def sasl_ssl(ca_file: str, **more: Any) -> dict[str, Any]:
    return config(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="dispatcher",
        sasl_password_env="KAFKA_PW",
        ssl_ca_file=ca_file,
        **more,
    )


def load(data: dict[str, Any]) -> KafkaSettings:
    return parse_settings(data, "c.toml", environ=ENV).kafka


def refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(data)
    assert PASSWORD not in str(caught.value)
    return caught.value


def test_sasl_ssl_settings_are_read_with_the_password_from_the_environment(pki: Pki) -> None:
    kafka = load(sasl_ssl(str(pki.ca_file)))

    assert kafka.security == KafkaSecurity(
        protocol=KafkaProtocol.SASL_SSL,
        sasl_mechanism=SaslMechanism.SCRAM_SHA_512,
        sasl_username="dispatcher",
        sasl_password=Secret(PASSWORD.encode()),
        ssl_ca_file=str(pki.ca_file),
    )
    assert type(kafka.security.sasl_password) is Secret
    assert PASSWORD not in repr(kafka) + str(kafka.security)


def test_every_client_builder_applies_them_and_the_passthrough_last(pki: Pki) -> None:
    data = sasl_ssl(str(pki.ca_file), client={"ssl.endpoint.identification.algorithm": "none"})
    kafka = load(data)
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "dispatcher",
        "sasl.password": PASSWORD,  # given to librdkafka, and only to it
        "ssl.ca.location": str(pki.ca_file),
        "ssl.endpoint.identification.algorithm": "none",
    }
    for make in (consumer_config, producer_config, admin_config):
        built = make(kafka)
        assert {key: built.get(key) for key in expected} == expected, make.__name__
        assert list(built)[-1] == "ssl.endpoint.identification.algorithm"  # applied last


def test_without_security_keys_the_clients_use_plaintext() -> None:
    kafka = load(config())
    assert kafka.security == KafkaSecurity()
    built = consumer_config(kafka)
    assert built["security.protocol"] == "PLAINTEXT"
    assert not [key for key in built if key.startswith(("sasl.", "ssl."))]


def test_the_client_passthrough_alone_still_sets_security() -> None:
    # Configs written before these keys keep working.
    kafka = load(config(client={"security.protocol": "SSL"}))
    assert producer_config(kafka)["security.protocol"] == "SSL"


def test_mutual_tls_with_an_encrypted_key_takes_its_password_from_the_environment(
    pki: Pki,
) -> None:
    data = config(
        security_protocol="SSL",
        ssl_ca_file=str(pki.ca_file),
        ssl_certificate_file=str(pki.client_cert_file),
        ssl_key_file=str(pki.client_encrypted_key_file),
        ssl_key_password_env="KEY_PW",
    )
    built = admin_config(load(data))
    assert built["ssl.certificate.location"] == str(pki.client_cert_file)
    assert built["ssl.key.location"] == str(pki.client_encrypted_key_file)
    assert built["ssl.key.password"] == KEY_PASSWORD
    assert "sasl.mechanism" not in built


BAD = [
    ({"security_protocol": "TLS"}, "security_protocol", "must be one of 'PLAINTEXT', 'SSL'"),
    (
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
        "sasl_mechanism",
        "must be one of 'PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', got 'GSSAPI'",
    ),
    (
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
        "sasl_username",
        "missing: required with security_protocol 'SASL_PLAINTEXT'",
    ),
    ({"sasl_username": "u"}, "sasl_username", "needs security_protocol 'SASL_SSL' or"),
    (
        {"security_protocol": "SASL_PLAINTEXT", "ssl_ca_file": "ca.pem"},
        "ssl_ca_file",
        "needs security_protocol 'SSL' or 'SASL_SSL'",
    ),
    (
        {"security_protocol": "SSL", "ssl_key_file": "k.pem"},
        "ssl_key_file",
        "needs ssl_certificate_file",
    ),
    (
        {"security_protocol": "SSL", "ssl_key_password_env": "KEY_PW"},
        "ssl_key_password_env",
        "needs ssl_key_file",
    ),
    (
        {"security_protocol": "SSL", "ssl_ca_file": "/nonexistent/ca.pem"},
        "ssl_ca_file",
        "file not found",
    ),
]
SASL = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "PLAIN",
    "sasl_username": "u",
}
BAD_PASSWORD_ENV = [
    ("1NOT-A-NAME", "must be an environment variable name, got '1NOT-A-NAME'"),
    ("UNSET_VARIABLE", "the environment variable UNSET_VARIABLE is not set or empty"),
    ("EMPTY", "the environment variable EMPTY is not set or empty"),
]


@pytest.mark.parametrize(("kafka", "field", "problem"), BAD)
def test_each_bad_security_value_is_named(kafka: dict[str, Any], field: str, problem: str) -> None:
    error = refused(config(**kafka))
    assert error.field == f"kafka.{field}"
    assert problem in error.problem


@pytest.mark.parametrize(("name", "problem"), BAD_PASSWORD_ENV)
def test_a_password_variable_that_gives_no_password_is_named(name: str, problem: str) -> None:
    error = refused(config(**SASL, sasl_password_env=name))
    assert (error.field, error.problem) == ("kafka.sasl_password_env", problem)


def test_a_password_in_the_file_is_not_a_key() -> None:
    error = refused(config(**SASL, sasl_password="in-the-file"))
    assert error.field == "kafka.sasl_password"
    assert "in-the-file" not in str(error)


def test_a_key_and_the_same_passthrough_property_conflict() -> None:
    data = config(**SASL, sasl_password_env="KAFKA_PW", client={"sasl.username": "other"})
    error = refused(data)
    assert error.field == "kafka.client.sasl.username"
    assert error.problem == "kafka.sasl_username sets it too; give one of the two"


def test_tls_files_that_cannot_be_used_are_named(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate")
    tls = {"security_protocol": "SSL"}
    cases = [
        ({"ssl_ca_file": str(not_pem)}, "ssl_ca_file", "no usable PEM CA certificate"),
        ({"ssl_ca_file": str(tmp_path)}, "ssl_ca_file", "not a regular file"),
        (
            {
                "ssl_certificate_file": str(pki.client_cert_file),
                "ssl_key_file": str(pki.client_encrypted_key_file),
            },
            "ssl_key_file",
            "the key is encrypted: set ssl_key_password_env",
        ),
        (
            {
                "ssl_certificate_file": str(pki.client_cert_file),
                "ssl_key_file": str(pki.server_key_file),
            },
            "ssl_key_file",
            "not the PEM private key of ssl_certificate_file",
        ),
        (
            {
                "ssl_certificate_file": str(pki.client_cert_file),
                "ssl_key_file": str(pki.client_encrypted_key_file),
                "ssl_key_password_env": "KAFKA_PW",  # a wrong key password
            },
            "ssl_key_file",
            "not a PEM certificate with its private key (or the key password is wrong)",
        ),
    ]
    for kafka, field, problem in cases:
        error = refused(config(**tls, **kafka))
        assert (error.field, error.problem) == (f"kafka.{field}", problem), kafka
