"""`oneflow fake-providers` as an operator runs it: a real process on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys

import openai


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fake_providers_command_prints_base_urls_and_serves() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "oneflow_ai", "fake-providers", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(5)]
        root = f"http://127.0.0.1:{port}"
        assert lines[1:] == [
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
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oneflow_ai",
            "fake-providers",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("OneFlow fake providers on")  # once listening
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/openai/v1", api_key="k", max_retries=0
        )
        for _ in range(4):
            assert client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "ping"}]
            ).choices
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0
