"""The machine-check classifications of the patched mcelog that Clear Linux ships.

``org.clearlinux/mce/`` ``corrected``, ``SRAO``, ``SRAR`` and ``UCNA`` are the machine
checks (the MCE page, its rollups and its top machines); ``thermal`` events are counted
apart (the Thermal page). The one definition the rollups and the queries share
(migration ``0017`` keeps a frozen copy, as migrations never import live code).
"""

from __future__ import annotations

MCE_PREFIX = "org.clearlinux/mce/"
MCE_CLASSES = tuple(f"{MCE_PREFIX}{name}" for name in ("corrected", "SRAO", "SRAR", "UCNA"))
THERMAL_CLASS = f"{MCE_PREFIX}thermal"

# Where each class sits on the records' severity scale (1 low ... 4 critical), so that
# the MCE and Thermal charts take the colours severities take everywhere: the order of
# a machine check's urgency (corrected by the hardware; uncorrected, no action needed;
# software recoverable, action optional; action required), a thermal event a warning.
CLASS_SEVERITY = {"corrected": 1, "UCNA": 2, "SRAO": 3, "SRAR": 4, "thermal": 2}
