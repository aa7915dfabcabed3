"""Running uvicorn for `oneflow serve`, and telling a script which port the gateway got.

`--port 0` lets the system choose a free port; `--port-file PATH` writes the port the gateway
listens on to PATH (whole, in one step: a reader never sees part of it). A script or a test
starts the gateway that way and reads the port back, instead of guessing a free port that
another process may take before the gateway binds it.

With a port file the socket is bound and listening here, before the gateway starts (one
process, several workers or `--reload` alike); connections made before the application's
start-up has finished wait in the socket's backlog until it has.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import ChangeReload, Multiprocess

__all__ = ["run_uvicorn", "write_port_file"]


def write_port_file(path: Path, port: int) -> None:
    """`port` into `path`, replacing the file in one step."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)


def run_uvicorn(app: str, *, port_file: Path | None = None, **options: Any) -> None:
    """`uvicorn.run(app, **options)`; with `port_file`, the bound port is written there once
    the socket listens."""
    if port_file is None:
        uvicorn.run(app, **options)
        return
    config = uvicorn.Config(app, **options)
    sock = config.bind_socket()
    sock.listen(config.backlog)
    write_port_file(port_file, int(sock.getsockname()[1]))
    server = uvicorn.Server(config)
    try:
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[sock]).run()
        elif config.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if not server.started and not config.should_reload and config.workers == 1:
        sys.exit(STARTUP_FAILURE)
