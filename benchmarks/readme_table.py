"""`python -m benchmarks.readme_table RESULTS.json [--write README.md]`: the README's
Benchmarks table from a results file.

Prints the table (every workload, a row per worker count of the scale workload, the backlog
with its peak RSS per worker); `--write` replaces what stands between the two marker
comments in the README instead. Rendering is pure: a results document in, Markdown out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BEGIN = (
    "<!-- benchmarks-table:begin "
    "(python -m benchmarks.readme_table RESULTS.json --write README.md) -->"
)
END = "<!-- benchmarks-table:end -->"

HEADER = (
    "| workload | deliveries/s | x ceiling | x naive | p50 / p99 ms | CPU s per 1k "
    "| peak RSS MB per worker | lost |\n|---|---|---|---|---|---|---|---|"
)

Doc = Mapping[str, Any]


class MarkersMissing(ValueError):
    """The README has no well-formed pair of marker comments."""


def short_count(n: int) -> str:
    """200000 -> 200k, 1000000 -> 1M, 1500 -> 1.5k, 300 -> 300."""
    for unit, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= unit:
            return f"{n / unit:.1f}".removesuffix(".0") + suffix
    return str(n)


def _get(doc: Doc | None, *path: str) -> Any:
    """doc[path[0]][path[1]]..., None where any step is missing (older results files)."""
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    return format(value * scale, spec) if isinstance(value, int | float) else "-"


def describe(w: Doc) -> str:
    """The workload cell: its name and shape, and for scale and backlog their ratio."""
    name = str(w.get("name", "?"))
    events = f"{short_count(int(w.get('events', 0)))} events"
    if _get(w, "backlog") is not None:
        parts = [f"{events} up front", "one worker", _times(w, "backlog", "ratio_to_fast_sink")]
    elif (w.get("run_name") or name) != name or _get(w, "scale") is not None:
        workers = int(w.get("workers", 1))
        ratio = _times(w, "scale", "ratio_to_one_worker") if workers > 1 else ""
        star = " *" if _get(w, "scale", "remark") else ""
        parts = [f"{workers} worker{'s' if workers > 1 else ''}", events, ratio + star]
    elif _get(w, "failures_workload") is not None:
        first = _times(w, "failures_workload", "ratio_first_attempt_to_fast_sink")
        parts = [events, *_failure_shape(w), first and f"healthy first attempts {first}"]
    else:
        parts = _shape(w, events)
    failed = "" if w.get("status") == "ok" else " (FAILED)"
    return f"{name} ({', '.join(p.strip() for p in parts if p.strip())}){failed}"


def _times(w: Doc, *path: str) -> str:
    """`x0.95 fast-sink` from a ratio field (its baseline named after the last `_to_`)."""
    value = _get(w, *path)
    baseline = path[-1].rsplit("_to_", 1)[-1].replace("_", " ").replace("fast sink", "fast-sink")
    return f"x{value:.2f} {baseline}" if isinstance(value, int | float) else ""


def _failure_shape(w: Doc) -> list[str]:
    """From the sink label (`receiver fail 10% hang 1%`) and the always-failing endpoints."""
    words = str(w.get("sink", "")).split()
    shape = [
        f"{words[i + 1]} {words[i]}"
        for i, word in enumerate(words[:-1])
        if word in ("fail", "hang")
    ]
    failing = _get(w, "failures_workload", "failing_endpoints") or []
    if failing:
        shape.append(f"{len(failing)} endpoint{'s' if len(failing) > 1 else ''} always failing")
    return shape


def _shape(w: Doc, events: str) -> list[str]:
    per_type = int(w.get("subscribers_per_type", 1))
    if per_type > 1:
        parts = [f"{events} x {per_type} endpoints"]
    else:
        parts = [events, f"{int(w.get('endpoints', 0)):,} endpoints"]
    sink = str(w.get("sink", ""))
    if sink.endswith(" ms"):
        parts.append(f"{sink.split()[-2]} ms, {w.get('max_in_flight')} in flight")
    theoretical = _theoretical(w)
    if theoretical:
        parts.append(f"{short_count(round(theoretical))}/s at most")
    return parts


def _theoretical(w: Doc) -> float | None:
    rate, ratio = _get(w, "throughput", "deliveries_per_s"), w.get("ratio_to_theoretical")
    if isinstance(rate, int | float) and isinstance(ratio, int | float) and ratio > 0:
        return float(rate) / float(ratio)
    return None


def row(w: Doc) -> str:
    p50 = _get(w, "latency", "latency_s", "p50")
    p99 = _get(w, "latency", "latency_s", "p99")
    latency = "-" if p50 is None else f"{p50 * 1000:.1f} / {p99 * 1000:.1f}"
    cells = [
        describe(w),
        _fmt(_get(w, "throughput", "deliveries_per_s"), ",.0f"),
        _fmt(w.get("ratio_to_ceiling"), ".2f"),
        _fmt(w.get("ratio_to_naive"), ".0f"),
        latency,
        _fmt(_get(w, "resources", "cpu_s_per_1k"), ".3f"),
        _fmt(_get(w, "resources", "peak_rss_bytes"), ".0f", 1 / 2**20),
        str(_get(w, "counts", "lost")),
    ]
    return "| " + " | ".join(cells) + " |"


def render(doc: Doc, results_link: str) -> str:
    """The Markdown between the markers: where the figures come from, the table, the
    baselines of the same run and the remarks the table's asterisks point to."""
    png = results_link.removesuffix(".json") + ".png"
    name = results_link.rsplit("/", 1)[-1]
    source = (
        f"Profile `{doc.get('profile')}`, run {doc.get('started_utc')}: "
        f"[`{name}`]({results_link}), plotted in [`{name.removesuffix('.json')}.png`]({png})."
    )
    rows = [row(w) for w in doc.get("workloads", [])]
    base = doc.get("baselines", {})
    same_run = (
        f"Same run: ceiling {_fmt(_get(base, 'ceiling', 'requests_per_s'), ',.0f')} requests/s, "
        f"naive {_fmt(_get(base, 'naive', 'deliveries_per_s'), ',.1f')} deliveries/s, "
        f"nginx alone {_fmt(_get(base, 'wrk', 'requests_per_s'), ',.0f')} requests/s (wrk)."
    )
    remarks = sorted(
        {str(_get(w, "scale", "remark")) for w in doc.get("workloads", [])} - {"", "None"}
    )
    lines = [source, "", HEADER, *rows, "", same_run]
    lines += [f"\\* {remark}." for remark in remarks]
    return "\n".join(lines)


def replace_between_markers(text: str, body: str) -> str:
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < 0 or end < begin:
        raise MarkersMissing(f"the README needs the lines\n{BEGIN}\n{END}")
    head = text[: begin + len(BEGIN)]
    return f"{head}\n{body}\n{text[end:]}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__)
    parser.add_argument("results", type=Path, help="a results file (benchmarks/results/*.json)")
    parser.add_argument("--write", type=Path, metavar="README", help="replace the table there")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = json.loads(args.results.read_text())
    if args.write is None:
        print(render(doc, Path(os.path.relpath(args.results)).as_posix()))
        return 0
    link = Path(os.path.relpath(args.results.resolve(), args.write.resolve().parent)).as_posix()
    try:
        text = replace_between_markers(args.write.read_text(), render(doc, link))
    except MarkersMissing as exc:
        print(f"readme_table: {args.write}: {exc}", file=sys.stderr)
        return 2
    args.write.write_text(text)
    print(f"readme_table: the table in {args.write} now comes from {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
