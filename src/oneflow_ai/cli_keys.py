"""`oneflow keys`: create, list, update, rotate, revoke API keys on the configured database.

These commands act as the operator (a system admin). With `REDIS_URL` set, edits, revocations
and rotations are announced to every running replica at once; without it, replicas notice
within `API_KEY_CACHE_TTL_SECONDS`. Secrets are printed once, on stdout, and nowhere else.

Scheduled rotation: run `oneflow keys rotate-due` from cron (or a Kubernetes CronJob), e.g. daily.
It rotates every live key older than `API_KEY_MAX_AGE_DAYS` and prints one JSON line per new key
(with the secret) for the job to hand to the secret store the key's users read from; the old key
keeps working for `API_KEY_ROTATION_GRACE_HOURS`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from oneflow_ai.cli_identity import (
    AsJson,
    Rph,
    Rpm,
    Tpm,
    _clear,
    _fail,
    _limit_changes,
    _master,
    _policy,
    _print_json,
    _run,
    _settings,
)

if TYPE_CHECKING:  # imported when a command runs, so `oneflow --help` stays quick
    from oneflow_ai.auth.identity import Identity

__all__ = ["keys_app"]

keys_app = typer.Typer(help="API keys: create, list, update, rotate, revoke.", no_args_is_help=True)


# ---- keys ------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="Project the key belongs to.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")],
    role: Annotated[str, typer.Option(help="admin, member or viewer.")] = "member",
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expire after N days.")] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Allow only this model (repeatable).")
    ] = None,
    rpm: Rpm = None,
    rph: Rph = None,
    tpm: Tpm = None,
    unlimited: Annotated[bool, typer.Option(help="Exempt from rate limits (admin keys).")] = False,
    as_json: AsJson = False,
) -> None:
    """Create an API key and print it (the only time it is shown)."""
    from oneflow_ai.api.views import key_view
    from oneflow_ai.auth.principal import Role

    try:
        key_role = Role(role)
    except ValueError:
        raise _fail("--role must be admin, member or viewer", 2) from None

    async def action(identity: Identity) -> None:
        expires = identity.clock() + timedelta(days=expires_in_days) if expires_in_days else None
        new = await identity.keys.create(
            _master(),
            project_id=project,
            name=name,
            role=key_role,
            expires_at=expires,
            allowed_models=model or None,
            limits=_policy(rpm, rph, tpm),
            unlimited=unlimited,
        )
        if as_json:
            _print_json({**key_view(new.row, identity.clock()), "key": new.key})
        else:
            typer.echo(f"{new.row.id} {new.key}")
            typer.echo("Store this key now: it is not shown again.", err=True)

    _run(action)


@keys_app.command("list")
def keys_list(
    project: Annotated[str | None, typer.Option(help="Only this project's keys.")] = None,
    as_json: AsJson = False,
) -> None:
    """List API keys (never their secrets)."""
    from oneflow_ai.api.views import key_view

    async def action(identity: Identity) -> None:
        keys = await identity.keys.list_keys(_master(), project_id=project)
        now = identity.clock()
        if as_json:
            _print_json([key_view(k, now) for k in keys])
            return
        for k in keys:
            view = key_view(k, now)
            status = view["status"]
            typer.echo(
                f"{k.id}  {view['prefix']}  {k.project_id}  {k.role:<6}  {status:<8}  {k.name}"
            )

    _run(action)


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key to replace.")],
    grace_hours: Annotated[
        float | None, typer.Option(min=0, help="How long the old key keeps working.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Issue a successor key; the old one works until the grace period ends."""
    from oneflow_ai.api.views import key_view

    async def action(identity: Identity) -> None:
        grace = timedelta(hours=grace_hours) if grace_hours is not None else None
        new = await identity.keys.rotate(_master(), key_id, grace=grace)
        if as_json:
            _print_json({**key_view(new.row, identity.clock()), "key": new.key})
        else:
            typer.echo(f"{new.row.id} {new.key}")

    _run(action)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key to revoke.")]) -> None:
    """Revoke a key now (every replica within seconds)."""

    async def action(identity: Identity) -> None:
        key = await identity.keys.revoke(_master(), key_id)
        typer.echo(f"revoked {key.id}")

    _run(action)


@keys_app.command("update")
def keys_update(
    key_id: Annotated[str, typer.Argument(help="The key to change.")],
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Expire N days from now.")
    ] = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expire.")] = False,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Allow only these models (repeatable; replaces the list)."),
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Allow every model (no allow-list).")
    ] = False,
    rpm: Rpm = None,
    rph: Rph = None,
    tpm: Tpm = None,
    clear_rpm: Annotated[bool, _clear("--clear-rpm", "requests-per-minute")] = False,
    clear_rph: Annotated[bool, _clear("--clear-rph", "requests-per-hour")] = False,
    clear_tpm: Annotated[bool, _clear("--clear-tpm", "tokens-per-minute")] = False,
    clear_limits: Annotated[
        bool, typer.Option("--clear-limits", help="Remove every limit not given with it.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Change a key's name, expiry, allowed models or limits (only what is named changes);
    running replicas apply it at once with REDIS_URL set, else within the key cache's TTL."""
    from oneflow_ai.auth.project_manager import UNCHANGED

    if expires_in_days is not None and no_expiry:
        raise _fail("--expires-in-days and --no-expiry contradict each other", 2)
    if model and all_models:
        raise _fail("--model and --all-models contradict each other", 2)
    limits = _limit_changes(
        {"rpm": rpm, "rph": rph, "tpm": tpm},
        {"rpm": clear_rpm, "rph": clear_rph, "tpm": clear_tpm},
        clear_limits,
        required=False,
    )
    if limits is None and not clear_limits:  # (--clear-limits alone: no limits left)
        limits = UNCHANGED
    models: Any = None if all_models else (model or UNCHANGED)
    nothing = name is None and expires_in_days is None and not no_expiry
    if nothing and models is UNCHANGED and limits is UNCHANGED:
        raise _fail(
            "nothing to change: give --name, --expires-in-days/--no-expiry, "
            "--model/--all-models or limits (--rpm ..., --clear-rpm ..., --clear-limits)",
            2,
        )

    async def action(identity: Identity) -> None:
        expires = _new_expiry(identity, expires_in_days, no_expiry)
        key = await identity.keys.update(
            _master(), key_id, name=name, expires_at=expires, allowed_models=models, limits=limits
        )
        _print_updated(key, identity.clock(), as_json)

    _run(action)


def _new_expiry(identity: Identity, expires_in_days: int | None, no_expiry: bool) -> Any:
    """The ``expires_at`` change: N days from now, ``None`` (never) or ``UNCHANGED``."""
    from oneflow_ai.auth.project_manager import UNCHANGED

    if expires_in_days is not None:
        return identity.clock() + timedelta(days=expires_in_days)
    return None if no_expiry else UNCHANGED


def _print_updated(key: Any, now: datetime, as_json: bool) -> None:
    """The changed key: its view as JSON, or one line of id, name, expiry, models, limits."""
    from oneflow_ai.api.views import key_view

    view = key_view(key, now)
    if as_json:
        _print_json(view)
        return
    limits_text = orjson.dumps(key.limits).decode() if key.limits else "-"
    models_text = ",".join(key.allowed_models) if key.allowed_models else "*"
    expiry = key.expires_at.isoformat() if key.expires_at else "never"
    typer.echo(f"{key.id}  {key.name}  {expiry}  {models_text}  {limits_text}")


@keys_app.command("rotate-due")
def keys_rotate_due(
    max_age_days: Annotated[
        int | None, typer.Option(min=1, help="Default: API_KEY_MAX_AGE_DAYS.")
    ] = None,
    grace_hours: Annotated[
        float | None, typer.Option(min=0, help="Default: API_KEY_ROTATION_GRACE_HOURS.")
    ] = None,
) -> None:
    """Rotate every key older than the maximum age; one JSON line per new key (cron)."""
    settings = _settings()
    days = max_age_days if max_age_days is not None else settings.api_key_max_age_days
    if days <= 0:
        raise _fail("scheduled rotation is off (API_KEY_MAX_AGE_DAYS=0); pass --max-age-days", 2)

    async def action(identity: Identity) -> int:
        grace = timedelta(hours=grace_hours) if grace_hours is not None else None
        rotated = await identity.keys.rotate_due(max_age=timedelta(days=days), grace=grace)
        for old, new in rotated:
            _print_json(
                {
                    "rotated": old.id,
                    "id": new.row.id,
                    "project_id": new.row.project_id,
                    "name": new.row.name,
                    "key": new.key,
                    "old_key_valid_until": new.previous_valid_until,
                }
            )
        return len(rotated)

    count = _run(action)
    typer.echo(f"rotated {count} key(s)", err=True)
