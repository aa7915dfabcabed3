"""Usage analytics after real traffic agree with the ledger's charges, to the micro-credit.

A mix of requests goes through the gateway: three models of two providers in both dialects,
streamed and not, one that fails upstream, one refused by a hard budget and one by a key's
rate limit. Then
`GET /api/v1/usage` (grouped by model, provider and day, and filtered), its CSV export and
`oneflow usage` must all report exactly what the ledger charged, with the failed and refused
requests counted as errors.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from oneflow_fakes import FaultRule
from tests.support.billing_world import (
    CHAT_PATHS,
    NO_CREDITS,
    BillingWorld,
    Charge,
    billing_world,
    chat_body,
    error_type,
    worst_case,
)
from tests.test_cli import oneflow

MAX_TOKENS = 30
FAILING_MODEL = "gpt-4-turbo"
PROVIDERS = {
    "gpt-4o": "openai",
    "gpt-3.5-turbo": "openai",
    FAILING_MODEL: "openai",
    "claude-3-haiku-20240307": "anthropic",
}


@dataclass
class Expected:
    """What the usage of one group must say."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    micro_credits: int = 0

    def add_charge(self, charge: Charge) -> None:
        self.input_tokens += charge.input_tokens or 0
        self.output_tokens += charge.output_tokens or 0
        self.micro_credits += charge.micro_credits

    def matches(self, row: dict[str, object]) -> bool:
        return (
            int(str(row["requests"])),
            int(str(row["errors"])),
            int(str(row["input_tokens"])),
            int(str(row["output_tokens"])),
            Decimal(str(row["credits"])),
            Decimal(str(row["usd"])),
        ) == (
            self.requests,
            self.errors,
            self.input_tokens,
            self.output_tokens,
            Decimal(self.micro_credits) / 1_000_000,
            Decimal(self.micro_credits) / 100_000_000,
        )


def drive_traffic(world: BillingWorld, project: str, key: str) -> dict[str, str]:
    """The mix of requests; returns each request's id -> model."""
    sent: dict[str, str] = {}
    capped = world.key(project)
    throttled = world.key(project, limits={"requests_per_minute": 1})
    world.budgets(
        project,
        {
            "key_id": world.key_ids[capped],
            "metric": "credits",
            "period": "day",
            "limit": str(Decimal(worst_case(MAX_TOKENS)) / 1_000_000),
        },
    )
    world.fakes.add_fault(FaultRule(model=f"{FAILING_MODEL}*", status=500))

    def ask(credential: str, dialect: str, model: str, stream: bool = False) -> httpx.Response:
        response = world.admin.post(
            CHAT_PATHS[dialect],
            json=chat_body(MAX_TOKENS, model=model, stream=stream),
            headers={"Authorization": f"Bearer {credential}"},
        )
        sent[response.headers["x-oneflow-request-id"]] = model
        return response

    answered = [
        ask(key, "openai", "gpt-4o"),
        ask(key, "anthropic", "gpt-4o"),
        ask(key, "openai", "gpt-4o", stream=True),
        ask(key, "anthropic", "claude-3-haiku-20240307"),
        ask(key, "anthropic", "claude-3-haiku-20240307", stream=True),
        ask(key, "openai", "gpt-3.5-turbo"),
        ask(capped, "openai", "gpt-4o"),
        ask(throttled, "openai", "gpt-3.5-turbo"),
    ]
    assert [r.status_code for r in answered] == [200] * len(answered)
    failed = ask(key, "openai", FAILING_MODEL)
    assert failed.status_code >= 500 and error_type("openai", failed) == "server_error"
    refused = ask(capped, "anthropic", "gpt-4o")
    assert (
        refused.status_code == 402 and error_type("anthropic", refused) == NO_CREDITS["anthropic"]
    )
    limited = ask(throttled, "anthropic", "gpt-3.5-turbo")
    assert limited.status_code == 429 and error_type("anthropic", limited) == "rate_limit_error"
    return sent


def expectations(
    sent: dict[str, str], charges: list[Charge], dimension: str
) -> dict[str, Expected]:
    """Expected totals per model or provider (or one group: dimension "all")."""

    def group(model: str) -> str:
        return {"model": model, "provider": PROVIDERS[model]}.get(dimension, "all")

    found: dict[str, Expected] = {}
    charged = {charge.request_id: charge for charge in charges}
    for request_id, model in sent.items():
        expected = found.setdefault(group(model), Expected())
        expected.requests += 1
        if request_id in charged:
            expected.add_charge(charged[request_id])
        else:
            expected.errors += 1
    return found


async def test_usage_reports_agree_with_the_ledger(database_url: str) -> None:
    with billing_world(database_url) as world:
        project, key = world.project()
        sent = drive_traffic(world, project, key)
        charges = await world.charges(project)
        assert len(charges) == 8 and {c.request_id for c in charges} <= set(sent)
        assert expectations(sent, charges, "all")["all"].errors == 3  # failed, refused, limited

        # The current hour whole (rollups) or partial (records): the same numbers.
        now = datetime.now(UTC)
        ranges = [
            {},
            {
                "from": (now - timedelta(days=2)).isoformat(),
                "to": (now + timedelta(hours=2)).isoformat(),
            },
        ]
        for extra in ranges:
            for dimension in ("model", "provider"):
                report = world.admin_call(
                    "GET", "/api/v1/usage", **{"project": project, "group_by": dimension, **extra}
                ).json()
                groups = {g[dimension]: g for g in report["groups"]}
                expected = expectations(sent, charges, dimension)
                assert set(groups) == set(expected)
                for name, totals in expected.items():
                    assert totals.matches(groups[name]), (dimension, name, groups[name], totals)
                assert expectations(sent, charges, "all")["all"].matches(report["totals"])

            by_day = world.admin_call(
                "GET", "/api/v1/usage", **{"project": project, "group_by": "day", **extra}
            ).json()
            (today,) = by_day["groups"]
            assert today["day"] == now.date().isoformat()
            assert expectations(sent, charges, "all")["all"].matches(today)

        # Filters.
        model_only = world.admin_call(
            "GET", "/api/v1/usage", **{"project": project, "model": "gpt-4o"}
        ).json()
        assert expectations(sent, charges, "model")["gpt-4o"].matches(model_only["totals"])
        anthropic_only = world.admin_call(
            "GET", "/api/v1/usage", **{"project": project, "provider": "anthropic"}
        ).json()
        assert expectations(sent, charges, "provider")["anthropic"].matches(
            anthropic_only["totals"]
        )

        # The CSV export and `oneflow usage` (CSV and table) say the same, cell for cell.
        window = {
            "from": (now - timedelta(days=1)).isoformat(),
            "to": (now + timedelta(hours=1)).isoformat(),
        }
        api_csv = world.admin_call(
            "GET", "/api/v1/usage.csv", **{"project": project, "group_by": "model", **window}
        ).text
        cli = [
            "usage",
            "--project",
            project,
            "--group-by",
            "model",
            "--from",
            window["from"],
            "--to",
            window["to"],
        ]
        env = {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
        cli_csv = oneflow(*cli, "--format", "csv", env=env)
        assert cli_csv.returncode == 0, cli_csv.stderr
        assert cli_csv.stdout == api_csv
        rows = {row["model"]: row for row in csv.DictReader(io.StringIO(api_csv))}
        expected = expectations(sent, charges, "model")
        assert set(rows) == set(expected)
        for name, totals in expected.items():
            assert totals.matches(rows[name]), (name, rows[name], totals)

        table = oneflow(*cli, env=env)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        for name in expected:
            (line,) = [line for line in lines if line.split() and line.split()[0] == name]
            assert rows[name]["credits"] in line.split(), line
        (total_line,) = [line for line in lines if line.startswith("TOTAL")]
        total_credits = world.admin_call(
            "GET", "/api/v1/usage", **{"project": project, **window}
        ).json()["totals"]["credits"]
        assert Decimal(total_credits) == Decimal(sum(c.micro_credits for c in charges)) / 10**6
        assert total_credits in total_line.split(), total_line
