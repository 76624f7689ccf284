"""TLS to endpoints: a real HTTPS aiohttp receiver on 127.0.0.1 with certificates made here."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dispatcher.config import parse_settings
from dispatcher.errors import ConfigError
from dispatcher.http import WebhookSender
from dispatcher.model import Endpoint
from dispatcher.tls import MINIMUM_VERSION, TlsFileError, context_for, default_context, new_context
from tests.tls_certs import Pki, make_pki

BODY = b'{"id":"evt_1"}'
HEADERS = {"webhook-id": "evt_1", "content-type": "application/json"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Receiver:
    url: str
    client_subjects: list[Any] = field(default_factory=list)  # peer certificate per request


@pytest.fixture
async def receiver_factory(pki: Pki) -> AsyncIterator[Callable[[bool], Any]]:
    runners: list[web.AppRunner] = []

    async def start(require_client_cert: bool) -> Receiver:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.server_cert_file, pki.server_key_file)
        if require_client_cert:
            context.load_verify_locations(pki.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        holder = Receiver(url="")

        async def hook(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            peer = request.transport.get_extra_info("peercert")
            holder.client_subjects.append(peer["subject"] if peer else None)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        runners.append(runner)
        holder.url = f"https://127.0.0.1:{runner.addresses[0][1]}/hook"
        return holder

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    async with WebhookSender(pool_size=4, timeout_s=5.0, connect_timeout_s=5.0) as s:
        yield s


def _endpoint(
    ca_file: Path | None = None,
    client_cert_file: Path | None = None,
    client_key_file: Path | None = None,
) -> Endpoint:
    return Endpoint(
        "e",
        "https://127.0.0.1/hook",
        (b"k" * 24,),
        ("*",),
        ca_file=None if ca_file is None else str(ca_file),
        client_cert_file=None if client_cert_file is None else str(client_cert_file),
        client_key_file=None if client_key_file is None else str(client_key_file),
    )


async def test_verified_with_the_endpoints_ca(
    pki: Pki, receiver_factory: Callable[[bool], Any], sender: WebhookSender
) -> None:
    receiver = await receiver_factory(False)
    context = context_for(_endpoint(ca_file=pki.ca_file))
    result = await sender.send(receiver.url, BODY, HEADERS, ssl_context=context)
    assert (result.status, result.error) == (204, None)


async def test_refused_without_the_ca(
    receiver_factory: Callable[[bool], Any], sender: WebhookSender
) -> None:
    receiver = await receiver_factory(False)
    result = await sender.send(receiver.url, BODY, HEADERS)  # the system's CAs only
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("connect: tls")
    assert receiver.client_subjects == []


async def test_refused_with_another_ca(
    pki: Pki, receiver_factory: Callable[[bool], Any], sender: WebhookSender
) -> None:
    receiver = await receiver_factory(False)
    context = context_for(_endpoint(ca_file=pki.other_ca_file))
    result = await sender.send(receiver.url, BODY, HEADERS, ssl_context=context)
    assert (result.status, result.error) == (None, "connect: tls: SSLCertVerificationError")


async def test_hostname_is_checked(
    pki: Pki, receiver_factory: Callable[[bool], Any], sender: WebhookSender
) -> None:
    # The certificate names 127.0.0.1 and localhost; the same server reached as 127.0.0.2
    # (still loopback) does not match it.
    receiver = await receiver_factory(False)
    context = context_for(_endpoint(ca_file=pki.ca_file))
    port = receiver.url.split(":")[2].split("/")[0]
    result = await sender.send(f"https://127.0.0.2:{port}/hook", BODY, HEADERS, context)
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("connect:")


async def test_mutual_tls_presents_the_client_certificate(
    pki: Pki, receiver_factory: Callable[[bool], Any], sender: WebhookSender
) -> None:
    receiver = await receiver_factory(True)
    context = context_for(
        _endpoint(
            ca_file=pki.ca_file,
            client_cert_file=pki.client_cert_file,
            client_key_file=pki.client_key_file,
        )
    )
    combined = context_for(
        _endpoint(ca_file=pki.ca_file, client_cert_file=pki.client_combined_file)
    )
    results = [
        await sender.send(receiver.url, BODY, HEADERS, ssl_context=context),
        await sender.send(receiver.url, BODY, HEADERS, ssl_context=combined),
    ]
    assert [(r.status, r.error) for r in results] == [(204, None), (204, None)]
    assert receiver.client_subjects == [((("commonName", "dispatcher"),),)] * 2


async def test_mutual_tls_required_and_not_presented_fails(
    pki: Pki, receiver_factory: Callable[[bool], Any], sender: WebhookSender
) -> None:
    receiver = await receiver_factory(True)
    context = context_for(_endpoint(ca_file=pki.ca_file))
    result = await sender.send(receiver.url, BODY, HEADERS, ssl_context=context)
    assert result.status is None
    assert result.error is not None
    assert receiver.client_subjects == []


def test_contexts_verify_and_need_tls_1_2(pki: Pki) -> None:
    for context in (default_context(), new_context(str(pki.ca_file))):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version is MINIMUM_VERSION is ssl.TLSVersion.TLSv1_2


def test_endpoint_without_tls_options_uses_the_default() -> None:
    assert context_for(Endpoint("e", "https://h.example", (b"k" * 24,), ("*",))) is None


@pytest.mark.parametrize(
    ("options", "field", "problem"),
    [
        ({"ca_file": "missing.pem"}, "ca_file", "file not found"),
        ({"ca_file": "/dev/zero"}, "ca_file", "not a regular file"),  # would be read for ever
        ({"ca_file": "/"}, "ca_file", "not a regular file"),
        ({"client_cert_file": "/dev/urandom"}, "client_cert_file", "not a regular file"),
        ({"ca_file": "server_key_file"}, "ca_file", "no usable CA certificate"),
        ({"client_key_file": "client_key_file"}, "client_key_file", "needs client_cert_file"),
        ({"client_cert_file": "client_cert_file"}, "client_cert_file", "private key"),
        (
            {"client_cert_file": "client_cert_file", "client_key_file": "server_key_file"},
            "client_key_file",
            "not a PEM certificate with its private key",
        ),
        (
            {
                "client_cert_file": "client_cert_file",
                "client_key_file": "client_encrypted_key_file",
            },
            "client_key_file",
            "encrypted",
        ),
    ],
)
def test_bad_tls_files_name_their_field(
    pki: Pki, options: dict[str, str], field: str, problem: str
) -> None:
    paths = {k: str(getattr(pki, v, v)) for k, v in options.items()}
    with pytest.raises(TlsFileError) as caught:
        new_context(**paths)
    assert caught.value.field == field
    assert problem in caught.value.problem
    # The same file in a config is refused with the endpoint's field named.
    data = _config("https://hooks.example/h", **paths)
    with pytest.raises(ConfigError) as in_config:
        parse_settings(data, "c.toml", {})
    assert (in_config.value.field, in_config.value.problem) == (
        f"endpoints[0].{field}",
        caught.value.problem,
    )


def test_tls_options_are_read_from_config(pki: Pki) -> None:
    data = _config(
        "https://hooks.example/h",
        ca_file=str(pki.ca_file),
        client_cert_file=str(pki.client_cert_file),
        client_key_file=str(pki.client_key_file),
    )
    [endpoint] = parse_settings(data, "c.toml", {}).endpoints
    assert (endpoint.ca_file, endpoint.client_cert_file, endpoint.client_key_file) == (
        str(pki.ca_file),
        str(pki.client_cert_file),
        str(pki.client_key_file),
    )


def test_tls_options_need_an_https_url(pki: Pki) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(_config("http://hooks.example/h", ca_file=str(pki.ca_file)), "c", {})
    assert (caught.value.field, caught.value.problem) == (
        "endpoints[0].ca_file",
        "needs an https URL",
    )


def _config(url: str, **tls: str) -> dict[str, Any]:
    endpoint = {"id": "e", "url": url, "secret": SECRET, "event_types": ["*"], **tls}
    return {
        "kafka": {"bootstrap_servers": "kafka:9092", "source_topics": ["s"]},
        "endpoints": [endpoint],
    }
