"""`dispatcher endpoints ...`, `dispatcher topics` (its import) and `dispatcher admin` against
the real broker. The endpoints commands run in this process (`cli.main`, the same code the
entry point runs); `dispatcher admin` runs as a process and is stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from dispatcher import cli
from dispatcher.config import load_settings
from dispatcher.endpoints.store import CatalogRead, read_all
from dispatcher.kafka.topics import create_topics, dispatcher_topics
from dispatcher.model import Settings
from dispatcher.signing import decode_secret
from tests.pipeline_harness import new_secret

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """`dispatcher ARGS...` in this process: (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


def write_config(
    path: Path,
    bootstrap: str,
    name: Callable[[str], str],
    endpoints: dict[str, str],
    admin: bool = False,
) -> Path:
    """A config with one [[endpoints]] table per id -> URL."""
    lines = [
        "[kafka]",
        f'bootstrap_servers = "{bootstrap}"',
        f'group_id = "{name("group")}"',
        f'source_topics = ["{name("events")}"]',
        f'topic_prefix = "{name("wh")}"',
        "deliveries_partitions = 2",
        "",
        "[delivery]",
        "retry_delays_s = [1]",
        "max_attempts = 2",
        "",
        "[security]",
        'allow_networks = ["127.0.0.0/8"]',
    ]
    if admin:
        lines += ["", "[admin]", 'listen = "127.0.0.1:0"', 'token_env = "TEST_ADMIN_TOKENS"']
    for endpoint_id, url in endpoints.items():
        lines += [
            "",
            "[[endpoints]]",
            f'id = "{endpoint_id}"',
            f'url = "{url}"',
            f'secret = "{new_secret()}"',
            'event_types = ["order.*"]',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def topic_read(settings: Settings) -> CatalogRead:
    read = read_all(settings.kafka, None)
    assert read is not None
    return read


def endpoints_end(settings: Settings) -> int:
    from confluent_kafka import Consumer, TopicPartition

    kafka = settings.kafka
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "unused"})
    try:
        tp = TopicPartition(kafka.endpoints_topic, 0)
        return int(consumer.get_watermark_offsets(tp, timeout=10)[1])
    finally:
        consumer.close()


def test_round_trip_put_get_list_pause_rotate_delete(
    run: Run, kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml", kafka_bootstrap, unique_name, {"from-file": "http://127.0.0.1:9/f"}
    )
    settings = load_settings(config)
    code, out, _ = run("topics", "--config", str(config), "--source-partitions", "1")
    assert code == 0
    assert "endpoint created   from-file" in out.splitlines()
    assert f"imported 1 of 1 [[endpoints]] into {settings.kafka.endpoints_topic}" in out

    code, out, _ = run(
        *("endpoints", "put", "shop", "--config", str(config)),
        *("--url", "http://127.0.0.1:9/shop", "--event-type", "order.*"),
        *("--event-type", "invoice.paid", "--max-in-flight", "4", "--ordering", "key"),
        *("--description", "the shop"),
    )
    assert code == 0
    created, secret_line = out.splitlines()
    assert created == "created shop (version 1)"
    secret = secret_line.split()[1]
    assert decode_secret(secret)

    code, out, _ = run("endpoints", "get", "shop", "--config", str(config), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["url"] == "http://127.0.0.1:9/shop"
    assert shown["event_types"] == ["order.*", "invoice.paid"]
    assert (shown["max_in_flight"], shown["ordering"], shown["version"]) == (4, "key", 1)
    assert shown["description"] == "the shop"
    assert shown["secrets"] == [{"secret": f"whsec_...{secret[-4:]}", "expires_at": None}]
    assert secret not in out

    code, out, _ = run("endpoints", "list", "--config", str(config), "--json")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["from-file", "shop"]
    code, out, _ = run("endpoints", "list", "--config", str(config), "--state", "enabled")
    rows = out.splitlines()
    assert rows[0].split()[:2] == ["ID", "STATE"]
    assert [row.split()[0] for row in rows[1:]] == ["from-file", "shop"]

    code, out, _ = run("endpoints", "pause", "shop", "--config", str(config), "--reason", "deploy")
    assert (code, out.strip()) == (0, "shop: paused (version 2)")
    record = topic_read(settings).snapshot.get("shop")
    assert record is not None
    assert (record.state.value, record.state_reason) == ("paused", "deploy")
    assert (record.state_changed_by or "").startswith("cli:")

    before = time.time()
    code, out, _ = run(
        "endpoints", "rotate-secret", "shop", "--config", str(config), "--overlap", "2h"
    )
    assert code == 0
    new = out.splitlines()[0].rsplit(" ", 1)[1]
    record = topic_read(settings).snapshot.get("shop")
    assert record is not None
    assert [bytes(k) for k in record.endpoint.secrets] == [
        decode_secret(new),
        decode_secret(secret),
    ]
    expiry = record.endpoint.secret_expiries[1]
    assert expiry is not None
    assert before + 7200 - 0.001 <= expiry <= time.time() + 7200

    code, out, _ = run("endpoints", "delete", "shop", "--config", str(config))
    assert (code, out.strip()) == (0, "deleted shop")
    read = topic_read(settings)
    assert read.snapshot.get("shop") is None
    assert "shop" in read.snapshot.deleted
    code, out, err = run("endpoints", "get", "shop", "--config", str(config))
    assert code == 2
    assert err.strip() == "dispatcher endpoints get: no endpoint 'shop'"


def test_bad_input_exits_2_with_one_line_naming_the_field_and_writes_nothing(
    run: Run, kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml", kafka_bootstrap, unique_name, {"known": "http://127.0.0.1:9/k"}
    )
    settings = load_settings(config)
    assert run("topics", "--config", str(config))[0] == 0
    not_json = tmp_path / "not.json"
    not_json.write_text("{url:")
    unknown_key = tmp_path / "unknown.json"
    unknown_key.write_text('{"colour": "red"}')
    ends = endpoints_end(settings)
    good = ("--url", "http://127.0.0.1:9/x", "--event-type", "a")
    cases: list[tuple[tuple[str, ...], str]] = [
        (("put", "x", "--url", "ftp://x", "--event-type", "a"), "put: url: "),
        (("put", "x", "--url", "http://10.0.0.1/", "--event-type", "a"), "put: url: "),
        (("put", "x", "--event-type", "a"), "put: url: missing"),
        (("put", "x", "--url", "http://127.0.0.1:9/", "--event-type", "a*b"), "event_types[0]: "),
        (("put", "x", *good, "--max-in-flight", "0"), "put: max_in_flight: "),
        (("put", "x", *good, "--ordering", "fifo"), "put: ordering: "),
        (("put", "x", *good, "--max-in-flight", "many"), "put: max_in_flight: "),
        (("put", "x", *good, "--rate-limit", "fast"), "put: rate_limit_per_s: "),
        (("put", "x", *good, "--secret", "nope"), "put: secrets[0]: "),
        (("put", "x", *good, "--rate-limit", "-1"), "put: rate_limit_per_s: "),
        (("put", "bad id", *good), "put: id: "),
        (("put", "x", *good, "--file", str(not_json)), "put: --file "),
        (("put", "x", *good, "--file", str(unknown_key)), "put: colour: unknown field"),
        (("list", "--state", "asleep"), "list: state: "),
        (("pause", "nope"), "pause: no endpoint 'nope'"),
        (("pause", "known", "--reason", "x" * 1025), "pause: reason: "),
        (("rotate-secret", "known", "--overlap", "soon"), "rotate-secret: --overlap "),
        (("rotate-secret", "known", "--secret", "whsec_!!"), "rotate-secret: secret: "),
        (("delete", "nope"), "delete: no endpoint 'nope'"),
    ]
    for args, expected in cases:
        code, out, err = run("endpoints", args[0], "--config", str(config), *args[1:])
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (args, err)
        assert lines[0].startswith(f"dispatcher endpoints {args[0]}: "), (args, err)
        assert expected in lines[0], (args, err)
    assert endpoints_end(settings) == ends


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["endpoints"], "the topic wins per id"),
        (["endpoints", "put"], "Create the endpoint, or replace it whole"),
        (["endpoints", "rotate-secret"], "--overlap"),
        (["admin"], "bearer token"),
    ],
)
def test_help_explains(capsys: pytest.CaptureFixture[str], command: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    assert says in " ".join(capsys.readouterr().out.split())


def test_without_the_endpoints_topic_it_says_to_run_topics(
    run: Run, kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml", kafka_bootstrap, unique_name, {"a": "http://127.0.0.1:9/a"}
    )
    for args in (("list",), ("import",), ("pause", "a"), ("put", "b", "--url", "http://x/")):
        code, _, err = run("endpoints", args[0], "--config", str(config), *args[1:])
        assert code == 2
        assert "endpoints does not exist: create it with `dispatcher topics" in err
        assert len(err.strip().splitlines()) == 1


def test_import_creates_what_is_missing_keeps_what_differs_until_replace(
    run: Run, kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    urls = {"a": "http://127.0.0.1:9/a", "b": "http://127.0.0.1:9/b"}
    config = write_config(tmp_path / "c.toml", kafka_bootstrap, unique_name, urls)
    settings = load_settings(config)
    create_topics(kafka_bootstrap, dispatcher_topics(settings))  # no import, unlike `topics`

    def imported(*extra: str) -> list[str]:
        code, out, _ = run("endpoints", "import", "--config", str(config), *extra)
        assert code == 0
        return out.splitlines()

    assert imported() == ["created   a", "created   b"]
    assert imported() == ["unchanged a", "unchanged b"]
    text = config.read_text().replace("127.0.0.1:9/b", "127.0.0.1:9/b2")
    config.write_text(text)
    assert imported()[1].startswith("kept      b (the topic's version differs")
    assert imported("--replace") == ["unchanged a", "replaced  b"]
    record = topic_read(settings).snapshot.get("b")
    assert record is not None
    assert (record.endpoint.url, record.version) == ("http://127.0.0.1:9/b2", 2)
    assert run("endpoints", "delete", "a", "--config", str(config))[0] == 0
    assert imported()[0].startswith("skipped   a (deleted in the topic")
    assert imported("--replace")[0] == "created   a"


def _lines_until(process: subprocess.Popen[str], wanted: str, timeout_s: float) -> list[str]:
    """stderr lines of `process` up to the first holding `wanted` (bounded in time)."""
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not lines or wanted not in lines[-1]:
        left = deadline - time.monotonic()
        assert left > 0, lines
        ready, _, _ = select.select([process.stderr], [], [], left)
        if ready:
            line = process.stderr.readline()
            assert line, f"the process ended: {lines}"
            lines.append(line.strip())
    return lines


def test_dispatcher_admin_serves_the_api_until_sigterm(
    run: Run, kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml",
        kafka_bootstrap,
        unique_name,
        {"from-file": "http://127.0.0.1:9/f"},
        admin=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "TEST_ADMIN_TOKENS"}
    command = [sys.executable, "-m", "dispatcher", "admin", "--config", str(config)]
    no_token = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert no_token.returncode == 2
    assert f"{config}: admin.token_env: the environment variable TEST_ADMIN_TOKENS" in (
        no_token.stderr
    )
    no_topic = subprocess.run(
        command,
        env={**env, "TEST_ADMIN_TOKENS": "t" * 20},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_topic.returncode == 2
    assert "endpoints does not exist: create it with `dispatcher topics" in no_topic.stderr

    assert run("topics", "--config", str(config))[0] == 0
    token = "admin-token-0123456789"
    process = subprocess.Popen(
        command,
        env={**env, "TEST_ADMIN_TOKENS": f"other-token-0123456789,{token}"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines_until(process, "catalog caught up", 60)
        url = next(line.rsplit(" ", 1)[1] for line in lines if "serving on" in line)
        request = urllib.request.Request(
            f"{url}/v1/endpoints", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert answer.headers["X-Catalog-Offset"] == "1"
            listed = json.loads(answer.read())
        assert [e["id"] for e in listed["endpoints"]] == ["from-file"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
