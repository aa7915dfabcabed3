"""What a gateway needs from the HTTP server under it, checked on uvicorn (`oneflow serve`) and
on granian serving the same app factory: `python -m bench.server_checks [--servers
uvicorn,granian]` (granian when installed).

Each server gets a SQLite database and a prepaid project of its own (`bench/targets.py`), in
front of the fake providers, and is checked for:

    incremental   a stream's events reach the caller as the upstream sends them (not buffered)
    disconnect    a caller that goes away mid-stream closes the upstream stream
    keep-alive    two requests (GET, then a chat completion) on one HTTP/1.1 connection
    413 declared  a Content-Length over MAX_REQUEST_SIZE is refused before the body is read
    413 chunked   a chunked body over the limit is refused without the server holding it
                  (the server's RSS while 64 MiB are sent)
    drain         SIGTERM to the server's process (as a container runtime sends it): /ready
                  turns 503 while requests are still served for SHUTDOWN_DELAY_SECONDS
    stream ended  a stream still open at the end of SHUTDOWN_GRACE_SECONDS ends with the
                  `shutting_down` error event, and is charged
    lifespan      startup and shutdown ran; after the exit no reservation is left open

Prints one line per check and server: ok or FAILED, and what was seen.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.procs import BIN, Server, Start, processes, rss_mib, serve_on_port_0, wait_http
from bench.targets import MODEL, SERVERS, gateway_env, project_key, start_gateway

Check = tuple[bool, str]
LIMIT = 65536
DELAY, GRACE = 2.0, 3.0
STREAM = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "max_tokens": 1000,
    "stream": True,
}


def slow_upstream(fake: str, words: int) -> None:
    """Streamed answers of `words` words, 100 ms between chunks."""
    rule = {"provider": "openai", "chunk_delay_ms": 100, "reply_words": words}
    httpx.delete(f"{fake}/_fake/faults", timeout=5).raise_for_status()  # rules add up
    httpx.post(f"{fake}/_fake/faults", json={"rules": [rule]}, timeout=5).raise_for_status()


def incremental(fake: str, gateway: Server) -> Check:
    slow_upstream(fake, 20)
    started, arrivals = time.monotonic(), []
    with httpx.stream(
        "POST", gateway.chat_url, json=STREAM, headers=gateway.headers, timeout=30
    ) as response:
        for _ in response.iter_raw():
            arrivals.append(time.monotonic() - started)
    spread = arrivals[-1] - arrivals[0] if arrivals else 0.0
    seen = f"{len(arrivals)} reads from {arrivals[0]:.2f} s to {arrivals[-1]:.2f} s"
    return response.status_code == 200 and len(arrivals) >= 5 and spread > 1.0, seen


def disconnect(fake: str, gateway: Server) -> Check:
    slow_upstream(fake, 200)
    httpx.delete(f"{fake}/_fake/calls", timeout=5)
    with httpx.stream(
        "POST", gateway.chat_url, json=STREAM, headers=gateway.headers, timeout=30
    ) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                break
    outcome, deadline = "pending", time.monotonic() + 5
    while outcome == "pending" and time.monotonic() < deadline:
        calls = httpx.get(f"{fake}/_fake/calls?provider=openai", timeout=5).json()["calls"]
        outcome = calls[-1]["outcome"] if calls else "no call"
        time.sleep(0.05)
    return outcome == "client_closed", f"upstream call: {outcome}"


def keep_alive(gateway: Server) -> Check:
    url = httpx.URL(gateway.chat_url)
    conn = http.client.HTTPConnection(url.host, url.port, timeout=10)
    try:
        conn.request("GET", "/health")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        body = json.dumps({**STREAM, "stream": False, "max_tokens": 8})
        headers = {**gateway.headers, "Content-Type": "application/json"}
        conn.request("POST", url.path, body=body, headers=headers)
        second = conn.getresponse()
        second.read()
        same = sock is not None and conn.sock is sock
        seen = f"{first.status}, {second.status}, one connection: {same}"
        return (first.status, second.status) == (200, 200) and same, seen
    finally:
        conn.close()


def declared_too_large(gateway: Server) -> Check:
    url = httpx.URL(gateway.chat_url)
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(_head(gateway, f"Content-Length: {LIMIT * 16}"))  # no body follows
        head, closed = _answer(sock)
    return head.startswith("HTTP/1.1 413") and closed, _summary(head, closed)


def chunked_too_large(gateway: Server) -> Check:
    url = httpx.URL(gateway.chat_url)
    before = peak = rss_mib(gateway.process.pid)
    chunk = b"%x\r\n%s\r\n" % (LIMIT, b" " * LIMIT)
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(_head(gateway, "Transfer-Encoding: chunked"))
        try:
            for i in range(1024):  # 64 MiB
                sock.sendall(chunk)
                if i % 32 == 0:
                    peak = max(peak, rss_mib(gateway.process.pid))
        except OSError:  # refused and closed: the rest is not read
            pass
        head, closed = _answer(sock)
    grew = peak - before
    seen = f"{_summary(head, closed)}; RSS +{grew:.0f} MiB while sending"
    return head.startswith("HTTP/1.1 413") and closed and grew < 16, seen


def _head(gateway: Server, length: str) -> bytes:
    url = httpx.URL(gateway.chat_url)
    headers = "".join(f"{k}: {v}\r\n" for k, v in gateway.headers.items())
    return (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.host}\r\n{headers}"
        f"Content-Type: application/json\r\n{length}\r\n\r\n"
    ).encode()


def _answer(sock: socket.socket) -> tuple[str, bool]:
    """The answer's head, and whether the server closed the connection after it (the unread
    rest of a refused body must not be taken for the next request)."""
    data, closed = b"", False
    sock.settimeout(3)
    try:
        while part := sock.recv(65536):
            data += part
        closed = True
    except ConnectionResetError:
        closed = True
    except OSError:  # still open after 3 s
        pass
    return data.split(b"\r\n\r\n")[0].decode(errors="replace"), closed


def _summary(head: str, closed: bool) -> str:
    status = head.splitlines()[0] if head else "no answer"
    header = "connection: close" in head.lower().splitlines()
    return f"{status}, Connection: close header: {header}, closed: {closed}"


def stop_under_load(fake: str, gateway: Server, database: Path, log: Path) -> dict[str, Check]:
    """SIGTERM to the server's process while a stream longer than delay + grace is open."""
    slow_upstream(fake, 150)  # 15 s
    ended: dict[str, object] = {}

    def long_stream() -> None:
        try:
            with httpx.stream(
                "POST", gateway.chat_url, json=STREAM, headers=gateway.headers, timeout=60
            ) as response:
                ended["request_id"] = response.headers.get("x-oneflow-request-id")
                ended["body"] = b"".join(response.iter_raw()).decode(errors="replace")
        except httpx.HTTPError as exc:
            ended["error"] = f"{type(exc).__name__}: {exc}"
        ended["at"] = time.monotonic()

    reader = threading.Thread(target=long_stream)
    reader.start()
    time.sleep(1.0)
    os.kill(gateway.process.pid, signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(DELAY / 2)
    ready = _status(lambda: httpx.get(gateway.chat_url.replace("/v1/chat/completions", "/ready")))
    body = {**STREAM, "stream": False, "max_tokens": 8}
    chat = _status(lambda: httpx.post(gateway.chat_url, json=body, headers=gateway.headers))
    reader.join(timeout=60)
    gateway.process.wait(timeout=60)
    exited = time.monotonic() - signalled
    stream_end = float(str(ended.get("at", signalled))) - signalled
    text = str(ended.get("body", ended.get("error", "")))
    shut = "shutting_down" in text
    charged = _charged(database, str(ended.get("request_id")))
    open_reservations, reserved = _open_reservations(database)
    logged = log.read_text()
    lifespan = '"event":"startup"' in logged and '"event":"shutdown"' in logged
    return {
        "drain": (
            (ready, chat) == ("503", "200"),
            f"{DELAY / 2:.0f} s after SIGTERM: /ready {ready}, chat {chat}",
        ),
        "stream ended": (
            shut and charged,
            f"stream ended {stream_end:.1f} s after SIGTERM (delay {DELAY:.0f} + grace "
            f"{GRACE:.0f}), shutting_down event: {shut}, charged: {charged}; "
            f"exit after {exited:.1f} s",
        ),
        "lifespan": (
            lifespan and open_reservations == 0 and reserved == 0,
            f"startup and shutdown logged: {lifespan}; after exit {open_reservations} "
            f"reservations open, {reserved} micro-credits reserved",
        ),
    }


def _status(call: Callable[[], httpx.Response]) -> str:
    try:
        return str(call().status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def _charged(database: Path, request_id: str) -> bool:
    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT count(*) FROM ledger_entries WHERE kind = 'charge' AND request_id = ?",
            (request_id,),
        ).fetchone()
    return bool(row[0])


def _open_reservations(database: Path) -> tuple[int, int]:
    with sqlite3.connect(database) as db:
        (count,) = db.execute("SELECT count(*) FROM ledger_reservations").fetchone()
        (reserved,) = db.execute(
            "SELECT coalesce(sum(reserved), 0) FROM ledger_accounts"
        ).fetchone()
    return int(count), int(reserved)


def check(start: Start, fake: str, server: str, workdir: Path) -> dict[str, Check]:
    database = workdir / f"checks-{server}.db"
    settings = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "MAX_REQUEST_SIZE": str(LIMIT),
        "SHUTDOWN_DELAY_SECONDS": str(DELAY),
        "SHUTDOWN_GRACE_SECONDS": str(GRACE),
    }
    env = gateway_env(fake, settings, [])
    key = project_key(env, workdir)
    name = f"checks-{server}"
    gateway = start_gateway(start, name, env, key, workdir, core=None, server=server)
    results = {
        "incremental": incremental(fake, gateway),
        "disconnect": disconnect(fake, gateway),
        "keep-alive": keep_alive(gateway),
        "413 declared": declared_too_large(gateway),
        "413 chunked": chunked_too_large(gateway),
    }
    return results | stop_under_load(fake, gateway, database, workdir / f"{name}.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    servers = [s for s in parser.parse_args().servers.split(",") if s]
    if "granian" in servers and not (BIN / "granian").exists():
        print("skipping granian: not installed (pip install 'granian[uvloop]')", file=sys.stderr)
        servers.remove("granian")
    workdir = Path(tempfile.mkdtemp(prefix="oneflow-server-checks-"))
    failed = False
    with processes() as start:
        argv = [str(BIN / "oneflow"), "fake-providers"]
        _, port = serve_on_port_0(start, argv, workdir / "fakes.log")
        fake = f"http://127.0.0.1:{port}"
        wait_http(f"{fake}/_fake/calls")
        for server in servers:
            for name, (ok, seen) in check(start, fake, server, workdir).items():
                failed |= not ok
                print(f"{server:8} {name:13} {'ok' if ok else 'FAILED':6} {seen}", flush=True)
            httpx.delete(f"{fake}/_fake/faults", timeout=5)
    print(f"logs: {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
