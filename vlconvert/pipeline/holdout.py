"""Held-out species: classes kept out of the training splits but left in the evaluation splits.

With ``--holdout-classes 0.1`` a seeded tenth of the classes never reaches a
training shard, so zero-shot accuracy on them measures transfer to species the
model has not seen.  The manifest lists them; ``vlconvert zeroshot`` reports
seen and unseen classes apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo, Record, take_records


def resolve(spec: str | float | None, classes: Sequence[ClassInfo], seed: int) -> list[int]:
    """The held-out labels: a fraction of the classes chosen by seed, or the classes a file names."""
    if spec in (None, "", 0):
        return []
    try:
        fraction = float(spec)
    except (TypeError, ValueError):
        return _from_file(Path(str(spec)), classes)
    if not 0 < fraction < 1:
        raise VLConvertError(f"--holdout-classes {spec}: a fraction must be between 0 and 1 (or give a file of class names)")
    count = max(1, round(fraction * len(classes)))
    ranked = sorted(classes, key=lambda c: hashlib.blake2b(f"{seed}:holdout:{c.name}".encode(), digest_size=8).digest())
    return sorted(c.label for c in ranked[:count])


def _from_file(path: Path, classes: Sequence[ClassInfo]) -> list[int]:
    if not path.is_file():
        raise VLConvertError(f"--holdout-classes {path}: neither a fraction nor a file of class names")
    by_name = {c.name: c.label for c in classes}
    labels = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name not in by_name:
            raise VLConvertError(f"{path}, line {number}: no class is named {name!r}")
        labels.append(by_name[name])
    return sorted(set(labels))


class Subset(Sequence):
    """The records at ``positions`` of a sequence, still taken in bulk when the sequence can."""

    def __init__(self, records: Sequence[Record], positions: list[int]):
        self._records, self._positions = records, positions

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        return self.take([index])[0]

    def take(self, indices) -> list[Record]:
        return take_records(self._records, [self._positions[i] for i in indices])


def exclude(records: Sequence[Record], held: set[int]) -> tuple[Sequence[Record], int]:
    """The records whose class is not held out, and how many were."""
    labels = records.labels() if hasattr(records, "labels") else [r.label for r in records]
    keep = [i for i, label in enumerate(labels) if label not in held]
    return Subset(records, keep), len(labels) - len(keep)
