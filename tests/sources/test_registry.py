"""Finding sources: built-in, entry points, DOWNLINK_SOURCES; clashes and bad modules."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from downlink.settings import Settings, SettingsError, from_env
from downlink.sources import registry
from downlink.sources.base import NavEntry, Source, SourceSetting
from downlink.sources.registry import SourceError, check, load

TOY = "tests.sources.toy.source"


@pytest.fixture
def fake_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("fake_source_for_test")
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        del sys.modules[module.__name__]
        load.cache_clear()


def test_the_toy_loads_from_the_setting_after_the_built_in_sources() -> None:
    found = load((TOY,))
    assert found.names[-1] == "toy"
    assert found.names[:-1] == load(()).names
    toy = found.get("toy")
    assert "/toy/items" in found.ingest_paths
    assert NavEntry("toy", "Toy", "/toy") in found.nav
    assert ("toy", toy.migrations) in found.migrations
    assert found.templates["toy"] == toy.templates
    assert "toy_items" in {t for m in found.metadata() for t in m.tables}


def test_a_module_listed_twice_loads_once() -> None:
    assert load((TOY, TOY)).names.count("toy") == 1


def test_none_means_no_extra_source() -> None:
    assert load(("none",)).names == load(()).names


def test_a_missing_module_is_named() -> None:
    with pytest.raises(SourceError, match="no_such_source_module"):
        load(("no_such_source_module",))


def test_a_module_without_source_is_named(fake_module: types.ModuleType) -> None:
    with pytest.raises(SourceError, match="has no `source`"):
        load((fake_module.__name__,))


def test_source_may_be_a_value_or_a_function(fake_module: types.ModuleType) -> None:
    fake_module.source = Source(name="fake", title="Fake")  # type: ignore[attr-defined]
    assert "fake" in load((fake_module.__name__,))
    load.cache_clear()
    fake_module.source = lambda: Source(name="fake2", title="Fake")  # type: ignore[attr-defined]
    assert "fake2" in load((fake_module.__name__,))


def test_source_must_build_a_source(fake_module: types.ModuleType) -> None:
    fake_module.source = lambda: {"name": "x"}  # type: ignore[attr-defined]
    with pytest.raises(SourceError, match="is not a Source"):
        load((fake_module.__name__,))
    load.cache_clear()

    def broken() -> Source:
        raise RuntimeError("boom")

    fake_module.source = broken  # type: ignore[attr-defined]
    with pytest.raises(SourceError, match="failed to build its Source: boom"):
        load((fake_module.__name__,))


@pytest.mark.parametrize(
    ("second", "clash"),
    [
        (Source(name="a", title="A2"), "source 'a'"),
        (Source(name="b", title="B", ingest_paths=frozenset({"/in"})), "ingest path '/in'"),
        (
            Source(name="b", title="B", settings=(SourceSetting("x", "DOWNLINK_A_X", 1, "."),)),
            "setting 'DOWNLINK_A_X'",
        ),
    ],
)
def test_two_sources_cannot_claim_the_same_thing(second: Source, clash: str) -> None:
    first = Source(
        name="a",
        title="A",
        ingest_paths=frozenset({"/in"}),
        settings=(SourceSetting("x", "DOWNLINK_A_X", 1, "."),),
    )
    with pytest.raises(SourceError, match=clash):
        check([first, second])


def test_bad_names_and_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="lowercase slug"):
        check([Source(name="Bad Name", title="x")])
    with pytest.raises(SourceError, match="migrations folder"):
        check([Source(name="a", title="A", migrations=tmp_path / "nope")])
    with pytest.raises(SourceError, match="retention names no setting"):
        check([Source(name="a", title="A", retention="hours")])


def test_source_settings_come_from_the_environment() -> None:
    env = {"DOWNLINK_SOURCES": TOY, "DOWNLINK_TOY_GREETING": "hi"}
    s = from_env({**env, "DOWNLINK_TOY_RETENTION_HOURS": "2"})
    assert s.sources["toy"] == {"greeting": "hi", "retention_hours": 2.0}
    assert s.public()["sources"]["toy"]["greeting"] == "hi"
    # Defaults when not given; the settings object built directly gets them too.
    assert Settings(source_modules=(TOY,)).sources["toy"]["greeting"] == "hello"


def test_bad_source_setting_values_are_refused_with_their_variable() -> None:
    with pytest.raises(SettingsError, match="DOWNLINK_TOY_RETENTION_HOURS"):
        from_env({"DOWNLINK_SOURCES": TOY, "DOWNLINK_TOY_RETENTION_HOURS": "soon"})
    with pytest.raises(SettingsError, match="DOWNLINK_TOY_RETENTION_HOURS: must not be negative"):
        from_env({"DOWNLINK_SOURCES": TOY, "DOWNLINK_TOY_RETENTION_HOURS": "-1"})
    with pytest.raises(SettingsError, match="unknown source 'nope'"):
        Settings(sources={"nope": {}})
    with pytest.raises(SettingsError, match="DOWNLINK_SOURCES: cannot import"):
        from_env({"DOWNLINK_SOURCES": "no_such_source_module"})


def test_replace_drops_the_settings_of_a_source_no_longer_loaded() -> None:
    s = Settings(source_modules=(TOY,))
    assert "toy" not in s.replace(source_modules=()).sources


def test_defaults_cover_every_source_setting() -> None:
    toy = load((TOY,))
    assert registry.defaults(toy)["toy"] == {"greeting": "hello", "retention_hours": 0.0}
