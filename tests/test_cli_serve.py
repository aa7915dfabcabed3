"""`oneflow serve --port 0 --port-file PATH`: the gateway reports the port it listens on, in
each of uvicorn's modes (one process is tested in test_cli.py, several workers in
tests/observability/test_multiprocess.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from oneflow_ai.cli_startup import write_port_file
from tests.support.gateway_process import stop_process
from tests.support.ports import first_answer, start_on_port_0


def test_the_port_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "port"
    path.write_text("stale")
    write_port_file(path, 43123)
    assert path.read_text() == "43123\n"
    assert [p.name for p in tmp_path.iterdir()] == ["port"]


def test_with_reload_the_port_is_reported_and_served(tmp_path: Path) -> None:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    process, port = start_on_port_0(
        [sys.executable, "-m", "oneflow_ai", "serve", "--reload"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        health = first_answer(process, f"http://127.0.0.1:{port}/health")
    finally:
        stop_process(process)
    assert health.status_code == 200
