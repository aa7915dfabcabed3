"""`oneflow serve --workers 2`: two real worker processes, one /metrics that adds them up, and a
metrics directory that is set up before the workers start and removed after they stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from oneflow_ai.observability.multiprocess import clear_metric_files, multiprocess_metrics_dir
from tests.support.ports import first_answer, start_on_port_0


def _health_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "http_requests_total"
                and sample.labels.get("route") == "/health"
                and sample.labels.get("status") == "200"
            ):
                return sample.value
    return 0.0


def _health_count_per_worker(directory: Path) -> dict[str, float]:
    """Each worker's own count, read from its file (what a scrape of one worker alone sees)."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.split("_")[-1]
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if "/health" in key and '"200"' in key and "http_requests_total" in key:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def test_two_workers_are_counted_together(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"LOG_LEVEL": "WARNING", "TMPDIR": str(scratch)})
    # Port 0: the supervisor binds the one port both workers share and reports it.
    process, port = start_on_port_0(
        [
            *(sys.executable, "-m", "oneflow_ai", "serve"),
            *("--workers", "2", "--allow-per-worker-limits"),  # metrics, not limits, here
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        first_answer(process, f"{url}/ready")
        (directory,) = scratch.glob("oneflow-metrics-*")

        # New connection per request: the two workers take turns accepting them.
        sent = 0
        per_worker: dict[str, float] = {}
        while len(per_worker) < 2 or min(per_worker.values()) == 0:
            assert httpx.get(f"{url}/health", headers={"Connection": "close"}).status_code == 200
            sent += 1
            per_worker = _health_count_per_worker(directory)
            assert sent < 2000, f"one worker served everything: {per_worker}"
        sent += 20
        for _ in range(20):
            httpx.get(f"{url}/health", headers={"Connection": "close"})

        # Whichever worker answers the scrape, it reports both workers' requests.
        scrapes = [
            httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text for _ in range(6)
        ]
        per_worker = _health_count_per_worker(directory)
        assert len(per_worker) == 2 and all(count > 0 for count in per_worker.values())
        assert sum(per_worker.values()) == sent
        assert {_health_count(text) for text in scrapes} == {float(sent)}
        assert all(count < sent for count in per_worker.values())
        # Live gauges are summed: the one scrape in flight, not one per worker.
        in_flight = [
            sample.value
            for family in text_string_to_metric_families(scrapes[-1])
            for sample in family.samples
            if sample.name == "http_requests_in_flight"
        ]
        assert in_flight == [1.0]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode in (0, -15), output
    assert list(scratch.glob("oneflow-metrics-*")) == []


def test_an_operator_directory_is_cleared_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    (directory / "histogram_456.db").write_bytes(b"stale")
    (directory / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    with multiprocess_metrics_dir(workers=4) as used:
        assert used == directory
        assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]
    assert directory.is_dir()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)


def test_one_worker_or_metrics_off_needs_no_directory() -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    with multiprocess_metrics_dir(workers=1) as used:
        assert used is None
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    with multiprocess_metrics_dir(workers=4, enabled=False) as used:
        assert used is None
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_several_workers_get_a_fresh_directory_removed_after(tmp_path: Path) -> None:
    with multiprocess_metrics_dir(workers=3) as used:
        assert used is not None and used.is_dir()
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(used)
        (used / "counter_1.db").write_bytes(b"x")
        assert clear_metric_files(used) == 1
    assert not used.exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
