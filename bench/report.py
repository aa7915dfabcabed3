"""The pure part of `make bench`: wrk's summary line read into a cell, medians over rounds,
added latency, the ratios to the bare forwarder and the summary table of the issue's layout.
No process, no socket: tests/bench/test_report.py covers it."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

#: The floor and the Python floor; every other target is a gateway (OneFlow or a peer).
FLOORS = ("direct", "bare")
#: Above this share of failed answers a cell's speed means nothing: the summary says "failed".
FAILED = 0.05

LABELS = {
    "direct": "upstream alone (fake OpenAI)",
    "bare": "bare forwarder (uvicorn + aiohttp)",
    "sqlite": "OneFlow, SQLite",
    "postgres": "OneFlow, PostgreSQL + Redis",
    "postgres-wb": "OneFlow, PostgreSQL + Redis, write-behind",
    "portkey": "Portkey gateway (Node)",
    "litellm": "LiteLLM proxy, 1 worker",
}
#: The suffix of a OneFlow target served by granian instead of uvicorn (`--servers granian`).
GRANIAN = "-granian"


def label(target: str) -> str:
    """The name of `target` in the tables."""
    if target.endswith(GRANIAN):
        return f"{label(target.removesuffix(GRANIAN))}, granian"
    return LABELS.get(target, target)


@dataclass
class Cell:
    scenario: str
    target: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    requests: int
    cpu_ms_per_request: float

    @property
    def error_rate(self) -> float:
        """Failed answers and socket errors over everything wrk sent."""
        sent = self.requests + self.errors
        return round((self.non_2xx + self.errors) / sent, 4) if sent else 0.0


@dataclass
class Report:
    machine: dict[str, object]
    cells: list[Cell] = field(default_factory=list)
    rounds: list[list[Cell]] = field(default_factory=list)
    added: list[dict[str, object]] = field(default_factory=list)
    ttfb_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    streams_1000: dict[str, float] = field(default_factory=dict)
    #: The whole-machine cells (c=50): bare, one worker and two workers of OneFlow.
    workers: list[Cell] = field(default_factory=list)
    #: The cells with injected upstream faults (retries on in the gateways).
    faults: list[Cell] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def parse_wrk(stdout: str) -> dict[str, object]:
    """The `BENCH_JSON {...}` line `bench/wrk/post.lua` prints at the end of a run."""
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, object] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise ValueError(f"wrk printed no summary:\n{stdout}")


def cell_from_wrk(
    raw: dict[str, object], scenario: str, target: str, concurrency: int, cpu_seconds: float
) -> Cell:
    """One cell from wrk's summary and the server's CPU seconds over the same run."""
    latency, errors, statuses = raw["latency_us"], raw["errors"], raw.get("statuses") or {}
    assert isinstance(latency, dict) and isinstance(errors, dict) and isinstance(statuses, dict)
    requests = int(str(raw["requests"]))
    seconds = int(str(raw["duration_us"])) / 1e6
    return Cell(
        scenario=scenario,
        target=target,
        concurrency=concurrency,
        rps=round(requests / seconds, 1) if seconds else 0.0,
        p50_ms=round(latency["p50"] / 1000, 3),
        p90_ms=round(latency["p90"] / 1000, 3),
        p99_ms=round(latency["p99"] / 1000, 3),
        errors=sum(int(v) for k, v in errors.items() if k != "status"),
        non_2xx=sum(int(n) for code, n in statuses.items() if not str(code).startswith("2")),
        requests=requests,
        cpu_ms_per_request=round(cpu_seconds * 1000 / requests, 3) if requests else 0.0,
    )


def median_cell(samples: list[Cell]) -> Cell:
    """The median of each figure over the rounds (errors and requests are summed)."""
    first = samples[0]

    def med(name: str) -> float:
        return round(float(statistics.median(getattr(s, name) for s in samples)), 3)

    return Cell(
        scenario=first.scenario,
        target=first.target,
        concurrency=first.concurrency,
        rps=med("rps"),
        p50_ms=med("p50_ms"),
        p90_ms=med("p90_ms"),
        p99_ms=med("p99_ms"),
        errors=sum(s.errors for s in samples),
        non_2xx=sum(s.non_2xx for s in samples),
        requests=sum(s.requests for s in samples),
        cpu_ms_per_request=med("cpu_ms_per_request"),
    )


def _ratio(a: float, b: float | None) -> float | None:
    return round(a / b, 3) if b else None


def added_latency(cells: list[Cell]) -> list[dict[str, object]]:
    """Each gateway's p50/p99 minus the upstream's in the same cell, and its throughput as a
    ratio of the upstream's and the bare forwarder's."""
    by_key = {(c.scenario, c.target, c.concurrency): c for c in cells}
    rows = []
    for c in cells:
        direct = by_key.get((c.scenario, "direct", c.concurrency))
        if c.target in FLOORS or direct is None:
            continue
        bare = by_key.get((c.scenario, "bare", c.concurrency))
        rows.append(
            {
                "scenario": c.scenario,
                "target": c.target,
                "concurrency": c.concurrency,
                "added_p50_ms": round(c.p50_ms - direct.p50_ms, 3),
                "added_p99_ms": round(c.p99_ms - direct.p99_ms, 3),
                "bare_added_p50_ms": round(bare.p50_ms - direct.p50_ms, 3) if bare else None,
                "rps_vs_direct": _ratio(c.rps, direct.rps),
                "rps_vs_bare": _ratio(c.rps, bare.rps if bare else None),
            }
        )
    return rows


def summary_rows(report: Report) -> list[dict[str, object]]:
    """The issue's table: per target, chat req/s at c=10 and its ratio to the bare forwarder,
    added p50 at c=1 (minus the upstream's), stream req/s at c=10, the stream's first byte
    (p50, curl), CPU ms/req at c=10 and idle RSS; then the two-worker row when measured."""
    by_key = {(c.scenario, c.target, c.concurrency): c for c in report.cells}
    bare = by_key.get(("chat", "bare", 10))
    direct_c1 = by_key.get(("chat", "direct", 1))
    targets = [t for t in dict.fromkeys(c.target for c in report.cells) if t != "direct"]
    rows: list[dict[str, object]] = []
    for target in targets:
        chat, c1 = by_key.get(("chat", target, 10)), by_key.get(("chat", target, 1))
        stream = by_key.get(("chat_stream", target, 10))
        # A target that fails its streams has no stream figures (its "first byte" is an error's).
        stream_ok = stream is not None and stream.error_rate <= FAILED
        rows.append(
            {
                "target": target,
                "server": label(target),
                "rps_c10": chat.rps if chat else None,
                "vs_bare": _ratio(chat.rps, bare.rps if bare else None) if chat else None,
                "added_p50_c1_ms": (
                    round(c1.p50_ms - direct_c1.p50_ms, 3) if c1 and direct_c1 else None
                ),
                "stream_rps_c10": stream.rps if stream and stream_ok else None,
                "stream_first_byte_ms": (
                    report.ttfb_ms.get(target, {}).get("p50")
                    if stream is None or stream_ok
                    else None
                ),
                "stream_error_rate": stream.error_rate if stream else None,
                "cpu_ms_per_request_c10": chat.cpu_ms_per_request if chat else None,
                "idle_rss_mib": report.rss_mib.get(f"{target}_idle"),
            }
        )
    rows.extend(workers_rows(report))
    return rows


def workers_rows(report: Report) -> list[dict[str, object]]:
    """Two workers on the whole machine at c=50, as a ratio of the bare forwarder there and of
    one worker there (the scaling ratio)."""
    cells = {c.target: c for c in report.workers}
    two, one, bare = cells.get("2 workers"), cells.get("1 worker"), cells.get("bare")
    if two is None:
        return []
    return [
        {
            "target": "2 workers",
            "server": f"OneFlow, 2 workers, whole machine, c=50 ({report.workers[0].scenario})",
            "rps_c10": two.rps,
            "vs_bare": _ratio(two.rps, bare.rps if bare else None),
            "bare_rps_c50": bare.rps if bare else None,
            "one_worker_rps_c50": one.rps if one else None,
            "scaling_vs_one_worker": _ratio(two.rps, one.rps if one else None),
            "cpu_ms_per_request_c10": two.cpu_ms_per_request,
            "idle_rss_mib": report.rss_mib.get("2_workers_idle"),
        }
    ]


def _fmt(value: object, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _stream_rps(row: dict[str, object]) -> str:
    rate = row.get("stream_error_rate")
    if row.get("stream_rps_c10") is None and isinstance(rate, float) and rate > FAILED:
        return f"failed ({rate:.0%} errors)"
    return _fmt(row.get("stream_rps_c10"), ",.0f")


def summary_markdown(rows: list[dict[str, object]]) -> str:
    """The summary rows as the Markdown table docs/benchmarks.md carries."""
    lines = [
        "| server | req/s c=10 | vs bare | added p50 c=1 | stream req/s c=10 "
        "| stream first byte c=1 | CPU ms/req c=10 | idle RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rps = _fmt(r["rps_c10"], ",.0f")
        if r["target"] == "2 workers":
            rps += (
                f" (bare: {_fmt(r['bare_rps_c50'], ',.0f')}; "
                f"{_fmt(r['scaling_vs_one_worker'], '.2f')}x one worker at "
                f"{_fmt(r['one_worker_rps_c50'], ',.0f')})"
            )
        added, first_byte = r.get("added_p50_c1_ms"), r.get("stream_first_byte_ms")
        lines.append(
            f"| {r['server']} | {rps} | {_fmt(r['vs_bare'], '.2f')} "
            f"| {'–' if added is None else f'{added:+.2f} ms'} "
            f"| {_stream_rps(r)} "
            f"| {_fmt(first_byte, '.2f')}{'' if first_byte is None else ' ms'} "
            f"| {_fmt(r['cpu_ms_per_request_c10'], '.2f')} "
            f"| {_fmt(r['idle_rss_mib'], '.0f')}{'' if r['idle_rss_mib'] is None else ' MiB'} |"
        )
    return "\n".join(lines)


def faults_markdown(cells: list[Cell]) -> str:
    """The injected-faults cells: throughput, the error rate the client saw, p50/p99."""
    lines = [
        "| server | req/s | client error rate | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {label(c.target)} | {c.rps:,.0f} | {c.error_rate:.2%} "
            f"| {c.p50_ms:.2f} | {c.p99_ms:.2f} |"
        )
    return "\n".join(lines)


def cells_text(report: Report) -> str:
    """Every cell, the added latency and the side figures, as `make bench` prints them."""
    out = [
        f"{'scenario':<12}{'target':<10}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'CPU ms/req':>11}{'errors':>8}{'non-2xx':>8}"
    ]
    for c in [*report.cells, *report.workers, *report.faults]:
        out.append(
            f"{c.scenario:<12}{c.target:<10}{c.concurrency:>5}{c.rps:>9.0f}{c.p50_ms:>9.3f}"
            f"{c.p90_ms:>9.3f}{c.p99_ms:>9.3f}{c.cpu_ms_per_request:>11.3f}{c.errors:>8}"
            f"{c.non_2xx:>8}"
        )
    out += ["", "added latency (minus the upstream's; the bare forwarder's for scale):"]
    for a in report.added:
        out.append(
            f"  {a['scenario']:<12} {a['target']:<9} c={a['concurrency']:<4}"
            f" p50 +{a['added_p50_ms']:.3f} ms  p99 +{a['added_p99_ms']:.3f} ms"
            f"  (bare p50 +{_fmt(a['bare_added_p50_ms'], '.3f')} ms)"
            f"  req/s {_fmt(a['rps_vs_direct'], '.2f')}x direct,"
            f" {_fmt(a['rps_vs_bare'], '.2f')}x bare"
        )
    if report.ttfb_ms:
        parts = [f"{k} p50 {v['p50']:.3f} / p90 {v['p90']:.3f}" for k, v in report.ttfb_ms.items()]
        out.append("stream time to first byte (ms): " + "; ".join(parts))
    out.append(f"RSS (MiB): {report.rss_mib}")
    if report.streams_1000:
        s = report.streams_1000
        out.append(
            f"1,000 concurrent streams (12 s, slow upstream): {s['completed']:.0f} completed,"
            f" {s['non_2xx']:.0f} non-2xx, {s['socket_errors']:.0f} socket errors,"
            f" peak RSS {s['peak_rss_mib']:.1f} MiB"
        )
    for part, why in report.skipped.items():
        out.append(f"skipped {part}: {why}")
    out += ["", "summary (ratios to the bare forwarder in this run):", ""]
    out.append(summary_markdown(summary_rows(report)))
    if report.faults:
        out += ["", f"injected upstream faults ({report.faults[0].scenario}):", ""]
        out.append(faults_markdown(report.faults))
    return "\n".join(out)
