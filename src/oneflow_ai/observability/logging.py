"""Structured logging: one structlog chain for OneFlow's own logs and the stdlib's.

JSON lines outside development (console rendering in development), the request id bound per
request through contextvars, and secrets redacted wherever they appear: by key name
(Authorization, API-key headers, passwords, tokens), by shape (`sk-...` keys, JWTs, bearer
credentials) and by value (every secret the settings hold).
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "InfoLine", "Redactor", "configure_logging", "get_logger", "info_line"]

REDACTED = "[REDACTED]"

_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "api_key",
        "apikey",
        "xi-api-key",
        "cookie",
        "set-cookie",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "jwt",
        "jwt_secret",
        "master_key",
        "oneflow_master_key",
        "private_key",
    }
)
_SENSITIVE_SUFFIXES = ("_api_key", "_secret", "_token", "_password")
#: Types of log values that cannot hold a secret (exact types: a subclass is looked at).
_PLAIN = frozenset({int, float, bool, type(None)})

# Shapes of credentials: provider and OneFlow keys (sk-..., sk-ant-..., sk_...), JWTs, and
# whatever follows an auth scheme word.
_SECRET_PATTERN = re.compile(
    r"""
    (?P<bearer>\b(?:Bearer|Basic|Token)\s+)[^\s"',;]+
    | \bsk[-_][A-Za-z0-9_\-]{8,}
    | \beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*
    """,
    re.VERBOSE,
)


@functools.lru_cache(maxsize=4096)
def _is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SENSITIVE_KEYS or lowered.endswith(_SENSITIVE_SUFFIXES)


def _may_hold_credential(value: str) -> bool:
    """Whether `_SECRET_PATTERN` can match: each of its matches contains one of these words
    (it is case-sensitive). Log lines are mostly values without any (methods, paths, ids,
    timestamps), which then skip the pattern."""
    return (
        "sk" in value or "eyJ" in value or "Bearer" in value or "Basic" in value or "Token" in value
    )


_CLEAN_TEXT_MAX_LENGTH = 128
_CLEAN_TEXTS_KEPT = 4096


class Redactor:
    """Scrubs secrets from log events (a structlog processor) and from arbitrary values."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._values = tuple(sorted({v for v in secret_values if v}, key=len, reverse=True))
        # Short texts found to hold nothing to redact: most of a line's values recur on every
        # line (methods, paths, model and provider names), and a set lookup is cheaper than
        # looking for every secret in them again. Only clean texts are kept, never a secret.
        self._clean: set[str] = set()

    def text(self, value: str) -> str:
        if value in self._clean:
            return value
        redacted = value
        for secret in self._values:
            if secret in redacted:
                redacted = redacted.replace(secret, REDACTED)
        if _may_hold_credential(redacted):
            redacted = _SECRET_PATTERN.sub(self._substitute, redacted)
        if redacted == value and len(value) <= _CLEAN_TEXT_MAX_LENGTH:
            if len(self._clean) >= _CLEAN_TEXTS_KEPT:  # unique values (ids, times) pass too
                self._clean.clear()
            self._clean.add(value)
        return redacted

    @staticmethod
    def _substitute(match: re.Match[str]) -> str:
        bearer = match.group("bearer")
        return f"{bearer}{REDACTED}" if bearer else REDACTED

    def value(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return self.mapping(value)
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        return value

    def mapping(self, mapping: Mapping[Any, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, item in mapping.items():
            if isinstance(key, str) and _is_sensitive_key(key) and item:
                out[key] = REDACTED
            else:
                out[key] = self.value(item)
        return out

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        for key, item in event_dict.items():
            if type(item) in _PLAIN:  # most fields of a line: nothing to look at
                continue
            if isinstance(item, str):
                if _is_sensitive_key(key) and item:
                    event_dict[key] = REDACTED
                else:
                    event_dict[key] = self.text(item)
            elif isinstance(item, Mapping | list | tuple | bytes):
                event_dict[key] = REDACTED if _is_sensitive_key(key) and item else self.value(item)
        return event_dict


class _UtcTimestamp:
    """The ``timestamp`` of every line, as structlog's ``TimeStamper(fmt="iso", utc=True)``
    writes it (``2026-01-02T03:04:05.123456Z``; no fraction on a whole second), with the
    date and time of day formatted once per second instead of once per line."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")  # (second, its formatted date and time)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        second, micros = divmod(time.time_ns() // 1000, 1_000_000)
        cached_second, prefix = self._cached  # one tuple: threads never mix two seconds
        if second != cached_second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._cached = (second, prefix)
        event_dict["timestamp"] = f"{prefix}.{micros:06d}Z" if micros else f"{prefix}Z"
        return event_dict


class _Stderr:
    """Whatever `sys.stderr` is at write time (test runners and daemons swap it).

    structlog's and the stdlib's writers each hold their own lock; this one lock
    keeps a line from one thread from landing inside another thread's line.
    """

    _lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _orjson_dumps(obj: MutableMapping[str, Any], **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(
    *,
    level: str = "INFO",
    json: bool = True,
    secret_values: Iterable[str] = (),
    stream: TextIO | None = None,
) -> Redactor:
    """Configure structlog and the stdlib root logger; returns the redactor in use."""
    redactor = Redactor(secret_values)
    out: Any = stream if stream is not None else _Stderr()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _UtcTimestamp(),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric_level = logging.getLevelNamesMapping()[level]
    processors = [*shared, renderer]
    logger_factory = structlog.WriteLoggerFactory(out)  # one write per line
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )
    global _configured
    _configured = _Chain(structlog.get_config(), logger_factory(), numeric_level <= logging.INFO)

    # The stdlib's loggers (uvicorn, sqlalchemy, alembic) go through the same chain.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "sqlalchemy"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers.clear()
        lib_logger.propagate = True
    # OneFlow writes its own access line per request; uvicorn's would be a second one.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    return redactor


#: ``info_line(event, fields)``: what ``logger.info(event, **fields)`` writes. The caller gives
#: up ``fields`` (it becomes the line's event dict).
InfoLine = Callable[[str, dict[str, Any]], None]


class _Chain:
    """The chain `configure_logging` installed, run without structlog's bound logger.

    A bound logger's ``info`` copies its context, merges in the keywords, runs the processors
    and hands the rendered line to its logger, through a few layers of calls; for a line
    written on every request (the access line) those layers cost about as much as rendering
    it. This runs the same processors on the same event dict, in the same order, and writes
    the line through the same logger, so the line is the same.
    """

    def __init__(self, config: dict[str, Any], logger: WrappedLogger, info: bool) -> None:
        self._config = config
        # The list itself, not a copy: structlog's `capture_logs` swaps its contents.
        self._steps: list[Processor] = config["processors"]
        self._logger = logger
        self._info = info

    def installed(self) -> bool:
        """Whether structlog's configuration is still the one this chain was built from."""
        config = structlog.get_config()
        mine = self._config
        return (
            config["processors"] is mine["processors"]
            and config["wrapper_class"] is mine["wrapper_class"]
            and config["logger_factory"] is mine["logger_factory"]
        )

    def info(self, event: str, fields: dict[str, Any]) -> None:
        if not self._info:  # below the configured level, as the filtering logger does
            return
        line: Any = fields
        line["event"] = event
        try:
            for step in self._steps:
                line = step(self._logger, "info", line)
        except structlog.DropEvent:
            return
        self._logger.msg(line)


_configured: _Chain | None = None


def info_line(name: str) -> InfoLine:
    """Info lines of the logger ``name``: through the chain `configure_logging` installed while
    it is structlog's configuration, through a structlog logger otherwise (a test capturing
    logs, say)."""
    chain = _configured
    if chain is not None and chain.installed():
        return chain.info
    logger = structlog.get_logger(name)
    return lambda event, fields: logger.info(event, **fields)


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
