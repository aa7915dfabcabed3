"""A process that runs requests through a ledger until it is killed (for the kill -9 test).

``python -m tests.support.ledger_load DATABASE_URL PROJECT`` reserves, "streams" for a few
milliseconds, settles, and only then prints ``done <request id>``: the moment its client would
see the request complete. Run it, read its output, ``kill -9`` it, and check the ledger.
"""

from __future__ import annotations

import asyncio
import random
import sys

from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome
from oneflow_ai.storage.database import create_engine

CONCURRENCY = 40
OWNER_TIMEOUT = 3.0
MAINTENANCE = 1.0


async def main(url: str, project: str) -> None:
    pricing = PricingEngine()
    engine = create_engine(url, pool_size=4)
    ledger = Ledger(
        engine,
        pricing,
        LedgerConfig(
            flush_interval=0.002, owner_timeout=OWNER_TIMEOUT, maintenance_interval=MAINTENANCE
        ),
        owner="load-child",
    )
    await ledger.start()
    await ledger.wait_ready()
    print("ready", flush=True)
    cost = pricing.max_cost("gpt-4o", 500, 400)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        try:
            reservation = await ledger.reserve(
                request_id=f"load-{i}", project_id=project, max_cost=cost, provider="openai"
            )
            delivered = 0
            while delivered < 400:  # output tokens arrive, as in a stream
                await asyncio.sleep(random.uniform(0, 0.004))
                delivered += 100
                assert not reservation.would_exceed(delivered)
            await ledger.settle(
                reservation,
                Usage(input_tokens=500, output_tokens=delivered),
                outcome=RequestOutcome(stream=True),
            )
            print(f"done load-{i}", flush=True)  # the client sees the end of the stream now
        finally:
            slots.release()

    i = 0
    while True:
        await slots.acquire()
        asyncio.get_running_loop().create_task(one(i))
        i += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
