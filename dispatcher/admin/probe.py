"""`POST /v1/endpoints/{id}/test`: a `webhook.test` event sent through the normal path.

`probe_delivery` builds the delivery record (pure): the deliveries topic's record for that
endpoint, with the dispatcher's delivery headers, so stage 2 signs, sends, retries and
records it like any other. `DeliveryProducer` writes it and waits for the acknowledgement.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dispatcher.dlq import DeliveryRecord
from dispatcher.endpoints.record import iso
from dispatcher.errors import KafkaUnavailableError
from dispatcher.kafka.clients import producer_config
from dispatcher.model import KafkaSettings
from dispatcher.records import delivery_headers

TEST_EVENT_TYPE = "webhook.test"
# The `source` header names where a delivery came from; a test event has no source record.
TEST_SOURCE = ("admin", -1, -1)
ACK_TIMEOUT_S = 15.0


def new_probe_event_id() -> str:
    return f"test_{uuid.uuid4().hex}"


def probe_delivery(endpoint_id: str, event_id: str, now_s: float) -> DeliveryRecord:
    """The delivery record of one `webhook.test` event for `endpoint_id`."""
    body = orjson.dumps(
        {
            "id": event_id,
            "type": TEST_EVENT_TYPE,
            "timestamp": iso(now_s),
            "data": {"endpoint_id": endpoint_id, "message": "a test event from the admin API"},
        }
    )
    headers = delivery_headers(event_id, TEST_EVENT_TYPE, int(now_s * 1000), None, TEST_SOURCE)
    return DeliveryRecord(endpoint_id.encode(), body, headers)


@dataclass(frozen=True, slots=True)
class Written:
    partition: int
    offset: int


class DeliveryProducer:
    """Writes one record at a time to `<prefix>.deliveries` (idempotent, acks=all) and
    returns once the broker acknowledged it. Blocking: call it from a thread."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._topic = kafka.deliveries_topic
        config = producer_config(kafka)
        config["linger.ms"] = 0
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot create a Kafka producer: {exc}") from None
        self._lock = threading.Lock()

    def send(self, record: DeliveryRecord) -> Written:
        acked: list[tuple[KafkaError | None, int, int]] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            acked.append((error, message.partition() or 0, message.offset() or 0))

        with self._lock:
            try:
                self._producer.produce(
                    self._topic,
                    record.value,
                    record.key,
                    headers=record.headers,
                    on_delivery=on_delivery,
                )
            except (KafkaException, BufferError) as exc:
                raise KafkaUnavailableError(f"writing to {self._topic}: {exc}") from None
            self._producer.flush(ACK_TIMEOUT_S)
        if not acked:
            raise KafkaUnavailableError(
                f"writing to {self._topic}: no acknowledgement within {ACK_TIMEOUT_S:g} s"
            )
        error, partition, offset = acked[0]
        if error is not None:
            raise KafkaUnavailableError(f"writing to {self._topic}: {error.str()}")
        return Written(partition, offset)

    def close(self) -> None:
        self._producer.flush(ACK_TIMEOUT_S)
