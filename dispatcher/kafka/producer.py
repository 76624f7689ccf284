"""The worker's one Producer, polled from the event loop so delivery callbacks run on it.

Delivery callbacks fire only inside `poll()`/`flush()`. Polling from the loop (never
blocking, every couple of milliseconds while anything is outstanding) needs no thread hop
per record and keeps working while the consumer's poll thread waits in a rebalance callback.

librdkafka retries a record within its own bounds (`message.timeout.ms`); a record that
still fails was not written, so the worker stops (`failed`) and a restart redoes it: never
an offset left unfinished that nobody will finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from dispatcher.errors import RecordRefused
from dispatcher.pipeline.ports import DeliveryCallback, Headers

log = logging.getLogger(__name__)

PUMP_INTERVAL_S = 0.002
DEFAULT_MAX_RECORD_BYTES = 1_000_000  # librdkafka's message.max.bytes
FailureReport = Callable[[str, BaseException | str], None]


class LoopProducer:
    """Produce from the loop; `run_pump()` is the task that serves delivery callbacks."""

    def __init__(self, config: dict[str, Any], on_failure: FailureReport) -> None:
        self._producer = Producer(config) if "logger" in config else Producer(config, logger=log)
        self._wake = asyncio.Event()
        self._on_failure = on_failure
        self.max_record_bytes = int(config.get("message.max.bytes", DEFAULT_MAX_RECORD_BYTES))

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None,
        on_delivery: DeliveryCallback,
    ) -> None:
        producer = self._producer
        try:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            except BufferError:
                # The local queue is full: serve what was acknowledged, then try once more.
                # Never a blocking poll here: this runs on the event loop.
                producer.poll(0)
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
        except BufferError:
            raise RecordRefused(f"the producer's local queue is full ({len(producer)})") from None
        except KafkaException as exc:
            raise RecordRefused(f"{topic}: {exc.args[0]}") from None
        if not self._wake.is_set():
            self._wake.set()

    def failed(self, error: Any, topic: str) -> None:
        """Called by delivery callbacks for a record the broker did not take."""
        self._on_failure(f"a record to {topic} was not acknowledged", str(error))

    def outstanding(self) -> int:
        return len(self._producer)

    async def run_pump(self) -> None:
        producer = self._producer
        while True:
            producer.poll(0)
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
