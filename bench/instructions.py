"""Instructions the gateway's own code executes per request, counted exactly (callgrind).

Runs `bench/gateway_cpu.py` (the ASGI app called directly, an in-memory upstream, the full
pipeline) under valgrind's callgrind twice, with a short and a long run, and divides the
difference in executed instructions by the difference in requests: start-up, imports and
migrations cancel out. With one request at a time (the default) the count hardly moves with the
machine's load, so two versions of the code compare on a busy machine where timings scatter by
tens of percent. With `--concurrency` above 1 it does move: how many settlements share a ledger
batch depends on timing, and under load the count scatters by a few percent. It counts
instructions, not time: cache misses and the kernel's work (the network, which `make bench`
measures) are not in it. Slow: valgrind runs Python ~50x slower (minutes per count).

Usage: `python -m bench.instructions [--source DIR] [--requests 200,700] [gateway_cpu options]`,
e.g. `python -m bench.instructions --stream`. `--source` counts another copy
of the code (a directory holding `src/` and `bench/`, e.g. from `git archive`) with this
interpreter; the database is the run's own SQLite unless `--database-url` says otherwise (then
give each run an empty database). Needs `valgrind` (`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: callgrind's summary line: ``==123== Collected : 11595891862`` or ``I   refs: 11,595,891,862``.
_TOTAL = re.compile(r"(?:Collected|I\s+refs)\s*:\s*([\d,]+)")


def executed(output: str) -> int:
    """The instructions callgrind reports in ``output`` (its stderr)."""
    found = _TOTAL.findall(output)
    if not found:
        raise ValueError("no instruction count in callgrind's output")
    return int(found[-1].replace(",", ""))


def per_request(short: tuple[int, int], long: tuple[int, int]) -> float:
    """Instructions per request from two ``(requests, instructions)`` runs."""
    (requests_a, count_a), (requests_b, count_b) = short, long
    if requests_b <= requests_a:
        raise ValueError("the long run must have more requests than the short one")
    return (count_b - count_a) / (requests_b - requests_a)


def _count(source: Path, requests: int, options: list[str], workdir: str) -> int:
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",  # the same dict and set layouts in every run
        "PYTHONPATH": os.pathsep.join([str(source / "src"), str(source)]),
    }
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={workdir}/callgrind.{requests}",
        sys.executable,
        "-m",
        "bench.gateway_cpu",
        "--requests",
        str(requests),
        *options,
    ]
    done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench.gateway_cpu failed under callgrind:\n{done.stderr[-2000:]}")
    return executed(done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--requests", default="200,700", help="the short and the long run")
    args, options = parser.parse_known_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind: apt-get install valgrind")
    short, long = (int(n) for n in args.requests.split(","))
    source = Path(args.source).resolve()
    with tempfile.TemporaryDirectory() as workdir:
        counts = [(n, _count(source, n, options, workdir)) for n in (short, long)]
    print(
        f"{source} {' '.join(options)}: "
        f"{per_request(counts[0], counts[1]):,.0f} instructions per request"
    )


if __name__ == "__main__":
    main()
