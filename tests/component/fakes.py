"""Small fakes behind the pipeline's Protocols, for interleavings a broker cannot be made
to produce on demand. Each records what the pipeline asked of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dispatcher.errors import RecordRefused
from dispatcher.model import HttpResult
from dispatcher.pipeline.ports import DeliveryCallback, Headers


@dataclass
class Produced:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None
    on_delivery: DeliveryCallback


class FakeProducer:
    """Queues records; the test acknowledges or fails them (`ack_all`, `fail_all`).

    `refuse` decides per record whether `produce` raises RecordRefused (too large, full).
    """

    def __init__(self, refuse: Callable[[str, bytes], bool] = lambda _t, _v: False) -> None:
        self.pending: list[Produced] = []
        self.acked: list[Produced] = []
        self.failures: list[tuple[str, str]] = []
        self.refuse = refuse
        self.max_record_bytes = 1_000_000

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None,
        on_delivery: DeliveryCallback,
    ) -> None:
        if self.refuse(topic, value):
            raise RecordRefused(f"{topic}: refused by the test")
        self.pending.append(Produced(topic, key, value, headers, on_delivery))

    def failed(self, error: Any, topic: str) -> None:
        self.failures.append((topic, str(error)))

    def ack_all(self, topic: str | None = None) -> list[Produced]:
        done = [p for p in self.pending if topic is None or p.topic == topic]
        self.pending = [p for p in self.pending if p not in done]
        for record in done:
            record.on_delivery(None, record)
        self.acked += done
        return done

    def fail_all(self, topic: str, error: str = "Broker: Not enough in-sync replicas") -> None:
        done = [p for p in self.pending if p.topic == topic]
        self.pending = [p for p in self.pending if p not in done]
        for record in done:
            record.on_delivery(error, record)

    def topics(self) -> list[str]:
        return [p.topic for p in self.acked + self.pending]


@dataclass
class Request:
    url: str
    body: bytes
    headers: Mapping[str, str]
    answer: asyncio.Future[HttpResult] = field(repr=False)


class FakeSender:
    """Every request waits until the test answers it (or `auto` answers it at once)."""

    def __init__(self, auto: Callable[[str], HttpResult] | None = None) -> None:
        self.requests: list[Request] = []
        self.auto = auto
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], ssl_context: object = None
    ) -> HttpResult:
        answer: asyncio.Future[HttpResult] = asyncio.get_running_loop().create_future()
        self.requests.append(Request(url, body, headers, answer))
        self.arrived.set()
        if self.auto is not None:
            return self.auto(url)
        return await answer

    async def wait_for_requests(self, count: int) -> None:
        while len(self.requests) < count:
            self.arrived.clear()
            await self.arrived.wait()


def status(code: int) -> HttpResult:
    return HttpResult(code, None, None, 0.001)


class FakeMessage:
    """The few Message methods the worker reads."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._value, self._key, self._headers = value, key, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> None:
        return None
