"""The sink alone under wrk: how far above the dispatcher its capacity is."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK_THREADS = 1
WRK_CONNECTIONS = 64
WRK_ID = "wrk-000000000"


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    requests: int
    non_2xx: int
    seconds: float
    body_bytes: int


def lua_script(body: bytes) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("body would end the Lua long string")
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{text}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["webhook-id"] = "{WRK_ID}"\n'
    )


def parse_wrk(output: str, seconds: float, body_bytes: int) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if not rate or not total:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        seconds=seconds,
        body_bytes=body_bytes,
    )


def run_wrk(url: str, body: bytes, seconds: int) -> WrkResult:
    wrk = shutil.which("wrk")
    if not wrk:
        raise RuntimeError("wrk is not installed: run `make bench-deps`")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(body))
        cmd = [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "-s", str(script)]
        done = subprocess.run(
            [*cmd, url], capture_output=True, text=True, timeout=seconds + 30, check=True
        )
    return parse_wrk(done.stdout, float(seconds), len(body))
