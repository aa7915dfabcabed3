"""`oneflow fake-providers` as an operator runs it: a real process, on the port the system
chose for `--port 0` and reported through `--port-file`."""

from __future__ import annotations

import subprocess
import sys

import openai

from tests.support.ports import start_on_port_0

COMMAND = [sys.executable, "-m", "oneflow_ai", "fake-providers"]


def test_fake_providers_command_prints_base_urls_and_serves() -> None:
    process, port = start_on_port_0(COMMAND, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(5)]
        root = f"http://127.0.0.1:{port}"
        assert lines == [
            f"OneFlow fake providers on {root} (control plane: {root}/_fake)",
            f"OPENAI_BASE_URL={root}/openai/v1",
            f"ANTHROPIC_BASE_URL={root}/anthropic",
            f"STABILITY_BASE_URL={root}/stability",
            f"ELEVENLABS_BASE_URL={root}/elevenlabs",
        ]
        client = openai.OpenAI(base_url=f"{root}/openai/v1", api_key="sk-test", max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "ping"}]
        )
        assert (reply.choices[0].message.content or "").startswith("Echo: ping")
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_several_workers_share_the_port() -> None:
    process, port = start_on_port_0(
        [*COMMAND, "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert process.stdout is not None
        root = f"http://127.0.0.1:{port}"
        assert process.stdout.readline().startswith(f"OneFlow fake providers on {root} ")
        client = openai.OpenAI(base_url=f"{root}/openai/v1", api_key="k", max_retries=0)
        for _ in range(4):
            assert client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "ping"}]
            ).choices
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0
