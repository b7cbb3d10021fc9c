"""Clear Linux is a registered source like the others: what its Source declares."""

from __future__ import annotations

import pytest

from downlink.security.paths import builtin_ingest_paths
from downlink.settings import SettingsError, from_env
from downlink.sources.registry import load


def test_clear_linux_is_the_first_builtin_source() -> None:
    sources = load(())
    assert sources.names[0] == "clearlinux"
    cl = sources.get("clearlinux")
    assert set(cl.direct_posts) == {"/v2/collector", "/v3/collector", "/"}
    assert cl.ingest_paths == {"/v2/collector", "/v3/collector", "/", "/api/v1/records/bulk"}
    assert [n.href for n in cl.nav] == [
        "/builds", "/stats", "/crashes", "/mce", "/thermal", "/population",
    ]
    # The regroup is a revision of the crash consumer, not a job driver of its own.
    assert not sources.job_drivers
    crashes = next(c for c in cl.consumers if c.name == "clearlinux_crashes")
    assert crashes.revision is not None and crashes.revision.kind == "regroup"
    assert cl.metadata is not None and "guilty" in cl.metadata.tables
    paths = builtin_ingest_paths()
    assert paths.match("POST", "/v2/collector") and paths.match("POST", "/api/v1/records/bulk")
    assert not paths.match("POST", "/api/records")


def test_its_derived_data_comes_from_consumers_not_writer_processors() -> None:
    cl = load(()).get("clearlinux")
    assert [c.name for c in cl.consumers] == ["clearlinux_crashes", "clearlinux_rollups"]
    # No source hook runs inside the insert transaction any more.
    assert not hasattr(cl, "processors") and not hasattr(cl, "make_processors")


def test_its_setting_keeps_its_variable_and_its_check() -> None:
    assert from_env({}).sources["clearlinux"]["crash_exact_machines"] == 20000
    env = {"DOWNLINK_CRASH_EXACT_MACHINES": "7"}
    assert from_env(env).sources["clearlinux"]["crash_exact_machines"] == 7
    with pytest.raises(SettingsError, match="DOWNLINK_CRASH_EXACT_MACHINES: must not be negative"):
        from_env({"DOWNLINK_CRASH_EXACT_MACHINES": "-1"})
