"""The models each fake provider serves, with the limits its real counterpart enforces.

An alias answers with its dated snapshot in the response's `model`, as the real APIs do
(`gpt-4o` -> `gpt-4o-2024-08-06`, `claude-3-opus-latest` -> `claude-3-opus-20240229`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANTHROPIC_MODELS",
    "ELEVENLABS_MODELS",
    "ELEVENLABS_VOICES",
    "OPENAI_CHAT_MODELS",
    "OPENAI_EMBEDDING_MODELS",
    "OPENAI_IMAGE_MODELS",
    "OPENAI_TRANSCRIPTION_MODELS",
    "STABILITY_V1_ENGINES",
    "STABILITY_V2_MODELS",
    "TextModel",
    "text_model",
]


@dataclass(frozen=True, slots=True)
class TextModel:
    id: str  # what the response names: the dated snapshot
    context_window: int
    max_output: int
    created: int = 1_700_000_000
    reasoning: bool = False  # takes reasoning_effort / thinking, reports reasoning tokens


def _openai() -> dict[str, TextModel]:
    snapshots = [
        TextModel("gpt-4o-2024-08-06", 128_000, 16_384, 1_722_814_719),
        TextModel("gpt-4o-2024-11-20", 128_000, 16_384, 1_731_975_040),
        TextModel("gpt-4o-2024-05-13", 128_000, 4_096, 1_715_368_132),
        TextModel("gpt-4o-mini-2024-07-18", 128_000, 16_384, 1_721_172_717),
        TextModel("gpt-4-turbo-2024-04-09", 128_000, 4_096, 1_712_601_677),
        TextModel("gpt-4-0125-preview", 128_000, 4_096, 1_706_037_612),
        TextModel("gpt-4-1106-preview", 128_000, 4_096, 1_698_957_206),
        TextModel("gpt-4-0613", 8_192, 8_192, 1_686_588_896),
        TextModel("gpt-3.5-turbo-0125", 16_385, 4_096, 1_706_048_358),
        TextModel("gpt-4.1-2025-04-14", 1_047_576, 32_768, 1_744_316_542),
        TextModel("gpt-4.1-mini-2025-04-14", 1_047_576, 32_768, 1_744_317_547),
        TextModel("gpt-4.1-nano-2025-04-14", 1_047_576, 32_768, 1_744_321_025),
        TextModel("o3-2025-04-16", 200_000, 100_000, 1_744_133_301, reasoning=True),
        TextModel("o4-mini-2025-04-16", 200_000, 100_000, 1_744_133_506, reasoning=True),
        TextModel("gpt-5-2025-08-07", 400_000, 128_000, 1_754_425_777, reasoning=True),
        TextModel("gpt-5-mini-2025-08-07", 400_000, 128_000, 1_754_425_867, reasoning=True),
        TextModel("gpt-5-nano-2025-08-07", 400_000, 128_000, 1_754_426_303, reasoning=True),
        TextModel("gpt-5.4", 272_000, 128_000, 1_772_668_800, reasoning=True),
        TextModel("gpt-5.4-mini", 272_000, 128_000, 1_773_705_600, reasoning=True),
    ]
    table = {m.id: m for m in snapshots}
    aliases = {
        "gpt-4o": "gpt-4o-2024-08-06",
        "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
        "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
        "gpt-4-turbo-preview": "gpt-4-0125-preview",
        "gpt-4": "gpt-4-0613",
        "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
        "gpt-4.1": "gpt-4.1-2025-04-14",
        "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
        "o3": "o3-2025-04-16",
        "o4-mini": "o4-mini-2025-04-16",
        "gpt-5": "gpt-5-2025-08-07",
        "gpt-5-mini": "gpt-5-mini-2025-08-07",
        "gpt-5-nano": "gpt-5-nano-2025-08-07",
    }
    return table | {alias: table[target] for alias, target in aliases.items()}


def _anthropic() -> dict[str, TextModel]:
    snapshots = [
        TextModel("claude-3-opus-20240229", 200_000, 4_096),
        TextModel("claude-3-sonnet-20240229", 200_000, 4_096),
        TextModel("claude-3-haiku-20240307", 200_000, 4_096),
        TextModel("claude-3-5-sonnet-20240620", 200_000, 8_192),
        TextModel("claude-3-5-sonnet-20241022", 200_000, 8_192),
        TextModel("claude-3-5-haiku-20241022", 200_000, 8_192),
        TextModel("claude-sonnet-4-5-20250929", 200_000, 64_000, reasoning=True),
        TextModel("claude-haiku-4-5-20251001", 200_000, 64_000, reasoning=True),
        TextModel("claude-opus-4-5-20251101", 200_000, 64_000, reasoning=True),
        TextModel("claude-opus-5", 1_000_000, 128_000, reasoning=True),
        TextModel("claude-opus-5-5", 1_000_000, 128_000, reasoning=True),
        TextModel("claude-sonnet-5-5", 1_000_000, 128_000, reasoning=True),
        TextModel("claude-haiku-5-5", 1_000_000, 128_000, reasoning=True),
    ]
    table = {m.id: m for m in snapshots}
    aliases = {
        "claude-3-opus-latest": "claude-3-opus-20240229",
        "claude-3-5-sonnet-latest": "claude-3-5-sonnet-20241022",
        "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
        "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5": "claude-haiku-4-5-20251001",
        "claude-opus-4-5": "claude-opus-4-5-20251101",
    }
    return table | {alias: table[target] for alias, target in aliases.items()}


OPENAI_CHAT_MODELS: dict[str, TextModel] = _openai()
ANTHROPIC_MODELS: dict[str, TextModel] = _anthropic()
_ANY_OPENAI = TextModel("", 128_000, 16_384)
_ANY_ANTHROPIC = TextModel("", 200_000, 8_192)


def text_model(table: dict[str, TextModel], name: str, *, any_model: bool) -> TextModel | None:
    """The served model for `name`; with `any_model`, an unknown name is served as itself."""
    found = table.get(name)
    if found is not None or not any_model or not name:
        return found
    default = _ANY_ANTHROPIC if table is ANTHROPIC_MODELS else _ANY_OPENAI
    return TextModel(name, default.context_window, default.max_output)


# Image sizes per DALL-E model, and the largest `n`.
#: Embedding models: (native dimensions, whether `dimensions` may shorten the vectors).
OPENAI_EMBEDDING_MODELS: dict[str, tuple[int, bool]] = {
    "text-embedding-3-small": (1536, True),
    "text-embedding-3-large": (3072, True),
    "text-embedding-ada-002": (1536, False),
}

#: Speech-to-text models: the response formats each takes (gpt-4o ones: json and text only).
OPENAI_TRANSCRIPTION_MODELS: dict[str, tuple[str, ...]] = {
    "whisper-1": ("json", "text", "srt", "verbose_json", "vtt"),
    "gpt-4o-transcribe": ("json", "text"),
    "gpt-4o-mini-transcribe": ("json", "text"),
}

OPENAI_IMAGE_MODELS: dict[str, tuple[tuple[str, ...], int]] = {
    "dall-e-2": (("256x256", "512x512", "1024x1024"), 10),
    "dall-e-3": (("1024x1024", "1792x1024", "1024x1792"), 1),
}

# Stability v1 engines, with the (width, height) pairs each accepts (None: multiples of 64).
_SDXL_SIZES = frozenset(
    {
        (1024, 1024),
        (1152, 896),
        (896, 1152),
        (1216, 832),
        (832, 1216),
        (1344, 768),
        (768, 1344),
        (1536, 640),
        (640, 1536),
    }
)
STABILITY_V1_ENGINES: dict[str, frozenset[tuple[int, int]] | None] = {
    "stable-diffusion-xl-1024-v1-0": _SDXL_SIZES,
    "stable-diffusion-v1-6": None,
}

# Stability v2beta SD3 models, and the output size for each aspect ratio (about 1 MP).
STABILITY_V2_MODELS = frozenset(
    {
        "sd3.5-large",
        "sd3.5-large-turbo",
        "sd3.5-medium",
        "sd3.5-flash",
        "sd3-large",
        "sd3-large-turbo",
        "sd3-medium",
    }
)
STABILITY_ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "2:3": (832, 1216),
    "3:2": (1216, 832),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}

# ElevenLabs models and the credits each bills per character.
ELEVENLABS_MODELS: dict[str, float] = {
    "eleven_multilingual_v2": 1.0,
    "eleven_v3": 1.0,
    "eleven_monolingual_v1": 1.0,
    "eleven_multilingual_v1": 1.0,
    "eleven_turbo_v2": 0.5,
    "eleven_turbo_v2_5": 0.5,
    "eleven_flash_v2": 0.5,
    "eleven_flash_v2_5": 0.5,
}

# The premade ElevenLabs voices (name by voice id).
ELEVENLABS_VOICES: dict[str, str] = {
    "21m00Tcm4TlvDq8ikWAM": "Rachel",
    "AZnzlk1XvdvUeBnXmlld": "Domi",
    "EXAVITQu4vr4xnSDxMaL": "Sarah",
    "ErXwobaYiN019PkySvjV": "Antoni",
    "MF3mGyEYCl7XYWbV9V6O": "Elli",
    "TxGEqnHWrfWFTfGW9XjX": "Josh",
    "VR6AewLTigWG4xSOukaG": "Arnold",
    "pNInz6obpgDQGcFmaJgB": "Adam",
    "yoZ06aMxZJJ28mfd3POQ": "Sam",
    "JBFqnCBsd6RMkjVDRZzb": "George",
    "onwK4e9ZLuTAKqWW03F9": "Daniel",
    "XB0fDUnXU5powFXDhCwa": "Charlotte",
    "pFZP5JQG7iQjIQuC4Bku": "Lily",
    "XrExE9yKIg1WjnnlVkGX": "Matilda",
    "TX3LPaxmHKxFdv7VOQHJ": "Liam",
    "FGY2WhTYpPnrIDTdsKH5": "Laura",
    "cgSgspJ2msm6clMCkdW9": "Jessica",
    "2EiwWnXFnvU5JabPnv8n": "Clyde",
    "CYw3kZ02Hs0563khs1Fj": "Dave",
}
