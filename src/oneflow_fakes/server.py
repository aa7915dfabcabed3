"""Running the fake providers: in a background thread (tests), in the caller's event loop
(async tests, an app's lifespan), or in the foreground (`oneflow fake-providers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, TracebackType
from typing import NoReturn, Self

from aiohttp import web

from oneflow_fakes.app import STATE, create_fake_app
from oneflow_fakes.calls import CallRecord
from oneflow_fakes.config import FakeConfig
from oneflow_fakes.control import base_urls
from oneflow_fakes.faults import FaultRule

__all__ = ["FakeProviders", "serve"]

_SHUTDOWN_TIMEOUT = 1.0


def _new_loop() -> asyncio.AbstractEventLoop:
    if sys.platform != "win32":
        with contextlib.suppress(ImportError):
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _runner(app: web.Application) -> web.AppRunner:
    return web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT
    )


class FakeProviders:
    """All four fake providers on one loopback port.

    ```python
    with FakeProviders() as fake:                  # a thread with its own event loop
        client = openai.OpenAI(base_url=fake.base_urls["openai"], api_key="sk-test")
        fake.add_fault(provider="openai", status=429, retry_after=1, times=1)
        ...
        assert fake.call_count("openai") == 2

    async with FakeProviders() as fake:            # in the running loop (async clients only)
        ...
    ```
    Keyword arguments are `FakeConfig` fields (`api_key`, `latency_ms`, `ttft_ms`, ...).
    """

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: object,
    ) -> None:
        if config is not None and options:
            raise TypeError("pass either a FakeConfig or its fields, not both")
        self.config = config or FakeConfig(**options)  # type: ignore[arg-type]
        self.host = host
        self.port = port
        self.app = create_fake_app(self.config)
        self.state = self.app[STATE]
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the fake providers are not running")
        return f"http://{self.host}:{self.port}"

    @property
    def base_urls(self) -> dict[str, str]:
        """provider -> base URL in its SDK's convention (`.../openai/v1`, `.../anthropic`)."""
        return base_urls(self.url)

    def api_keys(self) -> dict[str, str]:
        key = self.config.api_key or "sk-fake-key"
        return {provider: key for provider in ("openai", "anthropic", "stability", "elevenlabs")}

    def settings_overrides(self) -> dict[str, str]:
        """`Settings` field values pointing the gateway at these fakes:
        `Settings(**fake.settings_overrides())`."""
        out: dict[str, str] = {}
        keys = self.api_keys()
        for provider, url in self.base_urls.items():
            out[f"{provider}_base_url"] = url
            out[f"{provider}_api_key"] = keys[provider]
        return out

    def env(self) -> dict[str, str]:
        """The same as environment variables (`OPENAI_BASE_URL`, ...), for subprocesses."""
        return {name.upper(): value for name, value in self.settings_overrides().items()}

    # ---- faults and calls --------------------------------------------------------------

    def add_fault(self, rule: FaultRule | None = None, **fields: object) -> str:
        """Install a fault rule (a `FaultRule` or its fields); returns its id."""
        if rule is None:
            rule = FaultRule.model_validate(fields)
        elif fields:
            raise TypeError("pass either a FaultRule or its fields, not both")
        return self.state.faults.add(rule)

    def remove_fault(self, rule_id: str) -> bool:
        return self.state.faults.remove(rule_id)

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def faults(self) -> list[dict[str, object]]:
        return self.state.faults.rules()

    def calls(
        self, provider: str | None = None, model: str | None = None, endpoint: str | None = None
    ) -> list[CallRecord]:
        return self.state.calls.calls(provider, model, endpoint)

    def call_count(self, provider: str | None = None, model: str | None = None) -> int:
        return self.state.calls.count(provider, model)

    def reset(self) -> None:
        """Forget every fault rule and every recorded call."""
        self.state.reset()

    # ---- in the running loop -----------------------------------------------------------

    async def start_async(self) -> Self:
        runner = _runner(self.app)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = _bound_port(runner)
        return self

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start_async()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    # ---- in a thread of its own --------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = _new_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-providers", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the fake providers did not start")
        if failure:
            raise RuntimeError("the fake providers failed to start") from failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_SHUTDOWN_TIMEOUT + 10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _bound_port(runner: web.AppRunner) -> int:
    server = runner.server
    for site in runner.sites:
        sockets = getattr(getattr(site, "_server", None), "sockets", None)
        if sockets:
            port: int = sockets[0].getsockname()[1]
            return port
    raise RuntimeError(f"no listening socket ({server!r})")


# ---- the command --------------------------------------------------------------------------


def serve(
    config: FakeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 9100,
    workers: int = 1,
    announce: Callable[[str], None] = print,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve in the foreground until interrupted. With `workers` > 1 the port is shared
    (SO_REUSEPORT) by that many processes, each with its own faults and call log: use one
    worker when steering faults through the control plane. Once listening, the address is
    announced (the port the system chose, for port 0) and `on_listening(port)` is called."""

    def ready(bound: int) -> None:
        root = f"http://{host}:{bound}"
        announce(f"OneFlow fake providers on {root} (control plane: {root}/_fake)")
        for name, url in base_urls(root).items():
            announce(f"{name.upper()}_BASE_URL={url}")
        if on_listening is not None:
            on_listening(bound)

    if workers <= 1:
        _serve_one(config, host, port, False, ready)
        return
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("several workers need SO_REUSEPORT, which this platform lacks")
    signal.signal(signal.SIGTERM, _interrupt)
    # Held (bound, never listening) while the workers run: port 0 becomes one port for all.
    with _reserved(host, port) as bound:
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_serve_one, args=(config, host, bound, True), daemon=True)
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        _wait_until_listening(host, bound, processes)
        ready(bound)
        try:
            for process in processes:
                process.join()
        except KeyboardInterrupt:
            for process in processes:
                process.terminate()
                process.join(5)


@contextlib.contextmanager
def _reserved(host: str, port: int) -> Iterator[int]:
    """`port` (or, for 0, one the system chooses) held by a socket that shares it with the
    workers (SO_REUSEPORT) and takes no connections itself."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        yield int(sock.getsockname()[1])


def _wait_until_listening(
    host: str, port: int, processes: Sequence[multiprocessing.process.BaseProcess]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and all(p.is_alive() for p in processes):
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the fake provider workers did not start")


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _serve_one(
    config: FakeConfig,
    host: str,
    port: int,
    reuse_port: bool,
    ready: Callable[[int], None] | None = None,
) -> None:
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    runner = _runner(create_fake_app(config))
    if sys.platform != "win32":
        loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        loop.run_until_complete(site.start())
        if ready is not None:
            ready(_bound_port(runner))
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()
