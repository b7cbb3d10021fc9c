"""Privacy: what is removed from fuel-stats data before it is stored.

* Secrets: every value whose key matches the configured pattern (passwords, tokens,
  keys, credentials by default), at any depth of an action log's body or an
  installation structure, is replaced by :data:`REDACTED` (the key stays, so reports
  still see that the setting exists).
* Contact details: ``user_information`` keeps its ``company``, ``email`` and ``name``
  only when the sender opted in (``contact_info_provided`` true); otherwise they are
  dropped. :func:`without_contact` removes them later, for a purge on request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<sanitized>"

# Key names holding secrets in Fuel's cluster attributes and nailgun request/response
# data: admin_password, db_password, admin_token, metering_secret, private_key, ...
DEFAULT_SECRET_KEYS = (
    r"(?:^|[_\-.])(?:pass(?:word|wd)?|secret|token|keys?|credentials?|cert(?:ificate)?)"
    r"(?:$|[_\-.])|password|passphrase|secret"
)

CONTACT_FIELDS = ("company", "email", "name", "phone", "contact")


class Sanitizer:
    """Replaces secret values and drops contact details that were not offered."""

    def __init__(self, secret_keys: str = DEFAULT_SECRET_KEYS) -> None:
        self.pattern = re.compile(secret_keys, re.IGNORECASE)
        self._secret: dict[str, bool] = {}  # keys repeat: one regex search per name

    def is_secret(self, key: object) -> bool:
        """Whether values under ``key`` are replaced."""
        if not isinstance(key, str):
            return False
        found = self._secret.get(key)
        if found is None:
            found = self.pattern.search(key) is not None
            if len(self._secret) < 10_000:
                self._secret[key] = found
        return found

    def scrub(self, value: Any) -> Any:
        """Return ``value`` with the values of secret-named keys replaced, at any depth.

        Parts without a secret are returned as they are (not copied): a body of decoded
        JSON is walked once and only the dicts and lists on the way to a secret are
        new. (Copying every dict was most of an action log's sanitizing.)
        """
        if isinstance(value, dict):
            changed: dict[Any, Any] | None = None
            secret = self._secret
            for key, item in value.items():
                is_secret = secret.get(key) if isinstance(key, str) else False
                if is_secret is None:
                    is_secret = self.is_secret(key)
                if is_secret and _replaceable(item):
                    new = REDACTED
                elif isinstance(item, dict | list):
                    new = self.scrub(item)
                    if new is item:
                        continue
                else:
                    continue
                if changed is None:
                    changed = dict(value)
                changed[key] = new
            return value if changed is None else changed
        if isinstance(value, list):
            copied: list[Any] | None = None
            for index, item in enumerate(value):
                if isinstance(item, dict | list):
                    new = self.scrub(item)
                    if new is not item:
                        if copied is None:
                            copied = list(value)
                        copied[index] = new
            return value if copied is None else copied
        if isinstance(value, Mapping):
            return self.scrub(dict(value))
        return value

    def structure(self, structure: Mapping[str, Any]) -> dict[str, Any]:
        """Sanitize an installation structure (secrets, contacts not opted in)."""
        clean: dict[str, Any] = dict(self.scrub(structure))  # changed below
        info = clean.get("user_information")
        if isinstance(info, Mapping) and info.get("contact_info_provided") is not True:
            clean["user_information"] = _drop_contact(info)
        return clean

    def action_log_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Sanitize an action log's body."""
        clean: dict[str, Any] = self.scrub(body)
        return clean if isinstance(clean, dict) else dict(clean)


def _replaceable(value: Any) -> bool:
    """Scalars and empty containers are replaced; a nested object is walked instead."""
    return not isinstance(value, Mapping | list) or not value


def _drop_contact(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in CONTACT_FIELDS}


def without_contact(structure: Mapping[str, Any]) -> dict[str, Any]:
    """The structure with its contact details removed (and the opt-in withdrawn)."""
    clean = dict(structure)
    info = clean.get("user_information")
    if isinstance(info, Mapping):
        clean["user_information"] = {**_drop_contact(info), "contact_info_provided": False}
    return clean


def contact(structure: Mapping[str, Any]) -> dict[str, Any] | None:
    """The customer contact of an installation, when its sender provided one."""
    info = structure.get("user_information")
    if not isinstance(info, Mapping) or info.get("contact_info_provided") is not True:
        return None
    found = {k: info[k] for k in CONTACT_FIELDS if info.get(k)}
    return found or None
