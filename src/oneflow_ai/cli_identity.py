"""`oneflow users|projects` (and the helpers of `oneflow keys`, `cli_keys.py`): identity
administration on the configured database.

These commands act as the operator (a system admin). With `REDIS_URL` set, changes are
announced to every running replica at once; without it, replicas notice within
`API_KEY_CACHE_TTL_SECONDS`. Secrets are printed once, on stdout, and nowhere else.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer

from oneflow_ai.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # imported when a command runs, so `oneflow --help` stays quick
    from oneflow_ai.auth.identity import Identity

__all__ = ["projects_app", "users_app"]

T = TypeVar("T")

users_app = typer.Typer(help="Users: create, list, activate, deactivate.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects: create, list, limits, members.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"oneflow: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None


@asynccontextmanager
async def _identity(settings: Settings) -> AsyncIterator[Identity]:
    from oneflow_ai.auth.identity import Identity
    from oneflow_ai.cli_database import opened_database
    from oneflow_ai.storage.database import create_sessionmaker
    from oneflow_ai.storage.redis import create_redis

    async with opened_database(settings, pool_size=2) as engine:
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        try:
            yield Identity.build(settings, create_sessionmaker(engine), redis)
        finally:
            if redis is not None:
                await redis.aclose()


def _run(action: Callable[[Identity], Awaitable[T]]) -> T:
    """Run `action` on a fresh Identity; errors become one line and exit code 1."""
    from oneflow_ai.cli_database import DatabaseNotReady
    from oneflow_ai.errors import GatewayError

    settings = _settings()

    async def main() -> T:
        async with _identity(settings) as identity:
            return await action(identity)

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        raise _fail(exc.message) from None
    except DatabaseNotReady as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(f"database error: {first}") from None


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value).decode())


def _policy(rpm: int | None, rph: int | None, tpm: int | None) -> Any:
    from oneflow_ai.domain.limits import LimitPolicy

    policy = LimitPolicy(rpm, rph, tpm)
    return None if policy.is_empty else policy


def _master() -> Any:
    from oneflow_ai.auth.principal import MASTER

    return MASTER


Rpm = Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")]
Rph = Annotated[int | None, typer.Option("--rph", min=1, help="Requests per hour.")]
Tpm = Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens per minute.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _clear(option: str, what: str) -> Any:
    return typer.Option(option, help=f"Remove the {what} limit.")


def _limit_changes(
    given: dict[str, int | None],
    cleared: dict[str, bool],
    clear_all: bool,
    *,
    required: bool = True,
) -> Any:
    """What `set-limits` (or `keys update`) changes: the limits given and the ones cleared, the
    others kept (with --clear-all: only the limits given remain); None: no change asked."""
    both = [name for name, value in given.items() if value is not None and cleared[name]]
    if both:
        raise _fail(f"--{both[0]} and --clear-{both[0]} contradict each other", 2)
    if clear_all:
        return _policy(given["rpm"], given["rph"], given["tpm"])
    fields = {"rpm": "requests_per_minute", "rph": "requests_per_hour", "tpm": "tokens_per_minute"}
    changes: dict[str, int | None] = {
        fields[name]: value for name, value in given.items() if value is not None
    }
    changes.update({fields[name]: None for name, clear in cleared.items() if clear})
    if not changes and not required:
        return None
    if not changes:
        raise _fail(
            "nothing to change: --rpm/--rph/--tpm set a limit, --clear-rpm/--clear-rph/"
            "--clear-tpm remove one, --clear-all removes every limit not given",
            2,
        )
    return changes


# ---- users -----------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's email (their sign-in name).")],
    project: Annotated[str, typer.Option(help="Project the user joins.")],
    role: Annotated[str, typer.Option(help="admin, member or viewer.")] = "member",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user (the password is prompted for, or read from stdin)."""
    from oneflow_ai.auth.principal import Role

    try:
        user_role = Role(role)
    except ValueError:
        raise _fail("--role must be admin, member or viewer", 2) from None
    password = _read_password(password_stdin)

    async def action(identity: Identity) -> None:
        view = await identity.users.create(
            _master(), email=email, password=password, project_id=project, role=user_role
        )
        typer.echo(f"{view.user.id} {view.user.email}")

    _run(action)


@users_app.command("list")
def users_list(
    project: Annotated[str | None, typer.Option(help="Only this project's members.")] = None,
    as_json: AsJson = False,
) -> None:
    """List users and their memberships."""
    from oneflow_ai.api.views import user_view

    async def action(identity: Identity) -> None:
        views = await identity.users.list_users(_master(), project_id=project)
        if as_json:
            _print_json([user_view(v) for v in views])
            return
        for v in views:
            roles = ",".join(f"{m.project_id}:{m.role}" for m in v.memberships)
            state = "active" if v.user.active else "inactive"
            typer.echo(f"{v.user.id}  {v.user.email}  {state}  {roles}")

    _run(action)


def _set_active(user_id: str, active: bool) -> None:
    async def action(identity: Identity) -> None:
        view = await identity.users.update(_master(), user_id, active=active)
        typer.echo(f"{view.user.id} {'active' if view.user.active else 'inactive'}")

    _run(action)


@users_app.command("deactivate")
def users_deactivate(user_id: Annotated[str, typer.Argument()]) -> None:
    """Stop a user from signing in or refreshing."""
    _set_active(user_id, False)


@users_app.command("activate")
def users_activate(user_id: Annotated[str, typer.Argument()]) -> None:
    """Let a deactivated user sign in again."""
    _set_active(user_id, True)


@users_app.command("set-password")
def users_set_password(
    user_id: Annotated[str, typer.Argument()],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a user's password."""
    password = _read_password(password_stdin)

    async def action(identity: Identity) -> None:
        await identity.users.update(_master(), user_id, password=password)
        typer.echo(f"{user_id} password set")

    _run(action)


# ---- projects --------------------------------------------------------------------------------


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="The project's name.")],
    project_id: Annotated[
        str | None, typer.Option("--id", help="Its id (default: generated).")
    ] = None,
    rpm: Rpm = None,
    rph: Rph = None,
    tpm: Tpm = None,
) -> None:
    """Create a project (a team owning keys, budgets and usage)."""

    async def action(identity: Identity) -> None:
        project = await identity.projects.create(
            _master(), name=name, project_id=project_id, limits=_policy(rpm, rph, tpm)
        )
        typer.echo(f"{project.id} {project.name}")

    _run(action)


@projects_app.command("list")
def projects_list(as_json: AsJson = False) -> None:
    """List projects."""
    from oneflow_ai.api.views import project_view

    async def action(identity: Identity) -> None:
        projects = await identity.projects.list_projects(_master())
        if as_json:
            _print_json([project_view(p) for p in projects])
            return
        for p in projects:
            limits = orjson.dumps(p.limits).decode() if p.limits else "-"
            typer.echo(f"{p.id}  {p.name}  {limits}")

    _run(action)


@projects_app.command("set-limits")
def projects_set_limits(
    project_id: Annotated[str, typer.Argument()],
    rpm: Rpm = None,
    rph: Rph = None,
    tpm: Tpm = None,
    clear_rpm: Annotated[bool, _clear("--clear-rpm", "requests-per-minute")] = False,
    clear_rph: Annotated[bool, _clear("--clear-rph", "requests-per-hour")] = False,
    clear_tpm: Annotated[bool, _clear("--clear-tpm", "tokens-per-minute")] = False,
    clear_all: Annotated[
        bool, typer.Option("--clear-all", help="Remove every limit not given with it.")
    ] = False,
) -> None:
    """Change a project's aggregate limits: only the ones named change, the others stay."""
    limits = _limit_changes(
        {"rpm": rpm, "rph": rph, "tpm": tpm},
        {"rpm": clear_rpm, "rph": clear_rph, "tpm": clear_tpm},
        clear_all,
    )

    async def action(identity: Identity) -> None:
        project = await identity.projects.update(_master(), project_id, limits=limits)
        typer.echo(f"{project.id} {orjson.dumps(project.limits).decode()}")

    _run(action)


@projects_app.command("add-member")
def projects_add_member(
    project_id: Annotated[str, typer.Argument()],
    user_id: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="admin, member or viewer.")] = "member",
) -> None:
    """Add a user to a project (or change their role there)."""
    from oneflow_ai.auth.principal import Role

    try:
        member_role = Role(role)
    except ValueError:
        raise _fail("--role must be admin, member or viewer", 2) from None

    async def action(identity: Identity) -> None:
        membership = await identity.users.set_membership(
            _master(), project_id=project_id, user_id=user_id, role=member_role
        )
        typer.echo(f"{membership.user_id} {membership.project_id} {membership.role}")

    _run(action)
