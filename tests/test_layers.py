"""Imports point one way along the data path: ingest -> pipeline -> store -> api/web -> cli."""

from __future__ import annotations

import ast
import re
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


# What the core may still spell of a source: (module, word), each with its reason.
NAMED_ON_PURPOSE = {
    # records.guilty_id refers to Clear Linux's crash groups: a column of the record
    # log that predates sources (existing databases have it and its foreign key, which
    # the partitioned table re-creates).
    ("store/tables.py", "guilty"),
    ("store/partitions.py", "guilty"),
    # Sample Clear Linux records for tests and benchmarks (test support, not served).
    ("testing/generate.py", "clearlinux"),
}


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string nodes that are docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _spelled(tree: ast.AST) -> tuple[list[str], list[str]]:
    """The module's string literals (docstrings left out) and identifiers."""
    docs = _docstrings(tree)
    strings = [n.value for n in ast.walk(tree)
               if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    names += [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    names += [n.name for n in ast.walk(tree)
              if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    return strings, names


def test_the_core_spells_no_source_table_setting_or_name() -> None:
    """Outside comments and docstrings, no core module spells a source's name (a string
    equal to it, an identifier with it as a word), one of its tables (a word of a
    string) or one of its settings' variables: the core reaches a source only through
    the registry. Migrations are history and may."""
    from downlink.sources import registry

    sources = registry.load((), use_entry_points=False)
    names = set(sources.names)
    tables = {t for s in sources if s.metadata is not None for t in s.metadata.tables}
    envs = {e for _s, st in sources.settings for e in (st.env, *st.old_env)}
    words = re.compile(r"[A-Za-z0-9_]+")
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "sources" or rel.parts[:2] == ("store", "migrations"):
            continue
        strings, idents = _spelled(ast.parse(path.read_text()))
        allowed = {word for module, word in NAMED_ON_PURPOSE if module == rel.as_posix()}
        for text in strings:
            found = set(words.findall(text)) - allowed
            if text in names - allowed:
                bad.append(f"{rel}: the source name {text!r}")
            for hit in sorted(found & tables):
                bad.append(f"{rel}: the table {hit!r} in {text[:60]!r}")
            for hit in sorted(found & envs):
                bad.append(f"{rel}: the setting {hit!r} in {text[:60]!r}")
        for ident in idents:
            for hit in sorted(set(ident.lower().split("_")) & names - allowed):
                bad.append(f"{rel}: the identifier {ident!r} names {hit!r}")
    assert not bad, "\n".join(sorted(set(bad)))
