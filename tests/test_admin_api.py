"""The management API over real HTTP on 127.0.0.1, against the real broker.

One API for the module: `start_admin` with its own catalog (a `CatalogFollower` of the
endpoints topic), as `dispatcher admin` runs it. Every test uses its own endpoint ids.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from confluent_kafka import Consumer, Producer, TopicPartition

from dispatcher.admin import start_admin
from dispatcher.admin.app import bound_url
from dispatcher.admin.routes import ROUTES
from dispatcher.codec import DeadLetterRecord, encode_dead_letter
from dispatcher.config import parse_settings
from dispatcher.endpoints.catalog import static_snapshot
from dispatcher.endpoints.follower import Catalog, CatalogFollower
from dispatcher.endpoints.record import EndpointState
from dispatcher.endpoints.store import read_all
from dispatcher.guard import egress_policy
from dispatcher.kafka.topics import create_topics, dispatcher_topics
from dispatcher.model import Settings
from dispatcher.records import read_delivery_headers
from dispatcher.signing import decode_secret
from tests.pipeline_harness import new_secret

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKENS = ("first-token-0123456789abcdef", "second-token-0123456789abcdef")
OTHER = f"Bearer {TOKENS[1]}"


@dataclass
class Api:
    url: str
    http: aiohttp.ClientSession
    settings: Settings
    catalog: Catalog
    app: web.Application

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        auth: str | None = f"Bearer {TOKENS[0]}",
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {} if auth is None else {"Authorization": auth}
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        async with self.http.request(method, self.url + path, data=data, headers=headers) as r:
            text = await r.read()
            return r.status, orjson.loads(text) if text else None, dict(r.headers)

    def end_offsets(self) -> dict[str, int]:
        """The end offset of the endpoints and deliveries topics: a write moves one."""
        kafka = self.settings.kafka
        consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "unused"})
        try:
            ends = {}
            for topic in (kafka.endpoints_topic, kafka.deliveries_topic):
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                ends[topic] = sum(
                    consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in partitions
                )
            return ends
        finally:
            consumer.close()


def api_settings(bootstrap: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    data = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"t-admin-group-{run}",
            "source_topics": [f"t-admin-events-{run}"],
            "topic_prefix": f"t-admin-wh-{run}",
            "deliveries_partitions": 2,
        },
        "delivery": {"retry_delays_s": [0.05], "max_attempts": 2},
        "security": {"allow_networks": ["127.0.0.0/8"]},
        "admin": {"listen": "127.0.0.1:0", "token_env": "TEST_ADMIN_TOKENS"},
    }
    return parse_settings(data, "test", environ={"TEST_ADMIN_TOKENS": ",".join(TOKENS)})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(kafka_bootstrap: str) -> AsyncIterator[Api]:
    settings = api_settings(kafka_bootstrap)
    await asyncio.to_thread(
        create_topics, settings.kafka.bootstrap_servers, dispatcher_topics(settings)
    )
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    egress = await egress_policy(settings)
    catalog = Catalog(static_snapshot(()))
    follower = CatalogFollower(
        settings.kafka, egress, (), catalog, loop, lambda part, e: failures.append(f"{part}: {e}")
    )
    follower.start()
    runner = await start_admin(settings, catalog, egress=egress)
    try:
        await asyncio.wait_for(catalog.ready.wait(), 60)
        async with aiohttp.ClientSession() as http:
            yield Api(bound_url(runner), http, settings, catalog, runner.app)
    finally:
        await runner.cleanup()
        await asyncio.to_thread(follower.stop)
    assert not failures


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def body_for(endpoint_id: str, **extra: object) -> dict[str, object]:
    return {
        "id": endpoint_id,
        "url": f"http://127.0.0.1:9/hooks/{endpoint_id}",
        "event_types": ["order.*"],
        **extra,
    }


async def created(api: Api, label: str, **extra: object) -> str:
    endpoint_id = new_id(label)
    status, data, headers = await api.call("POST", "/v1/endpoints", body_for(endpoint_id, **extra))
    assert status == 201, data
    await read_by_catalog(api, int(headers["X-Record-Offset"]))
    return endpoint_id


async def read_by_catalog(api: Api, offset: int) -> None:
    """Wait (bounded) until the API's catalog has read everything written so far, the
    record at `offset` included."""
    await asyncio.wait_for(api.catalog.wait_caught_up(time.time()), 30)
    assert api.catalog.snapshot.positions[0] > offset


async def read_back(api: Api, endpoint_id: str) -> tuple[Any, bool]:
    """The endpoint as a second reader of the topic sees it: (record or None, deleted)."""
    read = await asyncio.to_thread(read_all, api.settings.kafka, None)
    assert read is not None
    return read.snapshot.get(endpoint_id), endpoint_id in read.snapshot.deleted


# --- tokens --------------------------------------------------------------------------------


def concrete(path: str, endpoint_id: str) -> str:
    return path.replace("{id}", endpoint_id)


async def test_refuses_without_a_token_and_with_a_wrong_one_and_nothing_changes(
    api: Api,
) -> None:
    endpoint_id = await created(api, "guarded")
    _, before, _ = await api.call("GET", f"/v1/endpoints/{endpoint_id}")
    ends = await asyncio.to_thread(api.end_offsets)
    wrong = (
        None,
        f"Bearer {TOKENS[0]}x",
        f"Bearer {TOKENS[0][:-1]}",
        "Bearer ",
        f"Basic {TOKENS[0]}",
        TOKENS[0],
    )
    guarded = [r for r in ROUTES if not r.public]
    for route in guarded:
        for auth in wrong:
            status, data, headers = await api.call(
                route.method, concrete(route.path, endpoint_id), body_for(endpoint_id), auth=auth
            )
            assert status == 401, (route.method, route.path, auth, data)
            assert data == {
                "error": {"field": "authorization", "problem": "a valid bearer token is required"}
            }
            assert headers["WWW-Authenticate"] == "Bearer"
    assert await asyncio.to_thread(api.end_offsets) == ends
    _, after, _ = await api.call("GET", f"/v1/endpoints/{endpoint_id}")
    assert after == before
    status, _, _ = await api.call("GET", "/v1/endpoints", auth=f"Bearer {TOKENS[1].upper()}")
    assert status == 401  # the token itself is compared exactly; only "Bearer" is not
    status, _, _ = await api.call("GET", "/v1/endpoints", auth=f"bearer {TOKENS[1]}")
    assert status == 200


# --- validation ----------------------------------------------------------------------------

_DROP = object()


def new(**changes: object) -> dict[str, object]:
    """A valid create body for a fresh id ("{new}"), with `changes` (_DROP leaves a key out)."""
    body: dict[str, object] = {"id": "{new}", "url": "http://127.0.0.1:9/", "event_types": ["a"]}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


C, ONE = "/v1/endpoints", "/v1/endpoints/{id}"  # {id}: an existing endpoint
BAD_BODIES: list[tuple[str, str, object, str]] = [  # method, path, body, the field named
    ("POST", C, new(id=_DROP), "id"),
    ("POST", C, new(id=7), "id"),
    ("POST", C, new(id="bad id!"), "id"),
    ("POST", C, new(url=_DROP), "url"),
    ("POST", C, new(url="ftp://x"), "url"),
    ("POST", C, new(url="http://u:p@127.0.0.1/"), "url"),
    ("POST", C, new(url="http://10.1.2.3/h"), "url"),
    ("POST", C, new(event_types=_DROP), "event_types"),
    ("POST", C, new(event_types=[]), "event_types"),
    ("POST", C, new(event_types=["a*b"]), "event_types[0]"),
    ("POST", C, new(secret="nope"), "secret"),
    ("POST", C, new(secret=5), "secret"),
    ("POST", C, new(secrets=[]), "secrets"),
    ("POST", C, new(secret="{secret}", secrets=["{secret}"]), "secrets"),
    (
        "POST",
        C,
        new(secrets=[{"secret": "{secret}", "expires_at": "soon"}]),
        "secrets[0].expires_at",
    ),
    ("POST", C, new(max_in_flight=0), "max_in_flight"),
    ("POST", C, new(max_in_flight="8"), "max_in_flight"),
    ("POST", C, new(rate_limit_per_s=-1), "rate_limit_per_s"),
    ("POST", C, new(ordering="fifo"), "ordering"),
    ("POST", C, new(state="asleep"), "state"),
    ("POST", C, new(description="x" * 1025), "description"),
    ("POST", C, new(metadata={"k": 1}), "metadata.k"),
    ("POST", C, new(permanent_statuses=[200]), "permanent_statuses[0]"),
    ("POST", C, new(ca_file="/x.pem"), "ca_file"),
    ("POST", C, new(colour="red"), "colour"),
    ("POST", C, new(version=3), "version"),
    ("POST", C, [1, 2], ""),
    ("PUT", ONE, new(id="other"), "id"),
    ("PUT", ONE, {"url": "http://127.0.0.1:9/"}, "event_types"),
    ("PATCH", ONE, {"url": "not a url"}, "url"),
    ("PATCH", ONE, {"created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ("PATCH", ONE, {"state": "gone"}, "state"),
    ("POST", f"{ONE}/pause", {"reason": 5}, "reason"),
    ("POST", f"{ONE}/pause", {"why": "x"}, "why"),
    ("POST", f"{ONE}/disable", {"reason": "x" * 1025}, "reason"),
    ("POST", f"{ONE}/rotate-secret", {"secret": "whsec_!!"}, "secret"),
    ("POST", f"{ONE}/rotate-secret", {"secret": 1}, "secret"),
    ("POST", f"{ONE}/rotate-secret", {"overlap_s": -1}, "overlap_s"),
    ("POST", f"{ONE}/rotate-secret", {"overlap_s": "1h"}, "overlap_s"),
    ("POST", f"{ONE}/test", {"data": {}}, "data"),
    ("POST", f"{ONE}/replay", {"since": "yesterday"}, "since"),
    ("POST", f"{ONE}/replay", {"until": 5}, "until"),
    ("POST", f"{ONE}/replay", {"limit": 0}, "limit"),
    ("POST", f"{ONE}/replay", {"dry_run": "yes"}, "dry_run"),
    ("POST", f"{ONE}/replay", {"endpoint": "x"}, "endpoint"),
    ("GET", f"{C}?state=asleep", None, "state"),
    ("GET", f"{C}?limit=0", None, "limit"),
    ("GET", f"{C}?colour=red", None, "colour"),
]


def _filled(value: object, endpoint_id: str, fresh: str, secret: str) -> object:
    if isinstance(value, str):
        filled = value.replace("{id}", endpoint_id).replace("{new}", fresh)
        return filled.replace("{secret}", secret)
    if isinstance(value, list):
        return [_filled(v, endpoint_id, fresh, secret) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v, endpoint_id, fresh, secret) for k, v in value.items()}
    return value


async def test_validates_every_field_with_400_naming_it_and_writes_nothing(api: Api) -> None:
    endpoint_id = await created(api, "valid")
    ends = await asyncio.to_thread(api.end_offsets)
    for method, path, body, field in BAD_BODIES:
        fresh = new_id("fresh")
        filled = _filled(body, endpoint_id, fresh, new_secret())
        status, data, _ = await api.call(method, concrete(path, endpoint_id), filled)
        assert status == 400, (method, path, body, data)
        assert data["error"]["field"] == field, (method, path, body, data)
        assert data["error"]["problem"], data
    for raw, problem in ((b"{not json", "the body is not JSON"), (b"[]", "must be a JSON object")):
        status, data, _ = await api.call("POST", "/v1/endpoints", raw=raw)
        assert status == 400
        assert data["error"]["field"] == ""
        assert problem in data["error"]["problem"]
    status, data, _ = await api.call("POST", "/v1/endpoints", raw=b" " * (300 * 1024))
    assert status == 413, data
    assert await asyncio.to_thread(api.end_offsets) == ends


async def test_a_secret_never_shows_in_an_error(api: Api) -> None:
    secret = new_secret()
    status, data, _ = await api.call(
        "POST",
        "/v1/endpoints",
        body_for(new_id("leak"), secret=secret[:-2] + "!!"),
    )
    assert status == 400
    assert secret[6:20] not in orjson.dumps(data).decode()


# --- conflicts and unknown ids -------------------------------------------------------------


async def test_duplicate_create_is_409_and_an_unknown_id_is_404(api: Api) -> None:
    endpoint_id = await created(api, "dup")
    status, data, _ = await api.call("POST", "/v1/endpoints", body_for(endpoint_id))
    assert status == 409
    assert data["error"]["field"] == "id"
    missing = new_id("missing")
    ends = await asyncio.to_thread(api.end_offsets)
    for route in ROUTES:
        if "{id}" not in route.path or route.method == "PUT":
            continue  # PUT of an unknown id creates it
        body = {"url": "http://127.0.0.1:9/"} if route.method == "PATCH" else {}
        status, data, _ = await api.call(route.method, concrete(route.path, missing), body)
        assert status == 404, (route.method, route.path, data)
        assert data["error"] == {"field": "id", "problem": f"no endpoint {missing!r}"}
    assert await asyncio.to_thread(api.end_offsets) == ends


# --- the OpenAPI document ------------------------------------------------------------------


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_the_openapi_document_matches_the_routes_both_ways(api: Api) -> None:
    status, document, _ = await api.call("GET", "/v1/openapi.json", auth=None)
    assert status == 200
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (route.method, route.resource.canonical)
        for route in api.app.router.routes()
        if route.resource is not None
    }
    assert documented == served
    assert len(served) == 14
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)
            named = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert named == ({"id"} if "{id}" in path else set()), (method, path)


# --- writes: acknowledged, visible to a second reader --------------------------------------


async def test_a_write_is_in_the_topic_for_a_second_reader_when_its_answer_comes(
    api: Api,
) -> None:
    endpoint_id = new_id("visible")
    status, data, headers = await api.call("POST", "/v1/endpoints", body_for(endpoint_id))
    assert status == 201
    assert data["version"] == 1
    assert data["secret"].startswith("whsec_")  # generated, shown this once
    assert data["secrets"] == [{"secret": "whsec_..." + data["secret"][-4:], "expires_at": None}]
    assert headers["Location"] == f"/v1/endpoints/{endpoint_id}"
    record, _ = await read_back(api, endpoint_id)
    assert record is not None
    assert record.version == 1
    assert bytes(record.endpoint.secrets[0]) == decode_secret(data["secret"])

    # Straight after the create, without waiting for the catalog: the write starts from it.
    status, data, headers = await api.call(
        "PATCH", f"/v1/endpoints/{endpoint_id}", {"max_in_flight": 3, "description": "d"}
    )
    assert status == 200, data
    assert (data["version"], data["max_in_flight"], data["description"]) == (2, 3, "d")
    assert "secret" not in data
    assert int(headers["X-Record-Offset"]) >= 0
    record, _ = await read_back(api, endpoint_id)
    assert (record.version, record.endpoint.max_in_flight) == (2, 3)

    status, _, _ = await api.call("DELETE", f"/v1/endpoints/{endpoint_id}")
    assert status == 204
    record, deleted = await read_back(api, endpoint_id)
    assert record is None
    assert deleted


async def test_reads_come_from_the_catalog_with_its_offset(api: Api) -> None:
    endpoint_id = await created(api, "listed", event_types=["invoice.paid"])
    paused = await created(api, "listed-paused", event_types=["invoice.*"])
    _, data, headers = await api.call("POST", f"/v1/endpoints/{paused}/pause", {})
    written = int(headers["X-Record-Offset"])
    await read_by_catalog(api, written)
    status, data, headers = await api.call("GET", "/v1/endpoints?event_type=invoice.paid")
    assert status == 200
    assert int(headers["X-Catalog-Offset"]) > written
    ids = [e["id"] for e in data["endpoints"]]
    assert endpoint_id in ids
    assert paused in ids
    assert ids == sorted(ids)
    _, data, _ = await api.call("GET", "/v1/endpoints?event_type=invoice.paid&state=paused")
    assert [e["id"] for e in data["endpoints"]] == [paused]
    _, data, _ = await api.call("GET", "/v1/endpoints?event_type=order.created&state=paused")
    assert paused not in [e["id"] for e in data["endpoints"]]
    _, first, _ = await api.call("GET", "/v1/endpoints?limit=1")
    assert len(first["endpoints"]) == 1
    _, second, _ = await api.call("GET", f"/v1/endpoints?limit=1&after={first['next_after']}")
    assert second["endpoints"][0]["id"] > first["endpoints"][0]["id"]
    status, data, _ = await api.call("GET", f"/v1/endpoints/{endpoint_id}")
    assert status == 200
    assert data["event_types"] == ["invoice.paid"]


async def test_state_actions_record_who_and_why(api: Api) -> None:
    endpoint_id = await created(api, "states")
    path = f"/v1/endpoints/{endpoint_id}"
    status, data, _ = await api.call("POST", f"{path}/pause", {"reason": "deploy"}, auth=OTHER)
    assert status == 200
    assert (data["state"], data["state_reason"]) == ("paused", "deploy")
    assert data["state_changed_by"] == "api:token-2"
    status, data, _ = await api.call("POST", f"{path}/resume")
    assert (status, data["state"], data["state_changed_by"]) == (200, "enabled", "api:token-1")
    status, data, _ = await api.call("POST", f"{path}/disable", {"reason": "410 Gone"})
    assert (status, data["state"]) == (200, "disabled")
    for action in ("pause", "resume"):
        status, data, _ = await api.call("POST", f"{path}/{action}")
        assert status == 409
        assert data["error"]["field"] == "state"
    status, data, _ = await api.call("POST", f"{path}/test")
    assert status == 409
    status, data, _ = await api.call("POST", f"{path}/enable")
    assert (status, data["state"], data["version"]) == (200, "enabled", 5)
    record, _ = await read_back(api, endpoint_id)
    assert record.state is EndpointState.ENABLED
    assert record.state_changed_by == "api:token-1"


async def test_rotate_secret_shows_the_new_one_once_and_keeps_the_old_one_signing(
    api: Api,
) -> None:
    old = new_secret()
    endpoint_id = await created(api, "rotate", secret=old)
    before = time.time()
    status, data, _ = await api.call(
        "POST", f"/v1/endpoints/{endpoint_id}/rotate-secret", {"overlap_s": 3600}
    )
    assert status == 200
    new = data["secret"]
    assert new != old
    assert [s["secret"] for s in data["secrets"]] == [
        f"whsec_...{new[-4:]}",
        f"whsec_...{old[-4:]}",
    ]
    assert data["secrets"][0]["expires_at"] is None
    record, _ = await read_back(api, endpoint_id)
    keys = [bytes(k) for k in record.endpoint.secrets]
    assert keys == [decode_secret(new), decode_secret(old)]
    expiry = record.endpoint.secret_expiries[1]
    assert before + 3600 - 0.001 <= expiry <= time.time() + 3600  # ms in the record


# --- test event and replay -----------------------------------------------------------------


def read_one(bootstrap: str, topic: str, partition: int, offset: int) -> Any:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        for _ in range(100):  # bounded: 100 polls of at most 0.2 s
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return message
        raise AssertionError(f"no record at {topic}/{partition}/{offset}")
    finally:
        consumer.close()


async def test_a_test_event_is_a_delivery_record_for_the_endpoint(api: Api) -> None:
    endpoint_id = await created(api, "probe")
    status, data, _ = await api.call("POST", f"/v1/endpoints/{endpoint_id}/test")
    assert status == 202
    kafka = api.settings.kafka
    message = await asyncio.to_thread(
        read_one, kafka.bootstrap_servers, data["topic"], data["partition"], data["offset"]
    )
    assert data["topic"] == kafka.deliveries_topic
    assert message.key() == endpoint_id.encode()
    meta = read_delivery_headers(message.headers())
    assert (meta.event_id, meta.event_type, meta.attempts_made) == (
        data["event_id"],
        "webhook.test",
        0,
    )
    body = orjson.loads(message.value())
    assert (body["id"], body["type"]) == (data["event_id"], "webhook.test")
    assert body["data"]["endpoint_id"] == endpoint_id


def dead_letter(endpoint_id: str, event_id: str, dead_ms: int) -> bytes:
    body = orjson.dumps({"id": event_id, "type": "order.created", "timestamp": "x", "data": {}})
    return encode_dead_letter(
        DeadLetterRecord(
            reason="HTTP 400",
            body=body,
            source_topic="orders.events",
            source_partition=0,
            source_offset=1,
            dead_time_ms=dead_ms,
            event_id=event_id,
            event_type="order.created",
            endpoint_id=endpoint_id,
            attempts=1,
            status=400,
            event_time_ms=dead_ms - 1000,
        )
    )


async def test_replay_moves_the_endpoints_dead_letters_back(api: Api) -> None:
    endpoint_id = await created(api, "replayed")
    kafka = api.settings.kafka
    now_ms = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for event_id, endpoint, age_ms in (
        ("evt-old", endpoint_id, 3 * 3600_000),
        ("evt-new", endpoint_id, 1000),
        ("evt-other", "someone-else", 1000),
    ):
        producer.produce(kafka.dlq_topic, dead_letter(endpoint, event_id, now_ms - age_ms))
    assert producer.flush(10) == 0
    path = f"/v1/endpoints/{endpoint_id}/replay"
    ends = await asyncio.to_thread(api.end_offsets)
    status, data, _ = await api.call("POST", path, {"since": "1h", "dry_run": True})
    assert status == 200, data
    assert (data["matched"], data["moved"], data["dry_run"]) == (1, 1, True)
    assert await asyncio.to_thread(api.end_offsets) == ends
    status, data, _ = await api.call("POST", path, {"since": "1h"})
    assert (status, data["matched"], data["moved"], data["failed"]) == (200, 1, 1, [])
    after = await asyncio.to_thread(api.end_offsets)
    assert after[kafka.deliveries_topic] == ends[kafka.deliveries_topic] + 1


# --- before the catalog is there -----------------------------------------------------------


async def serve_briefly(api: Api, catalog: Catalog) -> tuple[web.AppRunner, str]:
    """A second app over `catalog` (no Kafka is reached: nothing gets that far)."""
    from dispatcher.admin import build_app
    from dispatcher.admin.service import EndpointService

    egress = await egress_policy(api.settings)
    app = build_app(EndpointService(api.settings, catalog, egress), TOKENS)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, bound_url(runner)


async def test_before_the_catalog_caught_up_the_api_answers_503(api: Api) -> None:
    reading = Catalog(static_snapshot(()))
    reading.live = True  # a follower keeps it, and has not caught up yet
    runner, url = await serve_briefly(api, reading)
    other = Api(url, api.http, api.settings, api.catalog, runner.app)
    try:
        for method, path, body in (
            ("GET", "/v1/endpoints", None),
            ("GET", "/v1/endpoints/x", None),
            ("POST", "/v1/endpoints", body_for("x")),
            ("POST", "/v1/endpoints/x/pause", {}),
        ):
            status, data, headers = await other.call(method, path, body)
            assert status == 503, (method, path, data)
            assert "catalog is still reading" in data["error"]["problem"]
            assert headers["Retry-After"] == "1"
    finally:
        await runner.cleanup()


async def test_without_an_endpoints_topic_reads_work_and_writes_say_to_create_it(
    api: Api,
) -> None:
    from dispatcher.endpoints.follower import static_catalog

    endpoint = parse_settings(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "source_topics": ["s"]},
            "security": {"allow_networks": ["127.0.0.0/8"]},
            "endpoints": [body_for("from-file") | {"secret": new_secret()}],
        }
    ).endpoints
    runner, url = await serve_briefly(api, static_catalog(endpoint))
    other = Api(url, api.http, api.settings, api.catalog, runner.app)
    try:
        status, data, _ = await other.call("GET", "/v1/endpoints")
        assert status == 200
        assert [e["id"] for e in data["endpoints"]] == ["from-file"]
        status, data, _ = await other.call("POST", "/v1/endpoints/from-file/pause", {})
        assert status == 503
        assert "create it with `dispatcher topics`" in data["error"]["problem"]
    finally:
        await runner.cleanup()
