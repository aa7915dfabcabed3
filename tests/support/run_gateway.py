"""Serve `create_app()` (settings from the environment) on 127.0.0.1, port 0; print the port.

Run by `tests.support.gateway_process` as a separate process, so that tests can start several
gateway replicas that share only the database and Redis, as in production.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
import uvloop

from oneflow_ai.app import create_app


async def main() -> None:
    config = uvicorn.Config(
        create_app(),
        host="127.0.0.1",
        port=0,
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            sys.exit(1)
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await serving


if __name__ == "__main__":
    uvloop.run(main())
