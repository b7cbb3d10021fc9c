"""Plug-in views: loading, validation, a custom template, and the shipped example."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from downlink.app import create_app
from downlink.settings import Settings
from downlink.web.plugins import PluginError, PluginRegistry, PluginView, load_plugins
from tests.web.helpers import load, rec

PLUGIN = """
from pathlib import Path
from sqlalchemy import func, select
from downlink.sources.clearlinux.tables import rollup_daily
from downlink.web.plugins import PluginView

def machines(conn, query):
    t = rollup_daily
    n = conn.execute(query.period.where(select(func.sum(t.c.count)), t)).scalar() or 0
    return {"records": int(n), "echo": query.params.get("echo", "")}

def register(registry):
    registry.add_view(PluginView(name="tally", title="Tally", data=machines,
                                 template="tally.html",
                                 templates_dir=Path(__file__).with_name("tally_templates")))
"""
TEMPLATE = """{% extends "base.html" %}
{% block content %}<p id="tally">{{ data.records }} records; echo={{ data.echo }}</p>{% endblock %}
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"tally_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "tally_templates").mkdir()
    (tmp_path / "tally_templates" / "tally.html").write_text(TEMPLATE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_plugin_module_adds_a_view_a_tab_and_a_twin(
    settings: Settings, plugin_module: str
) -> None:
    example = "downlink.sources.clearlinux.severity_plugin"
    app = create_app(settings.replace(web_plugins=(example, plugin_module)))
    with TestClient(app) as client:
        load(app.state.store, [rec(), rec()])
        page = client.get("/plugins/tally", params={"echo": "<b>hi</b>"})
        assert page.status_code == 200
        assert '<p id="tally">2 records; echo=&lt;b&gt;hi&lt;/b&gt;</p>' in page.text
        assert 'href="/plugins/tally"' in page.text and 'href="/plugins/severity"' in page.text
        assert client.get("/plugins/tally.json").json()["records"] == 2
        sev = client.get("/plugins/severity.json").json()
        assert sum(sev["series"]["1"]) == 2


def test_plugins_can_be_turned_off(settings: Settings) -> None:
    with TestClient(create_app(settings.replace(web_plugins=("none",)))) as client:
        assert client.get("/plugins/severity").status_code == 404
        assert "/plugins/" not in client.get("/records").text


def _noop(conn: object, query: object) -> dict[str, object]:
    return {}


def test_bad_plugins_fail_loudly() -> None:
    with pytest.raises(PluginError, match="cannot import"):
        load_plugins(["no_such_module_anywhere"], use_entry_points=False)
    with pytest.raises(PluginError, match="no register"):
        load_plugins(["json"], use_entry_points=False)
    registry = PluginRegistry()
    registry.add_view(PluginView("one", "One", _noop))
    with pytest.raises(PluginError, match="two plug-in views"):
        registry.add_view(PluginView("one", "One again", _noop))
    with pytest.raises(PluginError, match="slug"):
        registry.add_view(PluginView("Bad Name", "x", _noop))
    with pytest.raises(PluginError, match="templates_dir"):
        registry.add_view(PluginView("tpl", "x", _noop, template="x.html"))


def test_the_example_plugins_old_module_name_still_loads_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="downlink.web.plugins"):
        registry = load_plugins(["downlink.web.example_plugin"], use_entry_points=False)
    assert list(registry.views) == ["severity"]
    assert "downlink.sources.clearlinux.severity_plugin" in caplog.text
