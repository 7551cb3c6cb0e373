"""Held-out species: classes kept out of the training splits but left in the evaluation splits.

With ``--holdout-classes 0.1`` a seeded tenth of the classes never reaches a
training shard, so zero-shot accuracy on them measures transfer to species the
model has not seen.  The manifest lists them; ``vlconvert zeroshot`` reports
seen and unseen classes apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo, Record, record_keys, record_labels, take_records


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
    """The records at ``positions`` (ascending) of a sequence, still taken in bulk when the sequence can.

    Offers ``labels()`` and ``keys()`` as the iNat table does, so holding classes out and
    then balancing them still builds no record."""

    def __init__(self, records: Sequence[Record], positions: list[int]):
        if isinstance(records, Subset):  # one level deep, whatever left records out before
            records, positions = records._records, [records._positions[p] for p in positions]
        self._records, self._positions = records, positions

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        return self.take([index])[0]

    def take(self, indices) -> list[Record]:
        return take_records(self._records, [self._positions[i] for i in indices])

    def labels(self) -> list[int]:
        labels = record_labels(self._records)
        return [labels[p] for p in self._positions]

    def keys(self) -> Iterator[str]:
        wanted = iter(self._positions)
        position = next(wanted, None)
        for index, key in enumerate(record_keys(self._records)):
            if position is None:
                return
            if index == position:
                yield key
                position = next(wanted, None)


def exclude(records: Sequence[Record], held: set[int]) -> tuple[Sequence[Record], int]:
    """The records whose class is not held out, and how many were."""
    labels = record_labels(records)
    keep = [i for i, label in enumerate(labels) if label not in held]
    return Subset(records, keep), len(labels) - len(keep)
