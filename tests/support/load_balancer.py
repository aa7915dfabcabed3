"""HAProxy as the local load balancer in front of gateway replicas (`make cluster`, the cluster
test). Debian: `apt-get install haproxy`; nothing is started system-wide, the server runs in
the foreground from a directory of its own.

It does what a production load balancer (or Kubernetes' Service, from the readiness probe)
does: round robin over the replicas that are ready, each checked on `GET /ready` (every second
by default, 3 s to answer; out after three failures, back after one success, as Kubernetes'
readiness probe would, only faster). A connection a replica
refuses is retried on another (nothing was sent yet); a request already sent to a replica
that dies is never sent again: the caller gets a 502. With no replica ready, HAProxy answers
503 itself.
Streams pass through as they come. Each answer names the replica that answered or was tried
(`X-OneFlow-Upstream: host:port`), and `access.log` has a JSON line per request.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.gateway_process import stop_process
from tests.support.ports import guessed_free_port

__all__ = ["UPSTREAM_HEADER", "HAProxy", "haproxy_config", "http_status"]

#: The response header naming the replica (host:port) that answered, or was tried last.
UPSTREAM_HEADER = "x-oneflow-upstream"

_CONFIG = """\
global
    maxconn 4096
    log stdout format raw local0

defaults
    mode http
    log global
    option http-server-close
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-request 30s
    retries 3
    option redispatch 1
    retry-on conn-failure

frontend oneflow
    bind 127.0.0.1:{port}
    http-request capture req.hdr(X-Request-ID) len 80
    log-format '{log_format}'
    http-after-response set-header X-OneFlow-Upstream "%si:%sp"
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    timeout check 3s
    default-server check inter {check_ms} fall 3 rise 1
{servers}
"""


#: One JSON line per request: its X-Request-ID, status, the replica, retries, how it ended.
_LOG_FORMAT = (
    '{"request_id":"%[capture.req.hdr(0)]","status":%ST,"upstream":"%si:%sp",'
    '"retries":"%rc","termination":"%ts","ms":%Tt}'
)


def http_status(url: str) -> int:
    """The status of `GET url`, 0 if nothing answered (urllib: nothing in the test logs)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def haproxy_config(port: int, upstreams: list[int], check_ms: int = 1000) -> str:
    """The whole configuration: one backend of `upstreams` (ports on 127.0.0.1), each checked
    every `check_ms` milliseconds."""
    servers = "\n".join(f"    server replica-{i} 127.0.0.1:{p}" for i, p in enumerate(upstreams))
    return _CONFIG.format(port=port, servers=servers, check_ms=check_ms, log_format=_LOG_FORMAT)


class HAProxy:
    """HAProxy on 127.0.0.1:`port` in front of the replicas on `upstreams`."""

    def __init__(
        self,
        upstreams: list[int],
        port: int | None = None,
        directory: Path | None = None,
        check_ms: int = 1000,
    ) -> None:
        """`directory` (kept afterwards) holds the configuration and the log; by default a
        temporary one, removed by `remove()`."""
        if shutil.which("haproxy") is None:
            raise RuntimeError("HAProxy is not installed (Debian: apt-get install haproxy)")
        self._own = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="oneflow-haproxy-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or guessed_free_port()
        self.config_path = self.directory / "haproxy.cfg"
        self.config_path.write_text(haproxy_config(self.port, upstreams, check_ms))
        self._log = self.access_log.open("w")
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"HAProxy did not start: {self._tail()}")
            if http_status(f"{self.url}/ready") == 200:  # a replica HAProxy sees as ready
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica ready behind HAProxy: {self._tail()}")
            time.sleep(0.05)

    def _tail(self) -> str:
        return self.access_log.read_text()[-2000:]

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()

    def remove(self) -> None:
        self.stop()
        if self._own:
            shutil.rmtree(self.directory, ignore_errors=True)
