"""The SASL_SSL listener of the local broker: its certificates, users and properties.

`local_kafka.start_sasl_ssl_broker` uses these. At every start a fresh CA and a server
certificate for 127.0.0.1 and localhost are made with the `cryptography` package (valid for a
day, kept in the broker's data directory and deleted with it), and two users with random
passwords: one for SASL/PLAIN (declared in the listener's JAAS line) and one for
SCRAM-SHA-512 (created by Kafka's own storage tool when the storage is formatted, so it
exists before the broker takes its first connection). The broker's controller and its
internal listener stay PLAINTEXT, on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PLAIN = "PLAIN"
SCRAM_SHA_512 = "SCRAM-SHA-512"
CERTIFICATE_VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class SaslUser:
    mechanism: str  # "PLAIN" | "SCRAM-SHA-512"
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class ListenerFiles:
    ca_file: Path  # what a client trusts
    keystore_file: Path  # the server's key and certificate, PEM (Kafka's PEM keystore)


def new_users() -> tuple[SaslUser, ...]:
    # Hex: no character needs quoting in the JAAS line or the storage tool's argument.
    return (
        SaslUser(PLAIN, "plain-user", secrets.token_hex(16)),
        SaslUser(SCRAM_SHA_512, "scram-user", secrets.token_hex(16)),
    )


def write_listener_files(directory: Path) -> ListenerFiles:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local Kafka CA")])
    ca = _ca_certificate(ca_name, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _server_certificate(ca_name, ca_key, server_key)
    files = ListenerFiles(directory / "ca.pem", directory / "broker-keystore.pem")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files.keystore_file.write_bytes(key_pem + server.public_bytes(serialization.Encoding.PEM))
    files.keystore_file.chmod(0o600)
    return files


def certificate_builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    """A certificate valid from 5 minutes ago for CERTIFICATE_VALIDITY (tests use it too)."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_VALIDITY)
    )


def _ca_certificate(name: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        certificate_builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return builder.sign(key, hashes.SHA256())


def _server_certificate(
    ca_name: x509.Name, ca_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    builder = (
        certificate_builder(subject, ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


def listener_properties(files: ListenerFiles, users: tuple[SaslUser, ...]) -> str:
    """server.properties lines of the SASL_SSL listener (its address is set by the caller)."""
    plain_users = " ".join(
        f'user_{user.username}="{user.password}"' for user in users if user.mechanism == PLAIN
    )
    plain_module = "org.apache.kafka.common.security.plain.PlainLoginModule"
    scram_module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return f"""sasl.enabled.mechanisms={PLAIN},{SCRAM_SHA_512}
listener.name.sasl_ssl.plain.sasl.jaas.config={plain_module} required {plain_users};
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_module} required;
ssl.keystore.type=PEM
ssl.keystore.location={files.keystore_file}
"""


def scram_format_args(users: tuple[SaslUser, ...]) -> list[str]:
    """`kafka-storage format` arguments that create the SCRAM users with the cluster."""
    args: list[str] = []
    for user in users:
        if user.mechanism == SCRAM_SHA_512:
            credential = f"name={user.username},password={user.password}"
            args += ["--add-scram", f"{SCRAM_SHA_512}=[{credential}]"]
    return args
