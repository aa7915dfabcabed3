"""`oneflow ledger …`: the ledger's recovery, by hand, on the configured database.

``oneflow ledger release --instance NAME`` settles what a dead gateway instance left at once,
instead of waiting for a live replica to notice (after ``LEDGER_OWNER_TIMEOUT_SECONDS``) or for
the instance to restart: each interrupted stream is charged what it delivered up to its last
checkpoint, every other reservation is released. ``NAME`` is an instance as the gateway logs
it at start-up (``<base>/<slot>``), or a base alone for all of its slots (a pod's name: every
worker of the pod). Only for an instance that is really gone: a live one would lose its
holds.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Annotated, Any

import typer

from oneflow_ai.cli_billing import _database_error, _settings

__all__ = ["ledger_app"]

ledger_app = typer.Typer(
    help="The ledger's recovery: settle what a dead gateway instance left.", no_args_is_help=True
)


@ledger_app.command("release")
def ledger_release(
    instance: Annotated[
        str,
        typer.Option(
            "--instance",
            help="The dead instance (<base>/<slot>, or a base for all its slots).",
        ),
    ],
) -> None:
    """Settle an instance's interrupted streams and release its other reservations now."""
    settings = _settings()
    try:
        names, released, interrupted = asyncio.run(_release(settings, instance.strip()))
    except Exception as exc:
        raise _database_error(exc) from None
    known = ", ".join(names) if names else f"no owner of {instance} is registered"
    typer.echo(
        f"{known}: {released} reservations released, {interrupted} interrupted streams "
        "charged what they delivered"
    )


async def _release(settings: Any, instance: str) -> tuple[list[str], int, int]:
    from oneflow_ai.billing.ledger import Ledger, LedgerConfig
    from oneflow_ai.billing.pricing import PricingEngine
    from oneflow_ai.catalog import load_catalog
    from oneflow_ai.storage import ledger_store
    from oneflow_ai.storage.database import create_engine

    engine = create_engine(settings.effective_database_url, pool_size=1)
    ledger = Ledger(
        engine,
        PricingEngine(load_catalog(settings.catalog_path)),
        LedgerConfig.from_settings(settings),
        owner=f"cli:{socket.gethostname()[:60]}:{os.getpid()}",
    )
    ledger.writer.start()
    try:
        async with engine.connect() as connection:
            names = await ledger_store.instances_named(connection, instance)
        released = interrupted = 0
        for name in names or [instance]:
            done = await ledger.release_instance(name)
            released += done[0]
            interrupted += done[1]
        return names, released, interrupted
    finally:
        await ledger.writer.close()
        await engine.dispose()
