"""Certificates made for a test: a CA, a server certificate for 127.0.0.1, client certificates.

Generated with the `cryptography` package into a directory; nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dispatcher.local_kafka_sasl import certificate_builder

_KeyPair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # the CA that signed the server certificate
    server_cert_file: Path  # for 127.0.0.1 (and "localhost")
    server_key_file: Path
    client_ca_file: Path  # the CA the server trusts for client certificates
    client_cert_file: Path
    client_key_file: Path
    client_combined_file: Path  # certificate and key in one PEM file
    client_encrypted_key_file: Path
    other_ca_file: Path  # a CA that signed nothing here


def make_pki(directory: Path) -> Pki:
    ca = _ca("test server CA")
    client_ca = _ca("test client CA")
    server = _leaf(ca, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH)
    client = _leaf(client_ca, "dispatcher", ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "ca_file": _pem(ca[0]),
        "server_cert_file": _pem(server[0]),
        "server_key_file": _key_pem(server[1]),
        "client_ca_file": _pem(client_ca[0]),
        "client_cert_file": _pem(client[0]),
        "client_key_file": _key_pem(client[1]),
        "client_combined_file": _pem(client[0]) + _key_pem(client[1]),
        "client_encrypted_key_file": _key_pem(client[1], b"a password"),
        "other_ca_file": _pem(_ca("unrelated CA")[0]),
    }
    paths = {}
    for name, content in files.items():
        path = directory / f"{name.removesuffix('_file')}.pem"
        path.write_bytes(content)
        paths[name] = path
    return Pki(**paths)


def _ca(name: str) -> _KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = certificate_builder(subject, subject, key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    return builder.sign(key, hashes.SHA256()), key


def _leaf(issuer: _KeyPair, name: str, usage: x509.ObjectIdentifier) -> _KeyPair:
    issuer_cert, issuer_key = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = certificate_builder(subject, issuer_cert.subject, key.public_key())
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
    )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
