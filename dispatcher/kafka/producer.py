"""The worker's one Producer, polled from the event loop so delivery callbacks run on it.

Delivery callbacks fire only inside `poll()`/`flush()`. Polling from the loop (non-blocking,
every couple of milliseconds while anything is outstanding) needs no thread hop per record
and keeps working while the consumer's poll thread waits in a rebalance callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from dispatcher.errors import KafkaUnavailableError

log = logging.getLogger(__name__)

PUMP_INTERVAL_S = 0.002
Headers = list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class LoopProducer:
    """Produce from the loop; `run_pump()` is the task that serves delivery callbacks."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config, logger=log)
        self._wake = asyncio.Event()
        self._fatal: KafkaError | None = None
        self.failures = 0

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        producer = self._producer
        try:
            producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
        except BufferError:
            # The local queue is full (1M records): serve callbacks until there is room.
            producer.poll(0.1)
            producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
        if not self._wake.is_set():
            self._wake.set()

    def on_error(self, error: KafkaError, message: Message) -> None:
        """Shared callback for records whose success needs no action (outcomes)."""
        self.failures += 1
        if error.fatal():
            self._fatal = error
        log.warning("produce to %s failed: %s", message.topic(), error)

    def outstanding(self) -> int:
        return len(self._producer)

    async def run_pump(self) -> None:
        producer = self._producer
        while True:
            producer.poll(0)
            if self._fatal is not None:
                raise KafkaUnavailableError(f"producer failed: {self._fatal}")
            if len(producer):
                await asyncio.sleep(PUMP_INTERVAL_S)
            else:
                self._wake.clear()
                await self._wake.wait()

    async def drain(self, timeout_s: float) -> bool:
        """Wait (bounded) until every produced record was acknowledged or failed."""
        deadline = time.monotonic() + timeout_s
        while len(self._producer) and time.monotonic() < deadline:
            self._producer.poll(0)
            await asyncio.sleep(PUMP_INTERVAL_S)
        return len(self._producer) == 0

    def flush(self, timeout_s: float) -> int:
        """Blocking final flush, for after the loop's work is done."""
        return int(self._producer.flush(timeout_s))
