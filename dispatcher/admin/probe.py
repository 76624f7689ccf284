"""`POST /v1/endpoints/{id}/test`: a `webhook.test` event sent through the normal path.

`probe_delivery` builds the delivery record (pure): the deliveries topic's record for that
endpoint, with the dispatcher's delivery headers, so stage 2 signs, sends, retries and
records it like any other. `DeliveryProducer` writes it and waits for the acknowledgement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson

from dispatcher.dlq import DeliveryRecord
from dispatcher.endpoints.record import iso
from dispatcher.kafka.acked import AckedProducer
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
        self._producer = AckedProducer(kafka, ACK_TIMEOUT_S)

    def send(self, record: DeliveryRecord) -> Written:
        partition, offset = self._producer.write(
            self._topic, record.key, record.value, record.headers
        )
        return Written(partition, offset)

    def close(self) -> None:
        self._producer.close()
