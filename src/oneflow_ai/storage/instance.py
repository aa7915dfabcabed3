"""The stable identity a gateway process runs as: its *instance*.

The ledger marks what a process holds with an owner id unique to that process, and the owner
row names the instance. A process restarted as the same instance (after ``kill -9``, an out of
memory kill, a container restart) therefore knows that every earlier owner of its instance is
dead, and settles what they left at start-up instead of waiting for their heartbeat to expire.

The instance is ``<base>/<slot>``:

- ``base``: ``ONEFLOW_INSTANCE_ID`` when set; else ``HOSTNAME`` (in Kubernetes the pod's
  name, which a restarted container keeps); else the host's name;
- ``slot``: the lowest number no other live process of the same base on this host holds,
  claimed with an exclusive lock on a file in the system's temporary directory. The worker
  processes of one ``oneflow serve --workers N`` get slots 0 to N-1; a worker that dies
  frees its slot (the kernel drops the lock), and the one that replaces it takes it over.

Two hosts must not share a base (``HOSTNAME`` differs per pod and per container).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["Instance", "claim_instance"]

_MAX_SLOTS = 1024


@dataclass
class Instance:
    """The claimed identity; keep it (and its lock) until the process ends."""

    name: str
    _lock: IO[bytes] | None = None

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(OSError):
                lock.close()


def claim_instance(configured: str | None, *, lock_dir: Path | None = None) -> Instance:
    """Claim this process's instance (see the module documentation)."""
    base = configured or os.environ.get("HOSTNAME", "").strip() or socket.gethostname()
    slot, lock = _claim_slot(
        base[:60], lock_dir or Path(tempfile.gettempdir()) / "oneflow-instances"
    )
    return Instance(f"{base[:60]}/{slot}", lock)


def _claim_slot(base: str, lock_dir: Path) -> tuple[int, IO[bytes] | None]:
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): one process per base
        return 0, None
    lock_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(base.encode()).hexdigest()[:16]
    for slot in range(_MAX_SLOTS):
        handle = (lock_dir / f"{digest}-{slot}.lock").open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return slot, handle
    raise RuntimeError(f"more than {_MAX_SLOTS} processes run as instance {base!r}")
