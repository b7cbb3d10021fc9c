"""What the fuel-stats endpoints share in one server process, kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from downlink.sources.fuelstats import config
from downlink.sources.fuelstats.filtering import RulesFile
from downlink.sources.fuelstats.privacy import Sanitizer
from downlink.store.database import Store


@dataclass
class FuelContext:
    """Settings, filtering rules, sanitizer and the report cache of this process."""

    settings: config.FuelSettings
    rules: RulesFile
    sanitizer: Sanitizer
    report_cache: dict[str | None, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: config.FuelSettings) -> FuelContext:
        """Read the rules file and compile the sanitizer's pattern."""
        return cls(settings, RulesFile(settings.rules_path), Sanitizer(settings.secret_pattern))


def source_values(app_settings: Any) -> dict[str, Any]:
    """This source's values in the core settings, when the core carries them."""
    sources = getattr(app_settings, "sources", None) or {}
    extra = getattr(app_settings, "extra", None) or {}
    found = sources.get("fuelstats") or extra.get("fuelstats") or {}
    return dict(found)


def context(conn: HTTPConnection) -> FuelContext:
    """The process's :class:`FuelContext`, built on first use from the app's settings."""
    return context_of_app(conn.app)


def context_of_app(app: Any) -> FuelContext:
    """The app's :class:`FuelContext`, built on first use from its settings."""
    state = app.state
    found: FuelContext | None = getattr(state, "fuelstats", None)
    if found is None:
        values = source_values(getattr(state, "settings", None))
        found = state.fuelstats = FuelContext.build(config.load(values))
    return found


def store(conn: HTTPConnection) -> Store:
    """The app's store."""
    found: Store = conn.app.state.store
    return found
