"""The official `openai` npm SDK through the gateway to the fake providers (real HTTP both
sides): chat completions plain and streamed, the Responses API plain, streamed and with a
function tool round trip over `previous_response_id`, embeddings and a transcription, for an
OpenAI model and a Claude model. `tests/node/sdk_check.mjs` makes the calls; the SDK's version is
pinned by `tests/node/package-lock.json` and installed with `npm ci` once (skipped while
`node_modules` matches the lock). Marker `node`: deselected without Node.js and npm, an error
under `ONEFLOW_REQUIRE_SERVICES=1`. Run these alone with `make test-node`."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from oneflow_fakes.openai_transcriptions import fake_transcript
from tests.integration.conftest import KEY, Gateway
from tests.support.audio import wav

pytestmark = pytest.mark.node

PROJECT = Path(__file__).resolve().parents[1] / "node"
SCRIPT = PROJECT / "sdk_check.mjs"
LOCK = PROJECT / "package-lock.json"
#: Written into node_modules after `npm ci`: the lock it was installed from.
STAMP = PROJECT / "node_modules" / ".oneflow-lock-sha256"
GPT, CLAUDE = "gpt-4o", "claude-3-haiku-20240307"
MODELS = [(GPT, "openai"), (CLAUDE, "anthropic")]
#: The script's billed calls per chat model: chat plain and streamed, a response plain and
#: streamed, and the two of the tool round trip.
CALLS_PER_MODEL = 6


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def install_sdk() -> None:
    """`npm ci` into tests/node unless node_modules already holds what the lock pins. The lock
    file keeps two test processes (pytest-xdist) from installing at once."""
    npm = shutil.which("npm")
    assert npm, "npm is needed next to node (it comes with Node.js)"
    with (PROJECT / ".npm-install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if STAMP.exists() and STAMP.read_text().strip() == _lock_digest():
            return
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        STAMP.write_text(_lock_digest())


@pytest.fixture(scope="session")
def node_sdk() -> None:
    install_sdk()


def usage_by_model(gateway: Gateway) -> dict[str, dict[str, Any]]:
    """`GET /api/v1/usage` grouped by model."""
    usage = httpx.get(
        f"{gateway.url}/api/v1/usage",
        params={"group_by": "model"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert usage.status_code == 200, usage.text
    return {group["model"]: group for group in usage.json()["groups"]}


@dataclass
class Run:
    """What the script printed and the gateway it ran against, with the usage before it."""

    result: dict[str, Any]
    gateway: Gateway
    usage_before: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def run(node_sdk: None, _module_gateway: Gateway) -> Run:
    """The script's one JSON line, run once against a gateway with a clean call record."""
    gateway = _module_gateway
    gateway.fakes.reset()
    gateway.sink.records.clear()
    before = usage_by_model(gateway)
    env = {**os.environ, "ONEFLOW_BASE_URL": gateway.url, "ONEFLOW_API_KEY": KEY}
    done = subprocess.run(
        ["node", str(SCRIPT)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    return Run(json.loads(line), gateway, before)


def _credits(headers: dict[str, str | None]) -> Decimal:
    assert headers["credits"] is not None
    return Decimal(headers["credits"])


def test_the_pinned_sdk_ran(run: Run) -> None:
    result = run.result
    lock = json.loads(LOCK.read_text())
    assert result["sdk"] == lock["packages"]["node_modules/openai"]["version"]


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_chat_completions(run: Run, model: str, provider: str) -> None:
    result = run.result
    plain, stream = result["chat"][model]["plain"], result["chat"][model]["stream"]
    assert plain["text"].startswith("Echo: Hello from Node")
    assert plain["finish_reason"] == "stop" and plain["usage"]["completion_tokens"] > 0
    assert plain["headers"]["model"] == model and plain["headers"]["provider"] == provider
    assert _credits(plain["headers"]) > 0
    assert stream["text"].startswith("Echo: Stream to Node") and stream["chunks"] > 3
    assert stream["headers"]["provider"] == provider
    assert stream["usage"]["completion_tokens"] > 0
    assert Decimal(stream["oneflow"]["credits"]) > 0


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_responses_plain_and_streamed(run: Run, model: str, provider: str) -> None:
    result = run.result
    plain, stream = result["responses"][model]["plain"], result["responses"][model]["stream"]
    assert plain["status"] == "completed" and plain["id"].startswith("resp_")
    assert plain["text"].startswith("Echo: Tell me about the gateway")
    assert plain["headers"]["model"] == model and plain["headers"]["provider"] == provider
    assert _credits(plain["headers"]) > 0 and plain["usage"]["output_tokens"] > 0
    assert stream["text"].startswith("Echo: Stream the gateway to Node")
    assert stream["deltas"] == stream["text"] == stream["stored_text"]
    assert (stream["first_event"], stream["last_event"]) == (
        "response.created",
        "response.completed",
    )
    assert stream["usage"]["output_tokens"] > 0 and Decimal(stream["oneflow"]["credits"]) > 0


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_a_function_tool_round_trip(run: Run, model: str, provider: str) -> None:
    result = run.result
    trip = result["responses"][model]["tool_round_trip"]
    assert trip["call"]["name"] == "get_weather" and "city" in trip["call"]["arguments"]
    assert trip["previous_response_id"] == trip["first_id"]
    assert trip["text"].startswith("Echo: Sunny, 21C")
    assert trip["headers"]["provider"] == provider and _credits(trip["headers"]) > 0


def test_embeddings(run: Run) -> None:
    result = run.result
    answer = result["embeddings"]
    assert answer["count"] == 2 and answer["indexes"] == [0, 1]
    assert answer["dimensions"] == 1536 and answer["shorter_dimensions"] == 256
    assert abs(answer["norm"] - 1) < 1e-3
    tokens = answer["usage"]["prompt_tokens"]
    assert tokens > 0
    # $0.02 per 1M tokens = 2 micro-credits per token
    assert _credits(answer["headers"]) == Decimal(tokens * 2) / 1_000_000


def test_a_transcription(run: Run) -> None:
    result = run.result
    answer = result["transcription"]
    # The script's WAV holds the same bytes as tests/support/audio.py's.
    audio = wav(3)
    assert answer["audio_sha256"] == hashlib.sha256(audio).hexdigest()
    assert answer["text"] == fake_transcript(audio, 3)
    assert answer["text"].strip()
    # 3 seconds at $0.006 a minute = $0.0003 = 0.03 credits
    assert _credits(answer["headers"]) == Decimal("0.03")


def test_an_unknown_previous_response_is_the_sdks_not_found(
    run: Run,
) -> None:
    result = run.result
    assert result["error"] == {
        "class": "NotFoundError",
        "status": 404,
        "param": "previous_response_id",
    }


def test_every_call_is_billed_and_recorded(run: Run) -> None:
    result, gateway = run.result, run.gateway
    calls = len(MODELS) * CALLS_PER_MODEL + 2 + 1  # two embeddings, one transcription
    records = [r for r in gateway.sink.wait_for(calls) if r.outcome == "ok"]
    operations = [r.operation for r in records]
    assert operations.count("embedding") == 2 and operations.count("transcription") == 1
    assert operations.count("chat") == len(MODELS) * CALLS_PER_MODEL
    assert all(r.cost.micro_credits > 0 for r in records)
    for model, provider in MODELS:
        charged = [r.cost.credits for r in records if r.model == model]
        assert len(charged) == CALLS_PER_MODEL
        assert {r.provider for r in records if r.model == model} == {provider}
        plain = result["responses"][model]["plain"]
        assert _credits(plain["headers"]) in charged
        assert Decimal(result["chat"][model]["stream"]["oneflow"]["credits"]) in charged
    # Every endpoint's calls and credits are in the usage report.
    after = usage_by_model(gateway)
    for model in {r.model for r in records}:
        mine = [r for r in records if r.model == model]
        was = run.usage_before.get(model, {"requests": 0, "credits": "0"})
        assert after[model]["requests"] - was["requests"] == len(mine)
        spent = Decimal(after[model]["credits"]) - Decimal(was["credits"])
        assert spent == sum((r.cost.credits for r in mine), Decimal(0))
