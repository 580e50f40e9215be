"""digest -> virtual key, each answer (a miss included) held for at most `ttl` seconds, so a
revocation, a disabling or a changed limit made on any instance is seen everywhere within it.
Expiry and rotation grace are checked on every request against the clock, not cached."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from .model import VirtualKey
from .store import KeyStore

TTL = 1.0
MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(self, store: KeyStore, clock: Callable[[], float], ttl: float = TTL, max_entries: int = MAX_ENTRIES):
        self.store, self.clock, self.ttl, self.max_entries = store, clock, ttl, max_entries
        self._entries: OrderedDict[str, tuple[VirtualKey | None, float]] = OrderedDict()

    async def lookup(self, digest: str) -> VirtualKey | None:
        now = self.clock()
        hit = self._entries.get(digest)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        key = await self.store.find(digest)
        self._entries[digest] = (key, now)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return key

    def forget(self, key: VirtualKey) -> None:
        """This instance changed `key`: it sees the change at once (others within the ttl)."""
        for d in key.digests():
            self._entries.pop(d, None)
