"""Keeping running requests' concurrency leases alive.

A lease expires `ttl` seconds after admission unless renewed, so a crashed instance frees
its slots within a minute. A request that runs longer (a long stream) keeps its lease with
a `LeaseKeeper`, started once the request is admitted and stopped before the release:

    keeper = LeaseKeeper(store, plan.req.concurrency, plan.req.lease, plan.req.lease_ttl, on_error=...)
    keeper.start()
    ...
    await keeper.stop()
    await store.settle_and_release(..., plan.req.concurrency, plan.req.lease, ...)

The keepers of one store (and ttl) share one `Renewer`: one background task renewing every
lease held at the time, every ttl/3, instead of a task and a timer per request (most requests
end long before their first renewal). A lease is renewed within ttl/3 of its admission and
then every ttl/3, so two renewals in a row can fail (the store is briefly away) before it
lapses. `sleep` is injectable for tests.
"""
from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable

from .store import Concurrency, Store, StoreError

Sleep = Callable[[float], Awaitable[None]]
BATCH = 64  # renewals in flight at once: a burst of thousands would open as many connections


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
        self._renewer: Renewer | None = None

    @property
    def interval(self) -> float:
        return self.ttl / 3

    def start(self) -> None:
        """Starts renewing in the background (nothing to do without concurrency limits)."""
        if self.concurrency and self._renewer is None:
            self._renewer = Renewer.of(self.store, self.ttl, self._sleep)
            self._renewer.add(self)

    async def stop(self) -> None:
        """Stops renewing. A renewal under way cannot bring a released lease back: `renew`
        only extends a lease that is still there."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.discard(self)

    async def renew(self) -> None:
        try:
            await self.store.renew(self.concurrency, self.lease, self.ttl)
            self.renewals += 1
        except StoreError as e:  # tried again at the next interval
            if self._on_error is not None:
                self._on_error(e)


class Renewer:
    """The one task renewing the leases of one store's running requests, while there are any."""

    _of: weakref.WeakKeyDictionary[Store, dict[float, Renewer]] = weakref.WeakKeyDictionary()

    def __init__(self, ttl: float, sleep: Sleep):
        self.interval = ttl / 3
        self._sleep = sleep
        self._keepers: dict[LeaseKeeper, None] = {}  # an ordered set
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, store: Store, ttl: float, sleep: Sleep) -> Renewer:
        by_ttl = cls._of.setdefault(store, {})
        found = by_ttl.get(ttl)
        if found is None:
            found = by_ttl[ttl] = cls(ttl, sleep)
        return found

    def add(self, keeper: LeaseKeeper) -> None:
        self._keepers[keeper] = None
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.get_loop() is not loop:  # (a store kept past its loop: tests)
            self._task = loop.create_task(self._keep())

    def discard(self, keeper: LeaseKeeper) -> None:
        self._keepers.pop(keeper, None)
        if not self._keepers and self._task is not None:
            # Nothing left to renew: no task outlives the requests (nor the app's shutdown).
            self._task.cancel()
            self._task = None

    async def _keep(self) -> None:
        while True:
            await self._sleep(self.interval)
            held = list(self._keepers)
            for i in range(0, len(held), BATCH):
                await asyncio.gather(*(k.renew() for k in held[i:i + BATCH] if k in self._keepers))
