"""Embeddings, transcriptions and token counts with a project's own key: charged in the ledger,
reported by `GET /api/v1/usage` and the request log, held to the credits and the rate limits.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
from sqlalchemy import text

from tests.support.audio import wav
from tests.support.billing_world import BillingWorld, billing_world

COUNT_PATH = "/v1/messages/count_tokens"
MAX_BODY = 1_200_000


def _transcribe(world: BillingWorld, key: str, audio: bytes) -> httpx.Response:
    return httpx.post(
        f"{world.url}/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("talk.wav", audio, "audio/wav")},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


async def test_usage_and_credits_of_embeddings_and_transcriptions(database_url: str) -> None:
    with billing_world(database_url, max_request_size=MAX_BODY) as world:
        project, key = world.project()
        world.top_up(project, 10_000_000)  # 10 credits, prepaid
        embedded = world.openai(key).embeddings.create(
            model="text-embedding-3-small", input=["alpha beta", "gamma delta epsilon"]
        )
        tokens = embedded.usage.prompt_tokens
        assert tokens > 0
        transcribed = _transcribe(world, key, wav(61.5))
        assert transcribed.status_code == 200, transcribed.text
        counted = world.anthropic(key).messages.count_tokens(
            model="gpt-4o", messages=[{"role": "user", "content": "How many?"}]
        )
        assert counted.input_tokens > 0

        charges = {c.model: c for c in await world.charges(project)}
        assert set(charges) == {"text-embedding-3-small", "whisper-1"}  # the count is free
        assert charges["text-embedding-3-small"].micro_credits == tokens * 2  # $0.02 / MTok
        assert charges["text-embedding-3-small"].input_tokens == tokens
        assert charges["whisper-1"].micro_credits == 620_000  # 62 s at $0.006 a minute
        async with world.engine() as engine, engine.connect() as connection:
            seconds = await connection.scalar(
                text(
                    "SELECT audio_seconds FROM ledger_entries WHERE project_id = :p "
                    "AND kind = 'charge' AND model = 'whisper-1'"
                ),
                {"p": project},
            )
        assert seconds == 62
        await world.consistent(project)

        report = world.admin_call("GET", "/api/v1/usage", project=project, group_by="model").json()
        groups = {g["model"]: g for g in report["groups"]}
        assert set(groups) == {"text-embedding-3-small", "whisper-1"}
        embedding, whisper = groups["text-embedding-3-small"], groups["whisper-1"]
        assert (embedding["requests"], embedding["input_tokens"]) == (1, tokens)
        assert Decimal(embedding["credits"]) == Decimal(tokens * 2) / 1_000_000
        assert (whisper["requests"], whisper["audio_seconds"]) == (1, 62)
        assert Decimal(whisper["credits"]) == Decimal("0.62")
        assert report["totals"]["audio_seconds"] == 62
        csv = world.admin_call(
            "GET", "/api/v1/usage.csv", project=project, group_by="model"
        ).text.splitlines()
        column = csv[0].split(",").index("audio_seconds")
        rows = {line.split(",")[0]: line.split(",") for line in csv[1:]}
        assert rows["whisper-1"][column] == "62"

        log = world.admin_call("GET", "/api/v1/requests", project=project).json()
        by_model = {row["model"]: row for row in log["data"]}
        assert by_model["whisper-1"]["audio_seconds"] == 62
        assert by_model["text-embedding-3-small"]["input_tokens"] == tokens

        # Over the request-size limit: 413 before any provider is asked.
        world.fakes.reset()
        too_big = _transcribe(world, key, wav(MAX_BODY / 16_000 + 1))
        assert too_big.status_code == 413
        assert world.fakes.calls() == []


async def test_credits_and_limits_hold_for_the_new_endpoints(database_url: str) -> None:
    with billing_world(database_url) as world:
        project, key = world.project()
        world.top_up(project, 1_000)  # 0.001 credits: less than a minute of audio costs
        refused = _transcribe(world, key, wav(30))
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["type"] == "insufficient_quota"
        assert world.fakes.calls() == []  # reserved before the call: nothing was sent

        throttled = world.key(project, limits={"requests_per_minute": 1})
        client = world.anthropic(throttled)
        client.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
        limited = httpx.post(
            f"{world.url}{COUNT_PATH}",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]},
            headers={"Authorization": f"Bearer {throttled}"},
            timeout=30,
        )
        assert limited.status_code == 429
        assert limited.json()["error"]["type"] == "rate_limit_error"  # Anthropic's shape

        postpaid, _ = world.project()
        sipping = world.key(postpaid, limits={"tokens_per_minute": 50})
        long_input = " ".join(f"word{i}" for i in range(80))  # well over 50 tokens
        answer = httpx.post(
            f"{world.url}/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": long_input},
            headers={"Authorization": f"Bearer {sipping}"},
            timeout=30,
        )
        assert answer.status_code == 429, answer.text  # its tokens, not its one request
        assert answer.json()["error"]["type"] == "rate_limit_error"
        assert world.fakes.calls() == []
        roomy = world.key(postpaid, limits={"tokens_per_minute": 50})
        short = httpx.post(
            f"{world.url}/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "a few words"},
            headers={"Authorization": f"Bearer {roomy}"},
            timeout=30,
        )
        assert short.status_code == 200, short.text
