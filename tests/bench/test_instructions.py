"""`bench/instructions.py`: reading callgrind's count and the per-request arithmetic."""

from __future__ import annotations

import pytest
from bench.instructions import executed, per_request


def test_the_count_is_read_from_callgrinds_summary() -> None:
    output = (
        "==4242== Callgrind, a call-graph generating cache profiler\n"
        "==4242== Events    : Ir\n"
        "==4242== Collected : 11595891862\n"
        "==4242==\n"
        "==4242== I   refs:      11,595,891,862\n"
    )
    assert executed(output) == 11_595_891_862


def test_no_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="no instruction count"):
        executed("valgrind: command failed\n")


def test_start_up_cancels_out() -> None:
    start_up = 9_000_000_000
    assert per_request((200, start_up + 200 * 1_861_078), (700, start_up + 700 * 1_861_078)) == (
        1_861_078
    )


def test_the_long_run_must_be_longer() -> None:
    with pytest.raises(ValueError, match="long run"):
        per_request((700, 2), (200, 1))
