"""Model allow-lists (which models an API key may call), always as catalog ids.

A list is resolved when it is written (`allow_list`): aliases become the ids they name
(`claude-3-haiku` is `claude-3-haiku-20240307`), duplicates go, and a name the catalog does not
know is refused with the closest ids. Every comparison is then between catalog ids: the pipeline,
`permissions.may_use` and the estimate endpoint compare a model's id with the principal's list.

Lists stored before aliases were resolved on writing are resolved again when a key is loaded
(`stored_allow_list`), against the catalog the process runs with, so an old key listing an alias
keeps working without a data migration; a stored name the catalog no longer knows stays as it is
and matches no model.
"""

from __future__ import annotations

from collections.abc import Iterable

from oneflow_ai.catalog import Catalog
from oneflow_ai.errors import BadRequestError

__all__ = ["allow_list", "stored_allow_list", "unknown_model"]


def unknown_model(catalog: Catalog, name: str, *, param: str) -> BadRequestError:
    """400 for a model name the catalog does not know, naming the closest catalog ids."""
    closest = catalog.closest(name)
    hint = (
        f"closest catalog ids: {', '.join(closest)}"
        if closest
        else "GET /v1/models lists the catalog"
    )
    return BadRequestError(
        f"Unknown model '{name}': not in this gateway's model catalog ({hint})",
        param=param,
        code="model_not_found",
    )


def allow_list(
    catalog: Catalog, names: Iterable[str], *, param: str = "allowed_models"
) -> list[str]:
    """`names` as sorted, distinct catalog ids; 400 naming the first unknown one."""
    ids: set[str] = set()
    for name in names:
        entry = catalog.find(name.strip())
        if entry is None:
            raise unknown_model(catalog, name, param=param)
        ids.add(entry.id)
    return sorted(ids)


def stored_allow_list(catalog: Catalog, names: Iterable[str]) -> frozenset[str]:
    """A stored list as catalog ids; names the catalog does not know are kept unchanged."""
    ids: set[str] = set()
    for name in names:
        entry = catalog.find(name)
        ids.add(entry.id if entry is not None else name)
    return frozenset(ids)
