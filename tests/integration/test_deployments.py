"""Several deployments of one model: the built-in OpenAI provider and a mirror declared in the
catalog (another key, its own name for the model), each a real fake OpenAI server, balanced by
weight, each with its own circuit breaker and rate-limit headroom; the official SDK in front."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from oneflow_ai.app import create_app
from oneflow_ai.gateway.services import Services
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from oneflow_fakes import FakeProviders
from tests.support.databases import migrated_sqlite_url
from tests.support.server import LiveServer, live_server

KEY = DEFAULT_MASTER_KEY
MIRROR_KEY = "sk-mirror-organisation"
CATALOG = """
providers:
  openai-mirror:
    base_url: {mirror}
    auth: bearer
    headers: {{OpenAI-Organization: org-mirror}}
routing:
  gpt-4o:
    balance: {balance}
    deployments:
      - {{provider: openai, weight: {weight_a}}}
      - {{provider: openai-mirror, model: gpt-4o-mirror, weight: {weight_b}}}
"""


@dataclass
class World:
    server: LiveServer
    services: Services
    primary: FakeProviders  # the built-in `openai` provider
    mirror: FakeProviders  # `openai-mirror`, which knows the model as gpt-4o-mirror

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=KEY, max_retries=0)

    def counts(self) -> tuple[int, int]:
        return (
            self.primary.call_count("openai", "gpt-4o"),
            self.mirror.call_count("openai", "gpt-4o-mirror"),
        )


@contextmanager
def _world(
    tmp: Path,
    *,
    weights: tuple[int, int] = (3, 1),
    balance: str = "weighted",
    primary_limit: int | None = None,
) -> Iterator[World]:
    with (
        FakeProviders(openai_request_limit=primary_limit) as primary,
        FakeProviders(api_key=MIRROR_KEY, any_model=True) as mirror,
    ):
        catalog = tmp / "catalog.yaml"
        catalog.write_text(
            CATALOG.format(
                mirror=mirror.base_urls["openai"],
                balance=balance,
                weight_a=weights[0],
                weight_b=weights[1],
            )
        )
        settings = Settings(
            _env_file=None,
            database_url=migrated_sqlite_url(tmp / "oneflow.db"),
            log_format="json",
            log_level="WARNING",
            fake_providers="off",
            catalog_path=catalog,
            provider_api_keys={"openai-mirror": MIRROR_KEY},
            upstream_max_retries=0,
            circuit_min_calls=5,
            circuit_cooldown_seconds=60,
            **primary.settings_overrides(),  # type: ignore[arg-type]
        )
        app = create_app(settings, configure_logs=False)
        with live_server(app) as server:
            yield World(server, app.state.services, primary, mirror)


def _chat(world: World, client: httpx.Client, n: int) -> list[httpx.Response]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    return [client.post("/v1/chat/completions", json=body) for _ in range(n)]


def _client(world: World) -> httpx.Client:
    return httpx.Client(
        base_url=world.server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )


def test_weights_are_respected_over_1000_calls(tmp_path: Path) -> None:
    with _world(tmp_path, weights=(3, 1)) as world, _client(world) as client:
        answers = _chat(world, client, 1000)
        assert {a.status_code for a in answers} == {200}
        primary, mirror = world.counts()
        assert primary + mirror == 1000
        assert abs(primary - 750) <= 750 * 0.05 and abs(mirror - 250) <= 250 * 0.05
        providers = [a.headers["x-oneflow-provider"] for a in answers]
        assert providers.count("openai") == primary and providers.count("openai-mirror") == mirror
        # Every answer names the catalog model, whichever deployment gave it.
        assert {a.headers["x-oneflow-model"] for a in answers} == {"gpt-4o"}
        # The mirror got its own key, organisation header, and its own name for the model.
        call = world.mirror.calls("openai")[-1]
        assert call.headers["openai-organization"] == "org-mirror"
        assert call.model == "gpt-4o-mirror"


def test_one_failing_deployment_answers_keep_coming_and_its_breaker_opens(
    tmp_path: Path,
) -> None:
    with _world(tmp_path, weights=(1, 1)) as world:
        world.primary.add_fault(provider="openai", status=503)
        client = world.openai()
        failed_over = False
        for index in range(30):
            stream = index % 3 == 2
            if stream:
                chunks = list(
                    client.chat.completions.create(
                        model="gpt-4o",
                        messages=[{"role": "user", "content": "Hi"}],
                        stream=True,
                    )
                )
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                continue
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
            )
            assert raw.parse().choices[0].message.content
            assert raw.headers["x-oneflow-provider"] == "openai-mirror"
            assert raw.headers["x-oneflow-fallbacks"] == "0"  # the same model answered
            route = raw.headers["x-oneflow-route"]
            assert route in (
                "model: gpt-4o requested",  # the mirror's turn, or the primary's circuit open
                "model: gpt-4o requested; deployment openai failed (overloaded), "
                "answered by openai-mirror",
            )
            failed_over = failed_over or route != "model: gpt-4o requested"
        assert failed_over
        breakers = world.services.breakers
        assert breakers.open_for("openai", "gpt-4o") > 0
        assert breakers.open_for("openai-mirror", "gpt-4o-mirror") == 0
        failed_calls = world.primary.call_count("openai", "gpt-4o")
        assert 5 <= failed_calls < 15  # once open, the failing deployment is not called
        assert world.mirror.call_count("openai", "gpt-4o-mirror") == 30
        circuits = httpx.get(
            f"{world.server.url}/api/v1/admin/circuits",
            headers={"Authorization": f"Bearer {KEY}"},
        ).json()["circuits"]
        states = {c["key"]: c["state"] for c in circuits}
        assert states["openai/gpt-4o"] == "open"
        assert states.get("openai-mirror/gpt-4o-mirror", "closed") == "closed"
        # Routing by strategy still counts gpt-4o as callable: its mirror's circuit is closed.
        decision = world.services.router.route(
            input_tokens=10,
            output_tokens=10,
            strategy="quality_optimized",
            allowed_models={"gpt-4o", "gpt-3.5-turbo"},
        )
        assert decision.primary_model == "gpt-4o"


def test_a_deployment_about_to_be_rate_limited_is_steered_away_from(tmp_path: Path) -> None:
    # The primary answers 3 requests, counting down x-ratelimit-remaining-requests (2, 1, 0),
    # then would refuse with 429: the gateway reads the headers and never sends it a 4th.
    with _world(tmp_path, weights=(1, 1), primary_limit=3) as world, _client(world) as client:
        answers = _chat(world, client, 12)
        assert {a.status_code for a in answers} == {200}
        assert world.counts() == (3, 9)
        assert [c.outcome for c in world.primary.calls("openai")] == ["ok"] * 3


def test_least_in_flight_sends_to_the_idle_deployment(tmp_path: Path) -> None:
    with _world(tmp_path, weights=(1, 1), balance="least_in_flight") as world:
        # The primary is slow: while one call waits on it, the next goes to the mirror.
        world.primary.add_fault(provider="openai", latency_ms=600, times=1)
        client = world.openai()

        def one() -> str:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
            )
            return raw.headers["x-oneflow-provider"]

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(one)
            deadline = time.monotonic() + 5
            while world.primary.call_count("openai") == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            # One call in flight on the primary, none on the mirror: the mirror takes these.
            during = [one() for _ in range(3)]
            assert not slow.done()
            assert slow.result() == "openai"
        assert during == ["openai-mirror"] * 3
        # Idle again, both equal: the round robin alternates between them.
        after = [one() for _ in range(4)]
        assert sorted(after) == ["openai", "openai", "openai-mirror", "openai-mirror"]
