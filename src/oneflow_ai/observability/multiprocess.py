"""The multiprocess metrics directory for ``oneflow serve --workers N``.

prometheus-client shares metrics between worker processes through files in the directory named
by ``PROMETHEUS_MULTIPROC_DIR``, chosen before any worker starts; the directory must start empty
(old files would add a previous run's counts). :func:`multiprocess_metrics_dir` prepares it
around the server's run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oneflow_ai.observability.metrics import MULTIPROC_ENV

__all__ = ["clear_metric_files", "multiprocess_metrics_dir"]

_METRIC_FILE_PREFIXES = ("counter_", "gauge_", "histogram_", "summary_")


def clear_metric_files(directory: Path) -> int:
    """Remove prometheus-client's files (``counter_*.db``, ...) from ``directory``; nothing
    else in it is touched. Returns how many were removed."""
    removed = 0
    for path in directory.glob("*.db"):
        if path.name.startswith(_METRIC_FILE_PREFIXES):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def multiprocess_metrics_dir(*, workers: int, enabled: bool = True) -> Iterator[Path | None]:
    """Set up ``PROMETHEUS_MULTIPROC_DIR`` for a run of ``workers`` processes.

    - the operator set it: its old metric files are cleared and the directory is kept;
    - several workers: a fresh temporary directory, removed (and the variable unset) after;
    - one worker and no variable, or metrics off: nothing (metrics stay in the process).
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if not enabled:
        yield None
        return
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        clear_metric_files(directory)
        yield directory
        return
    if workers <= 1:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="oneflow-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
