"""A caller's X-Request-ID is echoed, never trusted as the key of a charge: callers reuse them."""

from __future__ import annotations

import pytest

from tests.support.billing_world import MODEL, billing_world


@pytest.mark.parametrize("prepaid", [False, True], ids=["postpaid", "prepaid"])
async def test_a_reused_caller_request_id_gives_two_charges(
    database_url: str, prepaid: bool
) -> None:
    with billing_world(database_url) as world:
        project, key = world.project()
        if prepaid:  # reservations are written (and keyed) too
            world.top_up(project, 10_000_000)
        client = world.openai(key)
        answers = [
            client.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=20,
                extra_headers={"X-Request-ID": "my-request-1"},
            )
            for prompt in ("First question.", "A second, different question.")
        ]
        assert [a.headers["x-request-id"] for a in answers] == ["my-request-1"] * 2
        ids = [a.headers["x-oneflow-request-id"] for a in answers]
        assert len(set(ids)) == 2 and "my-request-1" not in ids
        usages = [a.parse().usage for a in answers]
        assert all(u is not None and u.completion_tokens > 0 for u in usages)

        snapshot = (await world.consistent(project))[project]
        assert set(snapshot.charges) == set(ids)
        assert all(amount > 0 for amount in snapshot.charges.values())
        assert snapshot.usage_records == 2
        assert snapshot.reservations == snapshot.leases  # the running gateway's lease alone
