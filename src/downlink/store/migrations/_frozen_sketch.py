"""Frozen copy of ``downlink.store.sketch`` (as of core head 0012) for the rollup
migrations; never edit it (see ``_frozen_tables``).

HyperLogLog sketches: distinct machines of a crash group over any period, in bounded time.

The exact count of machines a crash group hit over a period is a ``COUNT(DISTINCT)``
over one rollup row per (day, group, build, machine): at 10 million records that is
about 2.3 million rows for 60 days and took seconds. A HyperLogLog sketch per
(day, group) and per (day, group, build) summarises the machines of that cell in
``M`` one-byte registers; the registers of any set of cells merge by element-wise
maximum into the sketch of their union, whose cardinality estimate has a relative
standard error of about 1.04 / sqrt(M) (1.6 % for ``P = 12``). Small sets use linear
counting and come out close to exact.

A machine id is hashed to 64 bits (BLAKE2b); the low ``P`` bits choose the register and
the position of the first set bit in the rest is the rank kept there. Sketches are
stored zlib-compressed: most cells have few machines and their registers are nearly
all zero.

Estimating from the hash and its registers (Flajolet et al., 2007; with the linear
counting correction of Heule et al., 2013, for small cardinalities).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

P = 12
M = 1 << P
_REST_BITS = 64 - P
_ALPHA = 0.7213 / (1 + 1.079 / M)

Updates = dict[int, int]  # register index -> rank


@lru_cache(maxsize=65536)
def register_of(machine_id: str) -> tuple[int, int]:
    """Return (register index, rank) of a machine id."""
    h = int.from_bytes(
        hashlib.blake2b(machine_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
        "little",
    )
    rest = h >> P
    return h & (M - 1), _REST_BITS - rest.bit_length() + 1


def add(updates: Updates, machine_id: str) -> None:
    """Record ``machine_id`` in a pending set of register updates."""
    index, rank = register_of(machine_id)
    if updates.get(index, 0) < rank:
        updates[index] = rank


def updates_of(machine_ids: Iterable[str]) -> Updates:
    """Return the register updates that add ``machine_ids`` to a sketch."""
    updates: Updates = {}
    for machine_id in machine_ids:
        add(updates, machine_id)
    return updates


def registers(blob: bytes | None) -> bytearray:
    """Decode a stored sketch (None: the empty sketch)."""
    if blob is None:
        return bytearray(M)
    return bytearray(zlib.decompress(blob))


def apply(regs: bytearray, updates: Updates) -> bool:
    """Raise registers to the pending ranks; return True when anything changed."""
    changed = False
    for index, rank in updates.items():
        if regs[index] < rank:
            regs[index] = rank
            changed = True
    return changed


def encode(regs: bytearray | bytes) -> bytes:
    """Encode registers for storage."""
    return zlib.compress(bytes(regs), 1)


def union(blobs: Iterable[bytes]) -> np.ndarray:
    """Return the registers of the union of stored sketches."""
    out = np.zeros(M, dtype=np.uint8)
    for blob in blobs:
        np.maximum(out, np.frombuffer(zlib.decompress(blob), dtype=np.uint8), out=out)
    return out


def estimate(regs: np.ndarray | bytes | bytearray) -> int:
    """Return the estimated number of distinct machines in a sketch."""
    values = (
        np.frombuffer(bytes(regs), dtype=np.uint8) if not isinstance(regs, np.ndarray) else regs
    )
    zeros = int(np.count_nonzero(values == 0))
    if zeros == M:
        return 0
    raw = _ALPHA * M * M / float(np.sum(np.ldexp(1.0, -values.astype(np.int32))))
    if raw <= 2.5 * M and zeros:
        raw = M * math.log(M / zeros)
    return round(raw)
