"""Reserve, settle, release, top up, adjust, expire and crash in random orders (Hypothesis).

A model of the ledger predicts every outcome: which reservation is refused, what each charge
is, what the balance and the budget counters are. After every step the database must agree
with the model exactly, and the invariants must hold: balances equal the sum of entries,
holds equal the sum of active reservations, no balance below zero under prepaid, no hard
budget over its limit, no entry lost and none counted twice.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.budgets import BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.reservation import Reservation, Settlement
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome
from oneflow_ai.errors import InsufficientCreditsError
from oneflow_ai.storage.database import create_engine
from tests.support.ledger import FakeClock, assert_consistent, create_projects, make_ledger

PRICING = PricingEngine()
#: Worst cases to reserve: (input tokens, max output tokens) on gpt-4o.
SHAPES = [(200, 100), (1000, 500), (2000, 2000), (100, 4000)]
TTL = 600.0
OWNER_TIMEOUT = 30.0


@dataclass
class Held:
    reservation: Reservation
    input_tokens: int
    output_limit: int
    settled: Settlement | None = None


@dataclass
class Model:
    balance: int = 0
    reserved: int = 0
    prepaid: bool = False
    budget_limit: int | None = None
    budget_used: int = 0
    budget_reserved: int = 0
    charges: dict[str, int] = field(default_factory=dict)
    records: int = 0


class LedgerMachine(RuleBasedStateMachine):
    database_url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(self.database_url, pool_size=3)
        self.project = f"p{uuid.uuid4().hex[:12]}"
        self.clock = FakeClock()
        self.model = Model()
        self.active: list[Held] = []
        self.settled: list[Held] = []
        self.budget_id: str | None = None
        self.requests = 0
        self.run(create_projects(self.engine, self.project))
        self.ledger = self.start_ledger()

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def start_ledger(self) -> Ledger:
        ledger = make_ledger(
            self.engine,
            clock=self.clock,
            owner=f"owner-{uuid.uuid4().hex[:8]}",
            reservation_ttl=TTL,
            owner_timeout=OWNER_TIMEOUT,
        )
        self.run(ledger.start())
        self.run(ledger.wait_ready())
        return ledger

    def teardown(self) -> None:
        try:
            self.run(self.ledger.close())
            self.run(self.engine.dispose())
        finally:
            self.loop.close()

    # ---- set-up ----------------------------------------------------------------------------

    @initialize(
        prepaid_credits=st.none() | st.integers(min_value=0, max_value=20),
        budget_credits=st.none() | st.integers(min_value=0, max_value=20),
    )
    def configure(self, prepaid_credits: int | None, budget_credits: int | None) -> None:
        if prepaid_credits is not None:
            if prepaid_credits:
                self.run(self.ledger.top_up(self.project, prepaid_credits * 1_000_000))
                self.model.balance += prepaid_credits * 1_000_000
            else:
                self.run(self.ledger.set_mode(self.project, "prepaid"))
            self.model.prepaid = True
        if budget_credits is not None:
            limit = budget_credits * 1_000_000
            [status] = self.run(
                self.ledger.set_budgets(
                    self.project,
                    [
                        BudgetSpec(
                            id="",
                            project_id=self.project,
                            metric=Metric.CREDITS,
                            period=Period.MONTH,
                            limit=limit,
                            mode=BudgetMode.HARD,
                        )
                    ],
                )
            )
            self.budget_id = status.spec.id
            self.model.budget_limit = limit

    # ---- rules -----------------------------------------------------------------------------

    @rule(credits=st.integers(min_value=1, max_value=5))
    def top_up(self, credits: int) -> None:
        """A top-up that keeps the billing mode."""
        self.run(self.ledger.top_up(self.project, credits * 1_000_000, prepaid=False))
        self.model.balance += credits * 1_000_000

    @precondition(lambda self: not self.model.prepaid and not self.active)
    @rule(credits=st.integers(min_value=0, max_value=5))
    def become_prepaid(self, credits: int) -> None:
        """An operator moves a postpaid project to prepaid: it pays what it owes first (a mode
        applies to requests reserved after the change, so none may be in flight)."""
        amount = max(credits * 1_000_000, -self.model.balance, 1)
        self.run(self.ledger.top_up(self.project, amount, prepaid=True))
        self.model.balance += amount
        self.model.prepaid = True

    @rule(amount=st.integers(min_value=-3_000_000, max_value=3_000_000).filter(bool))
    def adjust(self, amount: int) -> None:
        if self.model.prepaid and self.model.balance - self.model.reserved + amount < 0:
            amount = abs(amount)  # an operator does not push a prepaid project below zero
        self.run(self.ledger.adjust(self.project, amount, note="correction"))
        self.model.balance += amount

    @rule(shape=st.sampled_from(SHAPES))
    def reserve(self, shape: tuple[int, int]) -> None:
        input_tokens, max_output = shape
        cost = PRICING.max_cost("gpt-4o", input_tokens, max_output)
        amount = cost.micro_credits
        m = self.model
        refuse = (m.prepaid and m.balance - m.reserved < amount) or (
            m.budget_limit is not None
            and m.budget_used + m.budget_reserved + amount > m.budget_limit
        )
        self.requests += 1
        request_id = f"{self.project}-{self.requests}"
        try:
            reservation = self.run(
                self.ledger.reserve(
                    request_id=request_id,
                    project_id=self.project,
                    max_cost=cost,
                    provider="openai",
                )
            )
        except InsufficientCreditsError:
            assert refuse, "refused although the balance and budget could cover it"
            return
        assert not refuse, "admitted although the balance or budget could not cover it"
        assert reservation.limited == (m.prepaid or m.budget_limit is not None)
        if m.prepaid:
            m.reserved += amount
        if m.budget_limit is not None:
            m.budget_reserved += amount
        self.active.append(Held(reservation, input_tokens, max_output))

    @precondition(lambda self: self.active)
    @rule(data=st.data(), share=st.integers(min_value=0, max_value=100))
    def settle(self, data: st.DataObject, share: int) -> None:
        held = self.active.pop(data.draw(st.integers(0, len(self.active) - 1)))
        output_tokens = held.output_limit * share // 100
        usage = Usage(input_tokens=held.input_tokens, output_tokens=output_tokens)
        settlement = self.run(
            self.ledger.settle(held.reservation, usage, outcome=RequestOutcome(latency_ms=share))
        )
        charged = PRICING.price("gpt-4o", usage).micro_credits
        assert settlement.charged and settlement.cost.micro_credits == charged
        hold = held.reservation.max_micro_credits
        m = self.model
        m.balance -= charged
        m.charges[held.reservation.request_id] = charged
        m.records += 1
        if m.prepaid and held.reservation.account_hold:
            m.reserved -= hold
        if self.budget_id is not None:
            m.budget_used += charged
            if held.reservation.holds:
                m.budget_reserved -= hold
        held.settled = settlement
        self.settled.append(held)

    @precondition(lambda self: self.settled)
    @rule(data=st.data())
    def settle_again(self, data: st.DataObject) -> None:
        held = data.draw(st.sampled_from(self.settled))
        usage = Usage(input_tokens=1, output_tokens=1)  # whatever it says: no second charge
        assert self.run(self.ledger.settle(held.reservation, usage)) is held.settled

    @precondition(lambda self: self.active)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        held = self.active.pop(data.draw(st.integers(0, len(self.active) - 1)))
        self.run(self.ledger.release(held.reservation, RequestOutcome(status=502)))
        self.forget(held)
        self.model.records += 1

    @precondition(lambda self: self.active)
    @rule()
    def expire(self) -> None:
        """Every active reservation outlives its TTL; reconciliation releases them all."""
        self.clock.advance(seconds=TTL + 1)
        durable = sum(1 for held in self.active if held.reservation.limited)
        assert self.run(self.ledger.reconcile()) == durable
        for held in self.active:
            self.forget(held)
        self.active.clear()

    @rule()
    def crash_and_restart(self) -> None:
        """kill -9, then a new process: the dead one's reservations are released."""
        self.ledger.abandon()
        self.ledger = self.start_ledger()
        self.clock.advance(seconds=OWNER_TIMEOUT + 1)
        durable = sum(1 for held in self.active if held.reservation.limited)
        assert self.run(self.ledger.reconcile()) == durable
        for held in self.active:
            self.forget(held)
        self.active.clear()

    def forget(self, held: Held) -> None:
        """What a released reservation held is given back."""
        hold = held.reservation.max_micro_credits
        if held.reservation.account_hold:
            self.model.reserved -= hold
        if held.reservation.holds:
            self.model.budget_reserved -= hold

    # ---- after every step ------------------------------------------------------------------

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        limits = {self.budget_id: self.model.budget_limit} if self.budget_id else {}
        snaps = self.run(assert_consistent(self.engine, [self.project], hard_limits=limits))  # type: ignore[arg-type]
        snap = snaps[self.project]
        m = self.model
        assert snap.entries_sum == m.balance
        assert (snap.reserved or 0) == m.reserved
        assert snap.charges == m.charges  # none lost, none twice, each exact
        assert snap.reservations == sum(1 for h in self.active if h.reservation.limited)
        assert snap.usage_records == m.records
        if self.budget_id is not None:
            used, reserved = snap.counters.get(self.budget_id, (0, 0))
            assert (used, reserved) == (m.budget_used, m.budget_reserved)
        if m.prepaid:
            assert snap.balance is not None and snap.balance - (snap.reserved or 0) >= 0


@pytest.mark.property
def test_ledger_state_machine(database_url: str) -> None:
    LedgerMachine.database_url = database_url
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_STATEFUL_EXAMPLES", "20")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
