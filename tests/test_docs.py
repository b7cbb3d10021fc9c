"""The docs a newcomer reads match the code: settings, commands, routes, README commands."""

from __future__ import annotations

import re
from pathlib import Path

from downlink.app import create_app
from downlink.cli.main import cli
from downlink.cli.settings import settings_markdown
from downlink.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_settings_reference_is_generated_from_the_registry() -> None:
    on_disk = (DOCS / "settings.md").read_text()
    assert on_disk == settings_markdown(), (
        "docs/settings.md is stale: run `downlink settings --markdown > docs/settings.md`"
    )


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    missing = [name for name in cli.commands if f"## `downlink {name}`" not in text]
    assert not missing, f"docs/cli.md lacks sections for: {missing}"


def test_every_route_is_documented(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    skip = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc", "/static"}
    missing = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if path in skip or path.startswith("/static"):
            continue
        if not re.search(r"(?<![\w/.-])" + re.escape(path) + r"(?![\w/{-])", text):
            missing.append(path)
    assert not missing, f"routes not mentioned in docs/: {sorted(set(missing))}"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["pip install . && downlink serve", "./scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec ./scripts/test" in ci
