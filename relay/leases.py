"""Keeping a running request's concurrency leases alive.

A lease expires `ttl` seconds after admission unless renewed, so a crashed instance frees
its slots within a minute. A request that runs longer (a long stream) keeps its lease with
a `LeaseKeeper`, started once the request is admitted and stopped before the release:

    keeper = LeaseKeeper(store, plan.req.concurrency, plan.req.lease, plan.req.lease_ttl, on_error=...)
    keeper.start()
    ...
    await keeper.stop()
    await store.release(plan.req.concurrency, plan.req.lease)

It renews every ttl/3, so two renewals in a row can fail (the store is briefly away)
before the lease lapses. `sleep` is injectable for tests.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .store import Concurrency, Store, StoreError
from .store.base import stop_task

Sleep = Callable[[float], Awaitable[None]]


class LeaseKeeper:
    def __init__(self, store: Store, concurrency: list[Concurrency], lease: str, ttl: float, *,
                 sleep: Sleep = asyncio.sleep, on_error: Callable[[StoreError], None] | None = None):
        self.store = store
        self.concurrency = concurrency
        self.lease = lease
        self.ttl = ttl
        self.renewals = 0  # renewals the store accepted
        self._sleep = sleep
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        return self.ttl / 3

    def start(self) -> None:
        """Starts renewing in the background (nothing to do without concurrency limits)."""
        if self.concurrency and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep())

    async def stop(self) -> None:
        """Stops renewing. A renewal cut short here cannot bring a released lease back:
        `renew` only extends a lease that is still there."""
        task, self._task = self._task, None
        await stop_task(task)

    async def _keep(self) -> None:
        while True:
            await self._sleep(self.interval)
            try:
                await self.store.renew(self.concurrency, self.lease, self.ttl)
                self.renewals += 1
            except StoreError as e:  # tried again at the next interval
                if self._on_error is not None:
                    self._on_error(e)
