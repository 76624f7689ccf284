"""The pipeline's boundaries as Protocols: the real adapters and the tests' fakes fit both.

The HTTP sender and the Kafka producer are adapters (dispatcher.http, dispatcher.kafka);
the pipeline sees only these shapes, so its component tests run against small fakes for
the interleavings a real broker cannot be made to produce on demand.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from dispatcher.model import HttpResult

Headers = list[tuple[str, str | bytes | None]]
# Called once per record with (error or None, the record); the error is opaque here: the
# pipeline only tells success from failure and reports the failure's text.
DeliveryCallback = Callable[[Any, Any], None]


class Sender(Protocol):
    async def send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None = None,
    ) -> HttpResult:
        """POST `body`; never raises for anything the network or the receiver does."""
        ...


class RecordProducer(Protocol):
    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None,
        on_delivery: DeliveryCallback,
    ) -> None:
        """Queue a record; `on_delivery` runs on the loop once the broker answered.

        Raises `errors.RecordRefused` when the record cannot even be queued (too large,
        local queue full): nothing was sent and `on_delivery` will not run.
        """
        ...

    def failed(self, error: Any, topic: str) -> None:
        """A record was not acknowledged: the worker stops (a restart redelivers)."""
        ...
