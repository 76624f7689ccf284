"""One record at a time, returned once the broker acknowledged it: for the management
writes (endpoint records, test deliveries), never the hot path. Blocking: call from a thread.
"""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dispatcher.errors import KafkaUnavailableError
from dispatcher.kafka.clients import producer_config
from dispatcher.model import KafkaSettings
from dispatcher.pipeline.ports import Headers

DEFAULT_TIMEOUT_S = 15.0


class AckedProducer:
    """An idempotent producer (acks=all) whose `write` waits for the acknowledgement."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._bootstrap = kafka.bootstrap_servers
        self._timeout_s = timeout_s
        config = producer_config(kafka)
        config["linger.ms"] = 0
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot create a Kafka producer: {exc}") from None
        self._lock = threading.Lock()  # one write at a time: flush waits for all

    def write(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: Headers | None = None,
        what: str = "",
    ) -> tuple[int, int]:
        """(partition, offset) of the record once acknowledged; KafkaUnavailableError
        naming `what` (default: the topic) otherwise."""
        what = what or topic
        acked: list[tuple[KafkaError | None, int, int]] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            acked.append((error, message.partition() or 0, message.offset() or 0))

        with self._lock:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            except (KafkaException, BufferError) as exc:
                raise KafkaUnavailableError(f"writing {what}: {exc}") from None
            self._producer.flush(self._timeout_s)
        if not acked:
            raise KafkaUnavailableError(
                f"writing {what}: no acknowledgement from {self._bootstrap}"
                f" within {self._timeout_s:g} s"
            )
        error, partition, offset = acked[0]
        if error is not None:
            raise KafkaUnavailableError(f"writing {what}: {error.str()}")
        return partition, offset

    def close(self) -> None:
        self._producer.flush(self._timeout_s)
