"""`make bench`'s options and the pure helpers of its services and peers."""

from __future__ import annotations

import pytest
from bench.backends import libpq_url
from bench.peers import litellm_config
from bench.run import parse_args


def test_quick_stays_short_and_the_full_run_has_the_extra_cells() -> None:
    quick = parse_args(["--quick"])
    assert (quick.duration, quick.rounds, quick.levels) == (3, 1, [1, 10])
    assert (quick.two_workers, quick.faults) == (False, False)
    assert quick.configs == ["sqlite", "postgres", "postgres-wb"]
    full = parse_args([])
    assert (full.two_workers, full.faults, full.levels) == (True, True, [1, 10, 100])
    assert parse_args(["--quick", "--faults"]).faults is True
    chosen = parse_args(["--configs", "sqlite", "--peers", "portkey,litellm"])
    assert (chosen.configs, chosen.peers) == (["sqlite"], ["portkey", "litellm"])


def test_every_configuration_runs_under_every_server_asked_for() -> None:
    assert parse_args(["--configs", "sqlite"]).targets == [("sqlite", "sqlite", "uvicorn")]
    both = parse_args(["--configs", "sqlite,postgres", "--servers", "uvicorn,granian"])
    assert [name for name, _, _ in both.targets] == [
        "sqlite",
        "sqlite-granian",
        "postgres",
        "postgres-granian",
    ]
    assert both.targets[1] == ("sqlite-granian", "sqlite", "granian")


@pytest.mark.parametrize("flag", ["--configs=mysql", "--peers=kong", "--servers=hypercorn"])
def test_unknown_configurations_and_peers_are_refused(flag: str) -> None:
    with pytest.raises(SystemExit):
        parse_args([flag])


def test_the_gateway_s_url_becomes_psql_s_on_another_database() -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
    assert libpq_url(url, "postgres") == "postgresql://postgres@127.0.0.1:5432/postgres"
    with pytest.raises(ValueError):
        libpq_url("sqlite+aiosqlite:///x.db", "postgres")


def test_litellm_serves_the_model_from_the_fake_upstream() -> None:
    text = litellm_config("http://127.0.0.1:9/openai/v1", "sk-x", "gpt-4o")
    assert "model: openai/gpt-4o" in text
    assert "api_base: http://127.0.0.1:9/openai/v1" in text
