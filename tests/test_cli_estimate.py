"""`oneflow estimate`: the answer of `POST /api/v1/estimate`, offline, as JSON or a table.

The same inputs give the same JSON as a live gateway (a real `oneflow serve` with the fake
providers) that has served no traffic yet, so that its latency estimates are still the
catalog's priors as offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from oneflow_ai.settings import DEFAULT_MASTER_KEY
from tests.support.oneflow_serve import ServedGateway, oneflow_serve, serve_environment
from tests.test_cli import oneflow

MESSAGES = [
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": "What is a gateway?"},
    {"role": "assistant", "content": "A door."},
    {"role": "user", "content": "And an AI gateway?"},
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with oneflow_serve(tmp_path_factory.mktemp("estimate")) as served:
        yield served


def api_estimate(gateway: ServedGateway, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/api/v1/estimate",
        json=body,
        headers={"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"},
        timeout=30,
    )


def cli_estimate(gateway: ServedGateway, *args: str, cwd: Path) -> object:
    result = oneflow("estimate", *args, "--json", env=gateway.env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (
            ["--prompt", "Write a haiku about AI", "--strategy", "cost_optimized"],
            {"prompt": "Write a haiku about AI", "strategy": "cost_optimized"},
        ),
        (
            ["--messages", "MESSAGES", "--max-tokens", "40", "--strategy", "quality_optimized"],
            {"messages": MESSAGES, "max_tokens": 40, "strategy": "quality_optimized"},
        ),
        (
            ["--input-tokens", "1500", "--output-tokens", "500", "--model", "gpt-4"],
            {"input_tokens": 1500, "output_tokens": 500, "model": "gpt-4"},
        ),
        (
            ["--modality", "image", "--images", "2", "--size", "1024x1024", "--quality", "hd"],
            {"modality": "image", "images": 2, "size": "1024x1024", "quality": "hd"},
        ),
        (
            ["--modality", "audio", "--prompt", "Hello there", "--strategy", "latency_optimized"],
            {"modality": "audio", "prompt": "Hello there", "strategy": "latency_optimized"},
        ),
        (
            ["--modality", "embedding", "--prompt", "Hello there"],
            {"modality": "embedding", "prompt": "Hello there"},
        ),
        (
            ["--modality", "transcription", "--seconds", "90", "--strategy", "cost_optimized"],
            {"modality": "transcription", "seconds": 90, "strategy": "cost_optimized"},
        ),
    ],
    ids=["prompt", "messages", "one-model", "image", "audio", "embedding", "transcription"],
)
def test_the_json_is_the_apis_answer(
    gateway: ServedGateway, tmp_path: Path, args: list[str], body: dict[str, object]
) -> None:
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps({"model": "auto", "messages": MESSAGES}))
    args = [str(messages) if arg == "MESSAGES" else arg for arg in args]
    response = api_estimate(gateway, body)
    assert response.status_code == 200, response.text
    assert cli_estimate(gateway, *args, cwd=tmp_path) == response.json()


def test_the_seed_example_as_a_table(tmp_path: Path) -> None:
    env = serve_environment(tmp_path)
    table = oneflow("estimate", "--input-tokens", "1500", "--max-tokens", "500", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("balanced picks ")
    (gpt4,) = [line.split() for line in lines if line.startswith("gpt-4 ")]
    # model, provider, in, out, credits, USD: 1 USD = 100 credits.
    assert gpt4 == ["gpt-4", "openai", "1500", "500", "7.500000", "0.07500000"]

    prompt = oneflow("estimate", "--prompt", "Write a haiku about AI", env=env)
    assert prompt.returncode == 0, prompt.stderr
    assert "~estimated" in prompt.stdout  # Claude's count is approximate


def test_messages_from_standard_input(tmp_path: Path) -> None:
    env = serve_environment(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "oneflow_ai", "estimate", "--messages", "-", "--json"],
        input=json.dumps(MESSAGES),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert all(row["input_tokens"] > 0 for row in json.loads(result.stdout)["estimates"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give input_tokens, a prompt or messages"),
        (["--prompt", "x", "--strategy", "fastest"], "'strategy': must be one of"),
        (["--prompt", "x", "--modality", "video"], "'modality': must be one of"),
        (["--prompt", "x", "--model", "dall-e-3"], "'dall-e-3' is not a text model"),
        (["--messages", "missing.json"], "--messages: cannot read missing.json"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = oneflow("estimate", *args, env=serve_environment(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("oneflow: ") and message in line
