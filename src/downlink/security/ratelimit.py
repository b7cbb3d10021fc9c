"""Per-client-address rate limiting with a token bucket.

Each address gets ``burst`` tokens, refilled at ``rate`` per second; a request takes one,
and a request finding none gets 429 with Retry-After. The table of addresses is
bounded (least recently seen addresses are forgotten first), so a flood of spoofed or
many distinct addresses cannot grow memory without limit. The limit is per server
process: with ``--workers N`` an address may get up to N times the rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from starlette.types import ASGIApp, Receive, Scope, Send

from downlink.security.paths import is_open
from downlink.security.replies import send_error

MAX_ADDRESSES = 65536


class TokenBuckets:
    """One token bucket per key, in a bounded LRU table."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable) -> float:
        """Take a token for ``key``; return 0 on success, else seconds until one is free."""
        now = self.clock()
        buckets = self._buckets
        found = buckets.get(key)
        if found is None:
            tokens = self.burst
        else:
            tokens = min(self.burst, found[0] + (now - found[1]) * self.rate)
            buckets.move_to_end(key)  # the most recently seen, forgotten last
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        buckets[key] = (tokens, now)
        if found is None:
            while len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        return wait


class RateLimit:
    """ASGI middleware answering 429 to addresses over their rate."""

    def __init__(
        self, app: ASGIApp, rate: float, burst: int, buckets: TokenBuckets | None = None
    ) -> None:
        self.app = app
        self.buckets = buckets if buckets is not None else TokenBuckets(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "-")
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            await send_error(send, 429, "Too many requests from this address, retry later",
                             {"Retry-After": retry})
            return
        await self.app(scope, receive, send)
