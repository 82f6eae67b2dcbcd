import asyncio

import tether
from tether.testing import VirtualClock


class Billing(tether.Service):
    def __init__(self) -> None:
        self.runs: list[float] = []

    @tether.timer(3600)  # hourly
    async def invoice(self) -> None:
        self.runs.append(asyncio.get_running_loop().time())
        if len(self.runs) == 24:
            self.request_stop()


billing = Billing()
with VirtualClock() as clock:
    clock.run(billing.run())  # a day of timers, in milliseconds of real time

assert billing.runs == [3600.0 * n for n in range(1, 25)]
print(f"{len(billing.runs)} invoices, the last at t={billing.runs[-1]:.0f}s")
