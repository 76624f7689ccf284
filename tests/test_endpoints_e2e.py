"""A `dispatcher run` process with `[admin] listen`: endpoints added through its API and
through `dispatcher endpoints put` receive their events without a restart (real broker,
real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from dispatcher.local_kafka import free_port
from tests.pipeline_harness import build_settings, create_all_topics, produce_events, run_command
from tests.scripted_receiver import ScriptedReceiver
from tests.test_handover import write_config

pytestmark = pytest.mark.kafka

TOKEN = "e2e-token-0123456789abcdef"
WAIT_S = 60


def start_worker(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        run_command(config),
        env=env,
        stderr=subprocess.PIPE,
    )


async def visible(http: aiohttp.ClientSession, api: str, endpoint_id: str) -> float:
    """Poll the worker's own API (it reads the worker's catalog) until it shows the endpoint;
    the time it took. Bounded."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                async with http.get(f"{api}/v1/endpoints/{endpoint_id}", headers=headers) as got:
                    if got.status == 200:
                        return time.monotonic() - started
            except aiohttp.ClientConnectionError:
                pass  # the worker is still starting
            await asyncio.sleep(0.02)


async def test_endpoints_added_by_api_and_cli_get_their_events_without_a_restart(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    settings = build_settings(kafka_bootstrap, unique_name, [])
    create_all_topics(settings)
    port = free_port()
    config = tmp_path / "dispatcher.toml"
    write_config(config, settings, [])
    with config.open("a") as text:
        text.write(f'\n[admin]\nlisten = "127.0.0.1:{port}"\ntoken_env = "E2E_TOKENS"\n')
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["E2E_TOKENS"] = TOKEN
    worker = start_worker(config, env)
    api = f"http://127.0.0.1:{port}"
    figures: dict[str, float] = {}
    try:
        async with ScriptedReceiver() as receiver, aiohttp.ClientSession() as http:
            body = {"url": f"{receiver.url}/hooks/via-api", "event_types": ["order.*"]}
            started = time.monotonic()
            async with asyncio.timeout(WAIT_S):
                while True:  # the API answers once the worker has started
                    try:
                        async with http.put(
                            f"{api}/v1/endpoints/via-api",
                            json=body,
                            headers={"Authorization": f"Bearer {TOKEN}"},
                        ) as put:
                            if put.status != 503:  # 503: its catalog is still reading
                                assert put.status in (200, 201), await put.text()
                                break
                    except aiohttp.ClientConnectionError:
                        pass  # the worker is still starting
                    await asyncio.sleep(0.05)
            written = time.time()
            figures["api write (incl. worker start)"] = time.monotonic() - started
            figures["api to catalog"] = await visible(http, api, "via-api")
            produce_events(settings, 3, ["order.created"])
            await receiver.wait_until(lambda got: len(got) >= 3, WAIT_S)
            # Events are produced once the worker's catalog shows the endpoint.
            figures["api write to first delivery"] = min(a.at for a in receiver.attempts) - written

            cli_started = time.monotonic()
            put_by_cli = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "dispatcher",
                    "endpoints",
                    "put",
                    "via-cli",
                    "--url",
                    f"{receiver.url}/hooks/via-cli",
                    "--event-type",
                    "order.*",
                    "--config",
                    str(config),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert put_by_cli.returncode == 0, put_by_cli.stderr
            figures["cli command"] = time.monotonic() - cli_started
            figures["cli to catalog"] = await visible(http, api, "via-cli")
            sent = produce_events(settings, 3, ["order.created"])
            await receiver.wait_until(
                lambda got: sum(a.endpoint_id == "via-cli" for a in got) >= 3, WAIT_S
            )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)

    assert worker.returncode == 0, stderr.decode(errors="replace")[-2000:]
    by_cli = sorted(a.event_id for a in receiver.attempts if a.endpoint_id == "via-cli")
    assert by_cli == sorted(e.id for e in sent)
    print("figures (s):", {k: round(v, 3) for k, v in figures.items()})
