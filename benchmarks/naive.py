"""NAIVE BASELINE -- not the dispatcher. The one most teams write first, kept honest:

    loop: poll one message, route it by type, sign it, requests.post (plain, no Session:
    a new connection per request), commit synchronously, repeat.

Run in its own process by the runner (`python -m benchmarks.naive ...`); prints one JSON
object. Its rate is measured from the first message polled to the last commit, so the
consumer group join does not count against it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import asdict, dataclass

import requests
from confluent_kafka import Consumer, Message

from benchmarks.workloads import endpoint_id

LABEL = "naive: poll 1, requests.post without Session, commit sync"


@dataclass(frozen=True, slots=True)
class NaiveResult:
    label: str
    delivered: int
    failed: int
    seconds: float
    deliveries_per_s: float


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def deliver(base_url: str, secret: bytes, msg: Message) -> bool:
    body = msg.value()
    if body is None:
        return False
    event = json.loads(body)
    target = endpoint_id(int(event["type"].removeprefix("bench.t")))
    now = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": event["id"],
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, event["id"], now, body),
    }
    response = requests.post(f"{base_url}/hooks/{target}", data=body, headers=headers, timeout=10)
    return 200 <= response.status_code < 300


def run_naive(
    bootstrap: str, topic: str, base_url: str, max_messages: int, max_seconds: float
) -> NaiveResult:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"naive-{topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    secret = os.urandom(24)
    delivered = failed = 0
    first: float | None = None
    give_up = time.monotonic() + max_seconds + 30  # the join itself is bounded too
    try:
        while delivered + failed < max_messages and time.monotonic() < give_up:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            if first is None:
                first = time.monotonic()
                give_up = first + max_seconds
            if deliver(base_url, secret, msg):
                delivered += 1
            else:
                failed += 1
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
    seconds = time.monotonic() - first if first is not None else 0.0
    per_s = delivered / seconds if seconds > 0 else 0.0
    return NaiveResult(LABEL, delivered, failed, seconds, per_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--base-url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--max-messages", type=int, default=5_000)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    args = parser.parse_args()
    if not args.base_url.startswith("http://127.0.0.1:"):
        parser.error("the naive baseline only sends to 127.0.0.1")
    result = run_naive(
        args.bootstrap, args.topic, args.base_url, args.max_messages, args.max_seconds
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
