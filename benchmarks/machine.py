"""A description of the machine and software a run measured, for the results file."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import aiohttp
import confluent_kafka

from dispatcher import local_kafka


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _kafka_version() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return "unknown (an existing cluster from KAFKA_BOOTSTRAP_SERVERS)"
    try:
        return local_kafka.kafka_version()
    except (OSError, local_kafka.LocalKafkaError):
        return "unknown"


def describe() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "kafka": _kafka_version(),
    }
