"""The ledger's spool: settlements that could not reach the database, kept durably on disk.

When the database cannot be reached, a request that completed must still be charged. Its
settlement (or release, or usage record) is appended to a local file instead, one JSON line
per command, and ``fsync``-ed before the caller is told it is durable: the client that saw its
answer complete can count on the charge, as it could with the database. Appends that arrive
together share one write and one ``fsync`` (on a thread of the spool's own, off the event
loop).

When the database answers again the spool is *replayed*: the file is first renamed aside (new
appends start a fresh file), its commands are applied in the order they were written, and the
renamed file is deleted once every one has committed. Replaying is idempotent, so a crash in
the middle of it (or a replay that fails half-way) only means the same commands are applied
again: a charge is keyed by its request id, a reservation is resolved once, and spooled usage
records are written only if their request has none yet. A last line cut short by a crash was
never acknowledged, and is skipped; a line that cannot be read is kept in ``….rejected`` for an
operator (and logged), never silently dropped.

File: ``<ONEFLOW_DATA_DIR>/ledger-spool-<instance>.jsonl`` (and ``….replaying`` during a
replay); one spool per process, so that the workers of one host never share a file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from oneflow_ai.domain.usage_record import AttemptSummary, RequestRoute, UsageRecord
from oneflow_ai.storage.ledger_commands import (
    EntryRow,
    HoldRow,
    RecordCommand,
    ReleaseCommand,
    SettleCommand,
)

__all__ = ["SettlementSpool", "SpooledCommand", "decode", "encode"]

log = structlog.get_logger("oneflow.storage.spool")

SpooledCommand = SettleCommand | ReleaseCommand | RecordCommand
_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        SettleCommand,
        ReleaseCommand,
        RecordCommand,
        EntryRow,
        HoldRow,
        UsageRecord,
        RequestRoute,
        AttemptSummary,
    )
}


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$": type(value).__name__, **fields}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _typed(value: object) -> object:
    if isinstance(value, list):
        return tuple(_typed(item) for item in value)
    if not isinstance(value, dict):
        return value
    if "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    if "$d" in value:
        return date.fromisoformat(value["$d"])
    cls = _TYPES[value["$"]]
    return cls(**{k: _typed(v) for k, v in value.items() if k != "$"})


def encode(command: SpooledCommand) -> bytes:
    """One spool line (with its newline)."""
    return orjson.dumps(_plain(command)) + b"\n"


def decode(line: bytes) -> SpooledCommand:
    command = _typed(orjson.loads(line))
    if not isinstance(command, SettleCommand | ReleaseCommand | RecordCommand):
        raise ValueError(f"not a spooled ledger command: {type(command).__name__}")
    return command


class SettlementSpool:
    """An append-only, fsync-ed file of ledger commands; see the module documentation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replaying_path = path.with_name(path.name + ".replaying")
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="oneflow-spool")
        self._file: IO[bytes] | None = None
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._replay_lock = asyncio.Lock()
        self.pending = sum(_count_lines(p) for p in (self.replaying_path, self.path))
        self.appended = 0
        self.replayed = 0
        self.on_backlog: Callable[[int], None] | None = None  # told the backlog as it moves

    async def append(self, command: SpooledCommand) -> None:
        """Write ``command``; returns once it is on disk (fsync-ed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((encode(command), future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        await asyncio.shield(future)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await loop.run_in_executor(self._thread, self._write, [line for line, _ in batch])
            except Exception as exc:
                log.error("ledger_spool_write_failed", error=f"{type(exc).__name__}: {exc}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.pending += len(batch)
            self.appended += len(batch)
            self._tell()
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _write(self, lines: list[bytes]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._file = self.path.open("ab")
            if created:
                _fsync_directory(self.path.parent)
        self._file.write(b"".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    async def replay(
        self,
        apply: Callable[[Sequence[SpooledCommand]], Awaitable[None]],
        *,
        routine: bool = False,
    ) -> int:
        """Apply every spooled command in order (``apply`` raises if a batch is not written:
        the rest stays spooled for the next replay); how many were applied. ``routine``: the
        write-behind drain's replays, which are not logged."""
        if not self.pending and not self.replaying_path.exists():
            return 0
        loop = asyncio.get_running_loop()
        done = 0
        async with self._replay_lock:
            while True:
                if self._flushing is not None:
                    await asyncio.gather(self._flushing, return_exceptions=True)
                # Appends and the rotation share the spool's thread: none can land in the file
                # being replayed once it is renamed aside.
                lines = await loop.run_in_executor(self._thread, self._rotate)
                if lines is None:
                    return done
                commands, rejected = _decoded(lines, self.replaying_path)
                for start in range(0, len(commands), 200):
                    await apply(commands[start : start + 200])
                await loop.run_in_executor(self._thread, self._finished, rejected)
                done += len(lines)
                self.pending = max(0, self.pending - len(lines))
                self.replayed += len(lines)
                self._tell()
                if not routine:
                    log.warning("ledger_spool_replayed", commands=len(commands))

    def _tell(self) -> None:
        if self.on_backlog is not None:
            self.on_backlog(self.pending)

    def _rotate(self) -> list[bytes] | None:
        """The lines to replay: those of a replay that did not finish, else the current file
        (renamed aside first); None when there is nothing to replay."""
        if not self.replaying_path.exists():
            if self._file is not None:
                self._file.close()
                self._file = None
            if not self.path.exists() or self.path.stat().st_size == 0:
                return None
            os.replace(self.path, self.replaying_path)
            _fsync_directory(self.path.parent)
        return self.replaying_path.read_bytes().splitlines(keepends=True)

    def _finished(self, rejected: list[bytes]) -> None:
        if rejected:
            with self.path.with_name(self.path.name + ".rejected").open("ab") as kept:
                kept.write(b"".join(rejected))
                kept.flush()
                os.fsync(kept.fileno())
        self.replaying_path.unlink(missing_ok=True)
        _fsync_directory(self.path.parent)

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_file)
        self._thread.shutdown(wait=False)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _decoded(lines: list[bytes], path: Path) -> tuple[list[SpooledCommand], list[bytes]]:
    """The commands, and the lines that could not be read (kept for an operator)."""
    commands: list[SpooledCommand] = []
    rejected: list[bytes] = []
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            log.warning("ledger_spool_torn_line_skipped", path=str(path), line=number)
            continue
        try:
            commands.append(decode(line))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("ledger_spool_bad_line", path=str(path), line=number, error=str(exc))
            rejected.append(line)
    return commands, rejected


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _fsync_directory(directory: Path) -> None:
    """Make a file's creation, rename or removal durable (POSIX; a no-op elsewhere)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
