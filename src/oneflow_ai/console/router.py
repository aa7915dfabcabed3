"""Serving the console: `/console` and its pages are `index.html`, `/console/static/...` the
files under `static/`.

The files ship in the package; nothing is built at install time and nothing comes from
another origin. Every answer carries an ETag (a digest of the file) with `Cache-Control:
no-cache`, so browsers revalidate and an upgrade shows at once; the edge middleware adds the
console's Content-Security-Policy (scripts, styles and connections from the gateway itself
only; no inline script or style).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from oneflow_ai.errors import NotFoundError

__all__ = ["CONSOLE_PATH", "STATIC_DIR", "router"]

CONSOLE_PATH: Final = "/console"
STATIC_DIR: Final = Path(__file__).parent / "static"
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}

router = APIRouter(include_in_schema=False)


@cache
def _file(relative: str) -> tuple[bytes, str, str]:
    """The bytes, content type and ETag of a file under ``static/`` (read once)."""
    parts = PurePosixPath(relative).parts
    suffix = PurePosixPath(relative).suffix
    if (
        not parts
        or any(p in ("..", ".") or p.startswith(".") for p in parts)
        or suffix not in _TYPES
    ):
        raise NotFoundError("No such console file")
    path = STATIC_DIR.joinpath(*parts)
    if not path.is_file():
        raise NotFoundError("No such console file")
    data = path.read_bytes()
    return data, _TYPES[suffix], f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def _serve(request: Request, relative: str) -> Response:
    data, media_type, etag = _file(relative)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


@router.get(CONSOLE_PATH)
async def console_index(request: Request) -> Response:
    return _serve(request, "index.html")


@router.get(CONSOLE_PATH + "/static/{path:path}")
async def console_static(request: Request, path: str) -> Response:
    return _serve(request, path)


@router.get(CONSOLE_PATH + "/{page:path}")
async def console_page(request: Request, page: str) -> Response:
    """A page of the console (it routes in the browser): the same `index.html`."""
    if page.endswith("/"):
        return RedirectResponse(f"{CONSOLE_PATH}/{page.rstrip('/')}", status_code=308)
    return _serve(request, "index.html")
