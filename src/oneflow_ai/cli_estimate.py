"""`oneflow estimate`: what a request would cost, offline, as `POST /api/v1/estimate` answers it.

The options become the endpoint's request fields and the same function answers both
(`api/estimates.py`); `--json` prints exactly the endpoint's JSON. Offline means the settings
alone: the catalog and prices (`CATALOG_PATH` included), the providers whose keys are configured
(or all of them when the fake providers would serve), the catalog's latency priors, every
circuit closed and no allow-list.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from oneflow_ai.settings import SettingsError, load_settings

__all__ = ["estimate"]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"oneflow: {message}", err=True)
    return typer.Exit(2)


def _messages(path: Path) -> object:
    """A JSON file ('-': standard input) holding a list of chat messages, or a chat request
    body with a `messages` field."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        value = orjson.loads(raw)
    except OSError as exc:
        raise _fail(f"--messages: cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise _fail(f"--messages: {path} is not valid JSON ({exc})") from None
    if isinstance(value, dict) and "messages" in value:
        return value["messages"]
    return value


def estimate(
    prompt: Annotated[str | None, typer.Option(help="A prompt, counted per model.")] = None,
    messages: Annotated[
        Path | None,
        typer.Option(help="A JSON file of chat messages (or a chat request), '-' for stdin."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="One model instead of every one.")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help="cost_optimized, latency_optimized, quality_optimized or balanced."),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", "--output-tokens", help="Output tokens (default 256)."),
    ] = None,
    input_tokens: Annotated[
        int | None, typer.Option(help="Input tokens, instead of a prompt or messages.")
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="text, image, audio, embedding or transcription.")
    ] = None,
    images: Annotated[int | None, typer.Option(help="image: how many (default 1).")] = None,
    size: Annotated[str | None, typer.Option(help="image: size, e.g. 1024x1024.")] = None,
    quality: Annotated[str | None, typer.Option(help="image: standard or hd.")] = None,
    characters: Annotated[
        int | None, typer.Option(help="audio: characters to speak (default: the prompt's).")
    ] = None,
    seconds: Annotated[int | None, typer.Option(help="transcription: seconds of audio.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """What a request would cost on every model, and which one a strategy picks (offline).

    The same answer as POST /api/v1/estimate for the same fields; --json prints its JSON.
    """
    fields: dict[str, Any] = {
        "prompt": prompt,
        "messages": _messages(messages) if messages is not None else None,
        "model": model,
        "strategy": strategy,
        "max_tokens": max_tokens,
        "input_tokens": input_tokens,
        "modality": modality,
        "images": images,
        "size": size,
        "quality": quality,
        "characters": characters,
        "seconds": seconds,
    }
    answer = _offline_answer({name: value for name, value in fields.items() if value is not None})
    if as_json:
        typer.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(_table(answer))


def _offline_answer(body: dict[str, Any]) -> dict[str, Any]:
    """What POST /api/v1/estimate answers for ``body``, computed here; one line and exit 2 on
    invalid settings or a refused request."""
    from oneflow_ai.api.estimates import EstimateContext, estimate_answer
    from oneflow_ai.errors import GatewayError

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    try:
        return estimate_answer(body, EstimateContext.offline(settings))
    except GatewayError as exc:
        raise _fail(exc.message) from None


def _table(answer: dict[str, Any]) -> str:
    lines: list[str] = []
    routing = answer["routing"]
    if routing is None:
        lines.append(f"{answer['strategy']}: no available {answer['modality']} model fits")
    else:
        lines += [
            f"{answer['strategy']} picks {routing['primary_model']} ({routing['provider']}): "
            f"{routing['estimated_credits']} credits, {routing['cost_usd']} USD",
            f"  why: {routing['reason']}",
            f"  fallbacks: {', '.join(routing['fallback_chain']) or 'none'}",
            "",
        ]
    lines.append(
        f"{'model':<30}{'provider':<12}{'in':>8}{'out':>8}{'credits':>14}{'USD':>14}  note"
    )
    for row in answer["estimates"]:
        notes = [
            "does not fit" if not row["fits"] else "",
            "not available" if not row["available"] else "",
            "~estimated" if not row["tokens_exact"] else "",
        ]
        lines.append(
            f"{row['model']:<30}{row['provider']:<12}{row['input_tokens']:>8}"
            f"{row['output_tokens']:>8}{row['credits']:>14}{row['cost_usd']:>14}  "
            + ", ".join(n for n in notes if n)
        )
    return "\n".join(lines)
