#!/usr/bin/env python3
"""Pass TCP connections from LISTEN_HOST:LISTEN_PORT to 127.0.0.1:TARGET_PORT, unchanged.

A stopgap for containers: `dispatcher/metrics.py` serves /metrics on 127.0.0.1 only, which
Prometheus in another container or pod cannot reach. This process runs in the worker's
network namespace (a compose service with `network_mode: service:<worker>`, or a second
container in the pod) and forwards bytes both ways. Delete it, and scrape the worker
directly, once the metrics server can listen on another address.

    metrics-bridge [--listen-host 0.0.0.0] [--listen-port 9109] [--target-port 9108]

Standard library only; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _forward(
    target_port: int, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
) -> None:
    try:
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()  # the worker is not serving (yet): the scrape fails, visibly
        return
    await asyncio.gather(_pipe(client_reader, target_writer), _pipe(target_reader, client_writer))


async def serve(listen_host: str, listen_port: int, target_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _forward(target_port, reader, writer)

    server = await asyncio.start_server(handle, listen_host, listen_port)
    async with server:
        print(f"metrics-bridge: {listen_host}:{listen_port} -> 127.0.0.1:{target_port}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="metrics-bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--listen-port", type=int, default=9109)
    parser.add_argument("--target-port", type=int, default=9108)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen_host, args.listen_port, args.target_port))


if __name__ == "__main__":
    main()
