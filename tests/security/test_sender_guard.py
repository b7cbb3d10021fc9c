"""``SenderGuard``'s fast path for known senders, against a store on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from downlink.app import sender_rules
from downlink.security.senders import Proof, SenderGuard
from downlink.settings import Settings
from downlink.store.database import Store

HOME = ("198.51.100.7", 40000)
HOME_TOO = ("198.51.100.200", 40001)
ELSEWHERE = ("203.0.113.9", 40002)


@pytest.fixture
def guard(db_url: str) -> Iterator[SenderGuard]:
    settings = Settings(database_url=db_url, batch_wait_ms=1.0,
                        sender_binding=("clearlinux",))
    store = Store(settings)
    store.start()
    try:
        yield SenderGuard(store, settings, sender_rules(settings.registry))
    finally:
        store.close()


def test_a_cached_sender_is_known_by_its_network_unless_a_secret_comes(
    guard: SenderGuard,
) -> None:
    async def run() -> None:
        assert not guard.known("clearlinux", "m1", False, HOME)  # never seen
        first = (await guard.check("clearlinux", ["m1"], Proof(HOME[0])))["m1"]
        assert first.matches and first.secret  # bound by this post
        assert guard.known("clearlinux", "m1", False, HOME_TOO)  # same /24, cached
        assert not guard.known("clearlinux", "m1", False, ELSEWHERE)
        assert not guard.known("clearlinux", "m1", False, None)
        # A secret sent is compared by check(), never passed by the fast path ...
        assert not guard.known("clearlinux", "m1", True, HOME)
        wrong = await guard.check("clearlinux", ["m1"], Proof(HOME[0], secret="wrong"))
        assert not wrong["m1"].matches and wrong["m1"].reason == "wrong secret"
        # ... and once presented, the binding needs it: the fast path steps aside.
        right = await guard.check("clearlinux", ["m1"], Proof(ELSEWHERE[0], first.secret))
        assert right["m1"].matches
        assert not guard.known("clearlinux", "m1", False, HOME)
        # Other sources, and ids bound to a certificate, are not known here either.
        assert not guard.known("fuelstats", "m1", False, HOME)
        await guard.check("clearlinux", ["m2"], Proof(HOME[0], cert="ab12"))
        assert not guard.known("clearlinux", "m2", False, HOME)

    asyncio.run(run())


def test_the_fast_path_waits_for_the_log_of_changes_after_a_quiet_spell(
    guard: SenderGuard,
) -> None:
    async def run() -> None:
        await guard.check("clearlinux", ["m1"], Proof(HOME[0]))
        assert guard.known("clearlinux", "m1", False, HOME)
        guard._trusted_until = 0.0  # as if the last read was long ago
        assert not guard.known("clearlinux", "m1", False, HOME)
        await guard.check("clearlinux", ["m1"], Proof(HOME[0]))  # waits for a read
        assert guard.known("clearlinux", "m1", False, HOME)

    asyncio.run(run())
