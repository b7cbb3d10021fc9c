"""Imports point one way along the data path: ingest -> pipeline -> store -> api/web -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "downlink"

# For each layer, the layers it must never import.
FORBIDDEN = {
    "store": {"ingest", "pipeline", "api", "web", "cli", "app"},
    "pipeline": {"ingest", "api", "web", "cli", "app"},
    "ingest": {"api", "web", "cli", "app"},
    "api": {"web", "cli", "app"},
    # The pages and the API share downlink.errors and downlink.params, not each other.
    "web": {"api", "cli", "app"},
    "archive": {"ingest", "api", "web", "cli", "app"},
    "analytics": {"ingest", "pipeline", "api", "web", "cli", "app"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("downlink"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("downlink"))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer: str) -> None:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in _imports(path):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not bad, "\n".join(bad)


# The modules of the source seam itself; every other sources/<name>/ is a source.
SEAM = {"base", "registry", "runtime"}


def test_the_core_names_no_source() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "sources":
            continue
        for module in _imports(path):
            parts = module.split(".")
            if len(parts) > 2 and parts[1] == "sources" and parts[2] not in SEAM:
                bad.append(f"{rel} imports {module}")
    assert not bad, "\n".join(bad)


# What a migration may import of the package: frozen copies made for migrations only.
FROZEN = "downlink.store.migrations._frozen_"


def _migrations() -> list[Path]:
    folders = [PACKAGE / "store" / "migrations" / "versions"]
    folders += sorted(PACKAGE.glob("sources/*/migrations"))
    return [path for folder in folders for path in sorted(folder.glob("*.py"))]


def test_migrations_never_import_live_application_code() -> None:
    found = _migrations()
    assert len(found) >= 12  # the core's, at least: the glob found them
    bad = []
    for path in [*found, *sorted((PACKAGE / "store" / "migrations").glob("_frozen_*.py"))]:
        for module in _imports(path):
            if not module.startswith(FROZEN):
                bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not bad, "\n".join(bad)
