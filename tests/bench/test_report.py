"""The pure part of `make bench` (bench/report.py): wrk's summary line, the medians, the added
latency and the summary table's ratios to the bare forwarder."""

from __future__ import annotations

import pytest
from bench.report import (
    Cell,
    Report,
    added_latency,
    cell_from_wrk,
    faults_markdown,
    label,
    median_cell,
    parse_wrk,
    summary_markdown,
    summary_rows,
)

WRK_OUT = """Running 3s test @ http://127.0.0.1:9/v1/chat/completions
  1 threads and 10 connections
BENCH_JSON {"requests": 3000, "duration_us": 3000000, "bytes": 1, "errors": {"connect": 1, \
"read": 2, "write": 0, "status": 300, "timeout": 3}, "latency_us": {"min": 100, "mean": 900.5, \
"p50": 1500, "p90": 2500, "p99": 9000, "max": 20000}, "statuses": {"200": 2700, "503": 300}}
"""


def cell(scenario: str, target: str, concurrency: int, rps: float, p50: float = 1.0) -> Cell:
    return Cell(scenario, target, concurrency, rps, p50, p50, p50 * 2, 0, 0, 100, 0.5)


def test_parse_wrk_reads_the_summary_line() -> None:
    raw = parse_wrk(WRK_OUT)
    assert raw["requests"] == 3000
    with pytest.raises(ValueError, match="no summary"):
        parse_wrk("Running 3s test\nsocket errors")


def test_a_cell_from_wrk_counts_socket_errors_and_failed_answers_apart() -> None:
    c = cell_from_wrk(parse_wrk(WRK_OUT), "chat", "sqlite", 10, cpu_seconds=1.5)
    assert (c.rps, c.p50_ms, c.p90_ms, c.p99_ms) == (1000.0, 1.5, 2.5, 9.0)
    assert c.errors == 6  # connect + read + timeout; "status" is the non-2xx count
    assert c.non_2xx == 300
    assert c.cpu_ms_per_request == 0.5
    assert c.error_rate == round(306 / 3006, 4)


def test_median_cell_takes_the_median_of_each_figure_and_sums_the_errors() -> None:
    rounds = [cell("chat", "bare", 10, rps) for rps in (100.0, 300.0, 200.0)]
    rounds[0].errors, rounds[2].non_2xx = 2, 1
    m = median_cell(rounds)
    assert (m.rps, m.errors, m.non_2xx, m.requests) == (200.0, 2, 1, 300)


def test_added_latency_is_against_the_upstream_with_ratios_to_both_floors() -> None:
    cells = [
        cell("chat", "direct", 1, 1000.0, p50=0.5),
        cell("chat", "bare", 1, 500.0, p50=0.8),
        cell("chat", "postgres", 1, 100.0, p50=2.5),
        cell("estimate", "postgres", 1, 300.0),  # no upstream alone: no row
    ]
    [row] = added_latency(cells)
    assert row["target"] == "postgres"
    assert row["added_p50_ms"] == 2.0
    assert row["bare_added_p50_ms"] == 0.3
    assert (row["rps_vs_direct"], row["rps_vs_bare"]) == (0.1, 0.2)


def report() -> Report:
    r = Report(machine={})
    r.cells = [
        cell("chat", "direct", 1, 4000.0, p50=0.25),
        cell("chat", "bare", 1, 2000.0, p50=0.5),
        cell("chat", "sqlite", 1, 500.0, p50=1.75),
        cell("chat", "direct", 10, 6000.0),
        cell("chat", "bare", 10, 5000.0),
        cell("chat", "sqlite", 10, 1250.0),
        cell("chat_stream", "sqlite", 10, 1000.0),
    ]
    r.ttfb_ms = {"sqlite": {"p50": 1.2, "p90": 2.0}}
    r.rss_mib = {"sqlite_idle": 190.0, "2_workers_idle": 400.0}
    r.workers = [
        Cell("chat_sqlite", "bare", 50, 6000.0, 1, 1, 1, 0, 0, 1, 0.1),
        Cell("chat_sqlite", "1 worker", 50, 1500.0, 1, 1, 1, 0, 0, 1, 0.6),
        Cell("chat_sqlite", "2 workers", 50, 2700.0, 1, 1, 1, 0, 0, 1, 0.6),
    ]
    return r


def test_summary_rows_have_the_issue_layout() -> None:
    rows = {row["target"]: row for row in summary_rows(report())}
    assert list(rows) == ["bare", "sqlite", "2 workers"]  # the upstream alone is the floor
    sqlite = rows["sqlite"]
    assert sqlite["vs_bare"] == 0.25
    assert sqlite["added_p50_c1_ms"] == 1.5
    assert sqlite["stream_rps_c10"] == 1000.0
    assert sqlite["stream_first_byte_ms"] == 1.2
    assert sqlite["idle_rss_mib"] == 190.0
    two = rows["2 workers"]
    assert (two["vs_bare"], two["scaling_vs_one_worker"]) == (0.45, 1.8)


def test_the_markdown_tables_show_missing_figures_as_dashes() -> None:
    text = summary_markdown(summary_rows(report()))
    assert (
        "| OneFlow, SQLite | 1,250 | 0.25 | +1.50 ms | 1,000 | 1.20 ms | 0.50 | 190 MiB |" in text
    )
    assert "1.80x one worker" in text
    assert "| bare forwarder (uvicorn + aiohttp) | 5,000 | 1.00 | +0.25 ms | – | – |" in text
    faulty = Cell("chat_faults", "bare", 10, 900.0, 1, 1, 2, 0, 100, 1000, 0.2)
    assert "| 900 | 10.00% | 1.00 | 2.00 |" in faults_markdown([faulty])


def test_a_target_that_fails_its_streams_has_no_stream_figures() -> None:
    r = report()
    r.cells.append(Cell("chat_stream", "portkey", 10, 900.0, 1, 1, 1, 0, 900, 900, 0.1))
    r.cells.append(cell("chat", "portkey", 10, 500.0))
    r.ttfb_ms["portkey"] = {"p50": 0.9, "p90": 1.0}
    portkey = next(row for row in summary_rows(r) if row["target"] == "portkey")
    assert (portkey["stream_rps_c10"], portkey["stream_first_byte_ms"]) == (None, None)
    assert "| failed (100% errors) | – |" in summary_markdown(summary_rows(r))


def test_a_target_served_by_granian_is_named_after_its_configuration() -> None:
    assert label("postgres-granian") == "OneFlow, PostgreSQL + Redis, granian"
    assert label("postgres-wb") == "OneFlow, PostgreSQL + Redis, write-behind"
