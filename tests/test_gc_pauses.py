"""The garbage collector in the server: startup frozen once per process, pauses timed."""

from __future__ import annotations

import gc
import os

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from downlink import gc_pauses
from downlink.app import create_app
from downlink.gc_pauses import PauseTimer, freeze_after_startup
from downlink.settings import Settings


def _full_collections(registry: CollectorRegistry) -> tuple[float, float]:
    count = registry.get_sample_value("downlink_gc_pause_seconds_count", {"generation": "2"})
    total = registry.get_sample_value("downlink_gc_pause_seconds_sum", {"generation": "2"})
    return count or 0.0, total or 0.0


def test_the_timer_observes_each_collection_while_installed() -> None:
    registry = CollectorRegistry()
    timer = PauseTimer(registry)
    timer.install()
    timer.install()  # once only
    try:
        gc.collect()
        count, total = _full_collections(registry)
        assert count >= 1 and total > 0
    finally:
        timer.remove()
    gc.collect()
    assert _full_collections(registry)[0] == count


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if this test process had not frozen yet (another test's app may have)."""
    gc.unfreeze()
    monkeypatch.setattr(gc_pauses, "_frozen_by", None)


def test_freezing_happens_once_per_process(unfrozen: None) -> None:
    try:
        frozen = freeze_after_startup()
        assert frozen > 0 and gc.get_freeze_count() == frozen
        garbage: list[object] = []
        garbage.append(garbage)  # a cycle made after the freeze is still collected
        del garbage
        assert freeze_after_startup() == 0
        assert gc.get_freeze_count() == frozen
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()


def test_a_started_app_freezes_its_startup_and_exports_its_pauses(
    settings: Settings, unfrozen: None
) -> None:
    try:
        with TestClient(create_app(settings)) as client:
            assert gc.get_freeze_count() > 0
            registry = client.app.state.store.metrics.registry  # type: ignore[attr-defined]
            assert "downlink_gc_pause_seconds_bucket" in client.get("/metrics").text
            # The freeze's own collection, timed: the timer is installed before it.
            assert _full_collections(registry)[0] >= 1
    finally:
        gc.unfreeze()


def test_the_setting_turns_the_freeze_off(settings: Settings, unfrozen: None) -> None:
    with TestClient(create_app(settings.replace(gc_freeze=False))) as client:
        assert gc.get_freeze_count() == 0
        assert "downlink_gc_pause_seconds_bucket" in client.get("/metrics").text


def test_a_child_forked_after_a_freeze_freezes_what_it_made(unfrozen: None) -> None:
    # The test fork server freezes its preloaded libraries before it forks servers.
    try:
        assert freeze_after_startup() > 0
        made = [[] for _ in range(1000)]  # the child's own startup objects
        pid = os.fork()
        if pid == 0:  # the child: exits 0 if it froze its own objects
            # Against the count just before: frozen objects that are freed leave it.
            before = gc.get_freeze_count()
            frozen = freeze_after_startup()
            os._exit(0 if frozen - before >= len(made) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        gc.unfreeze()
