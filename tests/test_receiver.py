"""The recording receiver, driven by real HTTP requests on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest
import requests
from standardwebhooks import Webhook

from dispatcher.receiver import (
    Behaviour,
    Received,
    ReceiverThread,
    RecordingReceiver,
    main,
)
from dispatcher.signing import Signer, decode_secret

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"id":"evt_1","type":"order.created","timestamp":"2024-01-01T00:00:00Z","data":{}}'


def signed_headers(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    """Headers signed by the standardwebhooks package, not by our own signer."""
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
) -> int:
    async with client.post(url, data=body, headers=headers or {}) as response:
        return response.status


async def test_records_each_delivery(client: aiohttp.ClientSession) -> None:
    headers = {"webhook-id": "evt_1", "webhook-timestamp": "1700000000", "x-other": "no"}
    async with RecordingReceiver() as receiver:
        assert await post(client, receiver.hook_url("ep-1"), headers=headers) == 204
        [record] = receiver.records
    assert (record.endpoint_id, record.webhook_id, record.body_len) == ("ep-1", "evt_1", len(BODY))
    assert (record.status, record.signature_ok, record.in_flight) == (204, None, 1)
    assert record.headers == (("webhook-id", "evt_1"), ("webhook-timestamp", "1700000000"))


async def test_endpoint_overrides_the_default(client: aiohttp.ClientSession) -> None:
    behaviours = {"ep-teapot": Behaviour(status=418), "ep-slow": Behaviour(latency_s=3600)}
    async with RecordingReceiver(default=Behaviour(status=200), behaviours=behaviours) as receiver:
        assert await post(client, receiver.hook_url("ep-any")) == 200
        assert await post(client, receiver.hook_url("ep-teapot")) == 418
        # An hour of latency: the client gives up first, after the request was recorded.
        with pytest.raises(TimeoutError):
            await post_with_timeout(client, receiver.hook_url("ep-slow"), timeout_s=0.2)
        assert [r.endpoint_id for r in receiver.records] == ["ep-any", "ep-teapot", "ep-slow"]


async def post_with_timeout(client: aiohttp.ClientSession, url: str, timeout_s: float) -> int:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with client.post(url, data=BODY, timeout=timeout) as response:
        return response.status


async def test_set_behaviour_changes_answers_from_then_on(client: aiohttp.ClientSession) -> None:
    async with RecordingReceiver() as receiver:
        assert await post(client, receiver.hook_url("ep-1")) == 204
        receiver.set_behaviour("ep-1", Behaviour(status=500))
        receiver.set_behaviour(None, Behaviour(status=202))
        assert await post(client, receiver.hook_url("ep-1")) == 500
        assert await post(client, receiver.hook_url("ep-2")) == 202


async def test_fail_ratio_is_an_exact_evenly_spread_share(client: aiohttp.ClientSession) -> None:
    async with RecordingReceiver(default=Behaviour(fail_ratio=0.25)) as receiver:
        statuses = [await post(client, receiver.hook_url("ep-1")) for _ in range(8)]
    assert statuses == [204, 204, 204, 503, 204, 204, 204, 503]


async def test_hang_holds_the_request_until_the_client_gives_up(
    client: aiohttp.ClientSession,
) -> None:
    async with RecordingReceiver(default=Behaviour(hang_ratio=0.5)) as receiver:
        assert await post(client, receiver.hook_url("ep-1")) == 204
        with pytest.raises(TimeoutError):
            await post_with_timeout(client, receiver.hook_url("ep-1"), timeout_s=0.2)
        assert [r.status for r in receiver.records] == [204, None]
        assert receiver.stats()["endpoints"]["ep-1"]["statuses"] == {"204": 1, "hung": 1}


async def test_max_in_flight_counts_concurrent_requests(client: aiohttp.ClientSession) -> None:
    behaviours = {"ep-held": Behaviour(hang_ratio=1.0)}
    receiver = RecordingReceiver(behaviours=behaviours)
    await receiver.start()
    held = [asyncio.create_task(post(client, receiver.hook_url("ep-held"))) for _ in range(2)]
    await receiver.wait_for(2, timeout_s=10)  # both arrived and neither has been answered
    for _ in range(3):
        await post(client, receiver.hook_url("ep-sequential"))
    assert receiver.max_in_flight("ep-held") == 2
    assert receiver.max_in_flight("ep-sequential") == 1
    assert receiver.max_in_flight("ep-never-seen") == 0
    await receiver.stop()  # releases the held requests
    assert await asyncio.gather(*held) == [503, 503]


async def test_accepts_a_request_signed_by_standardwebhooks(
    client: aiohttp.ClientSession,
) -> None:
    async with RecordingReceiver(secrets={"ep-1": [SECRET]}) as receiver:
        headers = signed_headers(SECRET, "evt_1", BODY)
        assert await post(client, receiver.hook_url("ep-1"), headers=headers) == 204
        assert receiver.records[0].signature_ok is True


async def test_accepts_a_request_signed_by_our_signer_while_rotating(
    client: aiohttp.ClientSession,
) -> None:
    # Our signer signs with both keys; the receiver knows only the new secret.
    signer = Signer((decode_secret(OTHER_SECRET), decode_secret(SECRET)))
    headers = signer.headers("evt_1", int(datetime.now(tz=UTC).timestamp()), BODY)
    async with RecordingReceiver(secrets={"ep-1": [SECRET]}) as receiver:
        assert await post(client, receiver.hook_url("ep-1"), headers=headers) == 204


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: (BODY.replace(b"order", b"refund"), h),
        lambda h: (BODY, h | {"webhook-id": "evt_2"}),
        lambda h: (BODY, h | {"webhook-signature": "v1,bm90IGl0"}),
        lambda h: (BODY, h | {"webhook-signature": "garbage"}),
        lambda h: (BODY, {k: v for k, v in h.items() if k != "webhook-signature"}),
        lambda h: (BODY, signed_headers(OTHER_SECRET, "evt_1", BODY)),
    ],
    ids=["body", "id", "wrong-signature", "malformed-signature", "unsigned", "other-secret"],
)
async def test_rejects_a_tampered_request(client: aiohttp.ClientSession, tamper: object) -> None:
    body, headers = tamper(signed_headers(SECRET, "evt_1", BODY))  # type: ignore[operator]
    async with RecordingReceiver(secrets={"ep-1": [SECRET]}) as receiver:
        assert await post(client, receiver.hook_url("ep-1"), body, headers) == 401
        assert await post(client, receiver.hook_url("ep-unsigned"), body, headers) == 204
        assert [r.signature_ok for r in receiver.records] == [False, None]
        assert receiver.stats()["endpoints"]["ep-1"]["bad_signatures"] == 1


async def test_wait_for_a_predicate(client: aiohttp.ClientSession) -> None:
    async with RecordingReceiver() as receiver:

        def two_for_ep_2(records: list[Received]) -> bool:
            return sum(r.endpoint_id == "ep-2" for r in records) >= 2

        waiter = asyncio.create_task(receiver.wait_for(two_for_ep_2, timeout_s=10))
        for endpoint_id in ["ep-1", "ep-2", "ep-1", "ep-2"]:
            await post(client, receiver.hook_url(endpoint_id))
        records = await waiter
        assert two_for_ep_2(records)


async def test_wait_for_times_out_with_a_useful_message() -> None:
    async with RecordingReceiver() as receiver:
        with pytest.raises(TimeoutError, match="0 records so far"):
            await receiver.wait_for(1, timeout_s=0.05)


async def test_stats_and_reset_over_http(client: aiohttp.ClientSession) -> None:
    behaviours = {"ep-2": Behaviour(status=500)}
    async with RecordingReceiver(behaviours=behaviours) as receiver:
        await post(client, receiver.hook_url("ep-1"))
        await post(client, receiver.hook_url("ep-2"))
        async with client.get(f"{receiver.url}/stats") as response:
            stats = await response.json()
        assert stats["total"] == 2
        assert stats["endpoints"]["ep-1"]["statuses"] == {"204": 1}
        assert stats["endpoints"]["ep-2"]["statuses"] == {"500": 1}
        assert stats["endpoints"]["ep-2"]["max_in_flight"] == 1
        assert await post(client, f"{receiver.url}/reset", b"") == 204
        assert receiver.stats() == {"total": 0, "endpoints": {}}


def test_receiver_thread_serves_sync_callers() -> None:
    with ReceiverThread(default=Behaviour(status=200)) as receiver:
        for _ in range(3):
            response = requests.post(receiver.hook_url("ep-1"), data=BODY, timeout=10)
            assert response.status_code == 200
        records = receiver.wait_for_count(3, timeout_s=10)
        assert receiver.max_in_flight("ep-1") == 1
        assert receiver.stats()["total"] == 3
    assert len(records) == 3


def test_receiver_thread_wait_for_count_times_out() -> None:
    with ReceiverThread() as receiver, pytest.raises(TimeoutError, match="0 of 1"):
        receiver.wait_for_count(1, timeout_s=0.05)


async def test_receiver_thread_wakes_a_waiter_in_another_thread(
    client: aiohttp.ClientSession,
) -> None:
    # The receiver runs outside this test's loop; the waiting happens in a worker thread.
    with ReceiverThread() as receiver:
        waiting = asyncio.create_task(asyncio.to_thread(receiver.wait_for_count, 2, 10.0))
        await post(client, receiver.hook_url("ep-1"))
        await post(client, receiver.hook_url("ep-2"))
        records = await waiting
    assert [r.endpoint_id for r in records] == ["ep-1", "ep-2"]


def test_receiver_thread_reports_a_port_in_use() -> None:
    with ReceiverThread() as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="address already in use"), ReceiverThread(port=port):
            pass


@pytest.mark.parametrize(
    "kwargs",
    [{"latency_s": -1}, {"status": 99}, {"fail_ratio": 1.5}, {"hang_ratio": -0.1}],
)
def test_behaviour_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Behaviour(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "argv",
    [
        ["--endpoint-behaviour", "ep-1"],
        ["--endpoint-behaviour", "ep-1=10"],
        ["--endpoint-behaviour", "ep-1=10:abc"],
        ["--endpoint-behaviour", "ep-1=10:204:2.0"],
        ["--secret", "ep-1=not-a-secret"],
        ["--fail-ratio", "3"],
        ["--secrets-from", "/nonexistent/dispatcher.toml"],
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


class CliReceiver:
    """`python -m dispatcher.receiver` as a child process; stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.url = ""

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        assert raw, "the receiver exited early"
        return raw.decode().rstrip("\n")

    async def ready(self) -> str:
        """Wait for the line that says it listens (an awaited event, not a sleep)."""
        first = await self.line()
        assert first.startswith("receiver listening on http://127.0.0.1:"), first
        self.url = first.rsplit(" ", 1)[1]
        return self.url

    async def terminate(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.process.communicate(), timeout=30)
        return await self.process.wait(), out.decode()


async def start_cli(*args: str) -> CliReceiver:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.receiver",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    return CliReceiver(process)


async def test_cli_serves_stats_and_exits_0_on_sigterm(
    client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    stats_file = tmp_path / "records.jsonl"
    cli = await start_cli("--endpoint-behaviour", "ep-2=0:202", "--stats-file", str(stats_file))
    try:
        url = await cli.ready()
        assert await post(client, f"{url}/hooks/ep-1", headers={"webhook-id": "evt_1"}) == 204
        assert await post(client, f"{url}/hooks/ep-2", headers={"webhook-id": "evt_2"}) == 202
        async with client.get(f"{url}/stats") as response:
            stats = await response.json()
        assert stats["total"] == 2
        assert stats["endpoints"]["ep-2"]["statuses"] == {"202": 1}
    finally:
        code, out = await cli.terminate()
    assert code == 0
    assert "receiver: 2 requests" in out
    rows = [orjson.loads(line) for line in stats_file.read_bytes().splitlines()]
    assert [(r["endpoint"], r["webhook_id"], r["status"]) for r in rows] == [
        ("ep-1", "evt_1", 204),
        ("ep-2", "evt_2", 202),
    ]
    assert all(isinstance(r["at"], float) for r in rows)


CONFIG = f"""
[kafka]
bootstrap_servers = "127.0.0.1:9092"
source_topics = ["orders.events"]

[[endpoints]]
id = "ep-1"
url = "http://127.0.0.1:8080/hooks/ep-1"
secret = "{SECRET}"
event_types = ["order.*"]
"""


@pytest.mark.parametrize("source", ["--secret", "--secrets-from"])
async def test_cli_prints_arrivals_and_checks_signatures(
    client: aiohttp.ClientSession, tmp_path: Path, source: str
) -> None:
    config = tmp_path / "dispatcher.toml"
    config.write_text(CONFIG)
    value = f"ep-1={SECRET}" if source == "--secret" else str(config)
    cli = await start_cli("--print", source, value)
    try:
        url = await cli.ready()
        headers = signed_headers(SECRET, "evt_1", BODY)
        assert await post(client, f"{url}/hooks/ep-1", BODY, headers) == 204
        assert await cli.line() == "ep-1  evt_1  order.created  signature ok  -> 204"
        assert await post(client, f"{url}/hooks/ep-1", BODY + b" ", headers) == 401
        assert await cli.line() == "ep-1  evt_1  order.created  signature BAD  -> 401"
    finally:
        code, _ = await cli.terminate()
    assert code == 0
