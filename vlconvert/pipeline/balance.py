"""Class balancing of the training splits: ``--min-per-class`` and ``--max-per-class``.

A class with fewer than ``min_per_class`` records in a training split is dropped from
that split; a class with more than ``max_per_class`` keeps that many, chosen by the
seed.  Only training splits are balanced, and the label space does not change (like
held-out classes, :mod:`~vlconvert.pipeline.holdout`): a dropped class keeps its line in
``classnames.txt`` and its images in the evaluation splits, so zero-shot numbers stay
comparable with an unbalanced build.  Records left out this way are counted per split
as ``capped``, so that read = written + errored + held out + capped.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from vlconvert.errors import VLConvertError
from vlconvert.pipeline.holdout import Subset
from vlconvert.records import ClassInfo, Record, record_keys, record_labels


@dataclass(frozen=True)
class SplitBalance:
    """What balancing left out of one training split."""

    dropped: dict[int, int] = field(default_factory=dict)  # label → records, of the classes under min_per_class
    capped_classes: int = 0  # classes over max_per_class
    capped_records: int = 0  # the records the cap left out of them

    @property
    def left_out(self) -> int:
        return sum(self.dropped.values()) + self.capped_records


def check_bounds(min_per_class: int | None, max_per_class: int | None) -> None:
    """Before anything is read: a minimum over the maximum could keep no class."""
    if min_per_class is not None and max_per_class is not None and min_per_class > max_per_class:
        raise VLConvertError(f"--min-per-class {min_per_class} is more than --max-per-class {max_per_class}; "
                             "no class could keep a number of records that meets both")


def balance(records: Sequence[Record], split: str, seed: int, min_per_class: int | None,
            max_per_class: int | None) -> tuple[Sequence[Record], SplitBalance]:
    """The records a training split keeps, and what it left out."""
    labels = record_labels(records)
    counts = Counter(labels)
    dropped = {label: n for label, n in sorted(counts.items()) if min_per_class and n < min_per_class}
    if counts and len(dropped) == len(counts):
        raise VLConvertError(f"--min-per-class {min_per_class} drops every class of split {split!r} (the largest has "
                             f"{max(counts.values())} records); nothing would be left to train on")
    over = {label for label, n in counts.items() if max_per_class and n > max_per_class and label not in dropped}
    if not dropped and not over:
        return records, SplitBalance()
    chosen = _chosen(records, labels, over, max_per_class, seed, split) if over else set()
    keep = [i for i, label in enumerate(labels) if label not in dropped and (label not in over or i in chosen)]
    capped = sum(counts[label] for label in over) - len(over) * (max_per_class or 0)
    return Subset(records, keep), SplitBalance(dropped, len(over), capped)


def _chosen(records: Sequence[Record], labels: list[int], over: set[int], cap: int, seed: int, split: str) -> set[int]:
    """The positions each class over the cap keeps: its ``cap`` records of lowest keyed hash.

    A record's rank depends only on the seed, the split and its own key, so which records a
    class keeps does not depend on how the dataset lists them or on any other class, and a
    bounded heap per class keeps memory at what is kept, not at the split's size."""
    prefix = hashlib.blake2b(f"vlconvert:{seed}:max-per-class:{split}:".encode(), digest_size=8)
    heaps: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for position, (label, key) in enumerate(zip(labels, record_keys(records))):
        if label not in over:
            continue
        digest = prefix.copy()
        digest.update(key.encode())
        # The heap holds the class's lowest (rank, position) pairs, negated so its top is the one to give up.
        entry = (-int.from_bytes(digest.digest(), "big"), -position)
        heap = heaps[label]
        if len(heap) < cap:
            heapq.heappush(heap, entry)
        else:
            heapq.heappushpop(heap, entry)
    return {-position for heap in heaps.values() for _, position in heap}


def describe(min_per_class: int | None, max_per_class: int | None, classes: Sequence[ClassInfo],
             by_split: dict[str, SplitBalance]) -> dict | None:
    """The manifest's ``balance`` entry (docs/output-format.md); None when neither option is set."""
    if min_per_class is None and max_per_class is None:
        return None
    return {
        "min_per_class": min_per_class,
        "max_per_class": max_per_class,
        "kept_out_of": list(by_split),
        "splits": {split: {
            "dropped_classes": [{"label": label, "name": classes[label].name, "records": n} for label, n in b.dropped.items()],
            "dropped_records": sum(b.dropped.values()),
            "capped_classes": b.capped_classes,
            "capped_records": b.capped_records,
        } for split, b in by_split.items()},
    }

