"""Instance identities: ONEFLOW_INSTANCE_ID (or HOSTNAME, or the host's name) and a slot that no
other live process of the same base holds; a process that goes away frees its slot for the one
that replaces it."""

from __future__ import annotations

from pathlib import Path

import pytest

from oneflow_ai.storage.instance import claim_instance


def test_each_process_of_a_base_gets_a_slot_and_a_replacement_takes_over(tmp_path: Path) -> None:
    first = claim_instance("pod-a", lock_dir=tmp_path)
    second = claim_instance("pod-a", lock_dir=tmp_path)
    other = claim_instance("pod-b", lock_dir=tmp_path)
    assert (first.name, second.name, other.name) == ("pod-a/0", "pod-a/1", "pod-b/0")
    first.release()  # the worker died: the kernel dropped its lock
    replacement = claim_instance("pod-a", lock_dir=tmp_path)
    assert replacement.name == "pod-a/0"
    for instance in (second, other, replacement):
        instance.release()


def test_the_base_is_the_hostname_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTNAME", "oneflow-ai-7d9f8-x2k4q")
    named = claim_instance(None, lock_dir=tmp_path)
    configured = claim_instance("replica-3", lock_dir=tmp_path)
    assert (named.name, configured.name) == ("oneflow-ai-7d9f8-x2k4q/0", "replica-3/0")
    named.release()
    configured.release()
