"""`oneflow usage`, `oneflow credits …` and `oneflow budgets …` as an operator runs them."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oneflow_ai.domain.usage_record import UsageRecord
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.usage_store import insert_usage
from tests.support.ledger import create_projects
from tests.test_cli import oneflow

NOW = datetime.now(UTC)


@pytest.fixture
async def env(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url, pool_size=1)
    try:
        await create_projects(engine, "team-a")
        async with engine.begin() as c:
            await c.run_sync(
                insert_usage,
                [
                    UsageRecord(
                        request_id=f"r{i}",
                        occurred_at=NOW - timedelta(hours=i),
                        status=200 if i % 4 else 429,
                        project_id="team-a",
                        model="gpt-4o" if i % 2 else "claude-3-haiku-20240307",
                        provider="openai" if i % 2 else "anthropic",
                        input_tokens=1000,
                        output_tokens=100,
                        micro_credits=350_000,
                        latency_ms=200 + 10 * i,
                        cache_hit=i == 1,
                        credits_saved=700_000 if i == 1 else 0,
                    )
                    for i in range(8)
                ],
            )
    finally:
        await engine.dispose()
    return {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}


def test_usage_prints_a_readable_table(env: dict[str, str], tmp_path: Path) -> None:
    result = oneflow("usage", "--group-by", "model", "--since", "7d", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage ") and "UTC" in lines[0]
    assert lines[1].split() == [
        "model", "requests", "errors", "tokens", "in", "tokens", "out", "credits", "USD",
        "p50", "ms", "p95", "ms", "p99", "ms", "cache", "hits", "credits", "saved",
    ]  # fmt: skip
    assert set(lines[2]) == {"-", " "}
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert rows["gpt-4o"][1:3] == ["4", "0"]
    assert rows["claude-3-haiku-20240307"][1:3] == ["4", "2"]
    assert rows["TOTAL"][1:6] == ["8", "2", "8000", "800", "2.800000"]
    assert rows["TOTAL"][-2:] == ["1", "0.700000"]
    assert rows["gpt-4o"][-2:] == ["1", "0.700000"]


def test_usage_as_csv_and_json(env: dict[str, str], tmp_path: Path) -> None:
    as_csv = oneflow(
        "usage", "--group-by", "provider,day", "--format", "csv", env=env, cwd=tmp_path
    )
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0][:3] == ["provider", "day", "requests"]
    assert sum(int(r[2]) for r in rows[1:]) == 8
    as_json = oneflow("usage", "--project", "team-a", "--format", "json", env=env, cwd=tmp_path)
    body = json.loads(as_json.stdout)
    assert body["filters"] == {"project": "team-a"} and body["totals"]["requests"] == 8


def test_usage_refuses_bad_options_in_one_line(env: dict[str, str], tmp_path: Path) -> None:
    for args in (["--since", "yesterday"], ["--group-by", "color"], ["--from", "soon"]):
        result = oneflow("usage", *args, env=env, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("oneflow: ")


def test_credits_topup_adjust_balance_and_mode(env: dict[str, str], tmp_path: Path) -> None:
    topup = oneflow(
        "credits", "topup", "team-a", "25", "--note", "invoice 7", env=env, cwd=tmp_path
    )
    assert topup.returncode == 0, topup.stderr
    assert "prepaid" in topup.stdout and "25.000000 credits (0.25000000 USD)" in topup.stdout
    adjust = oneflow(
        "credits",
        "adjust",
        "team-a",
        "--usd",
        "--note",
        "refund",
        "--",
        "-0.05",
        env=env,
        cwd=tmp_path,
    )
    assert adjust.returncode == 0, adjust.stderr
    assert "20.000000 credits" in adjust.stdout
    mode = oneflow("credits", "mode", "team-a", "postpaid", env=env, cwd=tmp_path)
    assert "postpaid" in mode.stdout
    balance = oneflow("credits", "balance", "team-a", env=env, cwd=tmp_path)
    assert balance.returncode == 0 and "20.000000 credits" in balance.stdout

    missing = oneflow("credits", "topup", "nope", "1", env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "oneflow: project 'nope' does not exist"
    finer = oneflow("credits", "topup", "team-a", "0.0000001", env=env, cwd=tmp_path)
    assert finer.returncode == 2 and "finer than a micro-credit" in finer.stderr


def test_budgets_set_list_remove(env: dict[str, str], tmp_path: Path) -> None:
    def run(*args: str) -> str:
        result = oneflow("budgets", *args, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("set", "team-a", "--metric", "credits", "--period", "month", "--limit", "100")
    out = run(
        "set", "team-a", "--metric", "requests", "--period", "day", "--limit", "500",
        "--user", "alice", "--mode", "soft",
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["id", "scope", "who", "metric", "period", "mode"]
    assert len(lines) == 4
    changed = run("set", "team-a", "--metric", "credits", "--period", "month", "--limit", "50")
    assert "50.000000" in changed and "100.000000" not in changed
    budget_id = next(line.split()[0] for line in changed.splitlines() if " alice " in line)
    assert "alice" not in run("remove", "team-a", budget_id)
    assert len(run("list", "team-a").splitlines()) == 3
