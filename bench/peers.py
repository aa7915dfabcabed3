"""Peer gateways for `make bench-peers`: LiteLLM's proxy (pip, in a virtualenv of its own) and
Portkey's gateway (npm `@portkey-ai/gateway`), installed once into a cache folder
(`$ONEFLOW_BENCH_CACHE`, default `~/.cache/oneflow-bench`) and started pointed at the same fake
OpenAI upstream as OneFlow and the bare forwarder. Optional, never in CI: with the registry
unreachable the install fails with a message that says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("ONEFLOW_BENCH_CACHE", Path.home() / ".cache" / "oneflow-bench"))
PEERS = ("portkey", "litellm")
LITELLM_SPEC = os.environ.get("BENCH_LITELLM_SPEC", "litellm[proxy]")
LITELLM_MASTER_KEY = "sk-bench-litellm-master-0123456789abcdef"
PORTKEY_SPEC = os.environ.get("BENCH_PORTKEY_SPEC", "@portkey-ai/gateway")


class InstallFailed(RuntimeError):
    """A peer could not be installed (no network, registry down): the message says which."""


@dataclass(frozen=True)
class PeerLaunch:
    """How to start a peer and call it: its argv, environment, chat URL path and headers."""

    argv: list[str]
    env: dict[str, str]
    path: str
    headers: dict[str, str]


def _install(argv: list[str], what: str, cwd: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=1800)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-1500:]
        raise InstallFailed(f"installing {what} failed (is the registry reachable?):\n{tail}")


def litellm_bin() -> Path:
    """LiteLLM's `litellm` command, installed into CACHE/litellm on first use."""
    venv = CACHE / "litellm"
    command = venv / "bin" / "litellm"
    if command.exists():
        return command
    CACHE.mkdir(parents=True, exist_ok=True)
    _install([sys.executable, "-m", "venv", str(venv)], "a virtualenv for LiteLLM")
    _install([str(venv / "bin" / "pip"), "install", "-q", LITELLM_SPEC], f"{LITELLM_SPEC} (pip)")
    return command


def portkey_entry() -> Path:
    """Portkey's server script, installed into CACHE/portkey on first use (needs node, npm)."""
    folder = CACHE / "portkey"
    entry = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if entry.exists():
        return entry
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise InstallFailed("Portkey's gateway needs node and npm (apt-get install nodejs npm)")
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["npm", "install", "--no-audit", "--no-fund", PORTKEY_SPEC]
    _install(argv, f"{PORTKEY_SPEC} (npm)", cwd=folder)
    return entry


def litellm_config(upstream: str, key: str, model: str) -> str:
    """A proxy config that serves `model` from the OpenAI-compatible `upstream` (…/v1)."""
    return (
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {upstream}\n"
        f"      api_key: {key}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )


def launch(name: str, port: int, upstream: str, key: str, model: str, workdir: Path) -> PeerLaunch:
    """Install `name` if needed; how to start it on `port` in front of `upstream`."""
    if name == "litellm":
        config = workdir / "litellm.yaml"
        config.write_text(litellm_config(upstream, key, model))
        argv = [str(litellm_bin()), "--config", str(config), "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--num_workers", "1"]
        env = {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            # It refuses to start without one; without a database it checks this key only.
            "LITELLM_MASTER_KEY": LITELLM_MASTER_KEY,
        }
        headers = {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
        return PeerLaunch(argv, env, "/v1/chat/completions", headers)
    if name == "portkey":
        argv = ["node", str(portkey_entry()), f"--port={port}", "--headless"]
        headers = {
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": upstream,
            "Authorization": f"Bearer {key}",
        }
        return PeerLaunch(argv, {"NODE_ENV": "production"}, "/v1/chat/completions", headers)
    raise ValueError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")


def main() -> int:
    """`python -m bench.peers`: install the peers now (what `make bench-peers` does first)."""
    try:
        print(f"LiteLLM: {litellm_bin()}")
        print(f"Portkey: {portkey_entry()}")
    except InstallFailed as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
