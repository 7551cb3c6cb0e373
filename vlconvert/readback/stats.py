"""The statistics the read-back tools report: which percentiles, and head/medium/tail classes.

Lengths and percentiles themselves are computed by :mod:`vlconvert.captions.lengths`,
which ``captions lint`` shares; the class-frequency groups are cut here, and
``vlconvert zeroshot`` groups its accuracy with the same cut.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

FREQUENCY_PERCENTILES = (("min", 0), ("p1", 1), ("p5", 5), ("p25", 25), ("median", 50), ("p75", 75), ("p95", 95),
                         ("p99", 99), ("max", 100))
LENGTH_PERCENTILES = (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))


def frequency_cutoffs(counts: Iterable[int]) -> tuple[int, int] | None:
    """(tail below, head from): the thirds of the counts of classes that have images.

    ``vlconvert zeroshot`` groups its accuracy with the same cut, so a class is 'tail'
    here exactly when it is 'tail' in a zero-shot report.  Classes with no image belong to none."""
    trained = sorted(c for c in counts if c > 0)
    if not trained:
        return None
    return trained[len(trained) // 3], trained[2 * len(trained) // 3]


def frequency_group(count: int, cutoffs: tuple[int, int]) -> str:
    low, high = cutoffs
    return "head" if count >= high else "tail" if count < low else "medium"


def frequency_groups(counts: list[int]) -> tuple[tuple[int, int] | None, dict[str, int]]:
    """(the cutoffs, classes per group) of per-class image counts."""
    cutoffs = frequency_cutoffs(counts)
    if cutoffs is None:
        return None, {}
    groups = Counter(frequency_group(c, cutoffs) for c in counts if c > 0)
    return cutoffs, {name: groups[name] for name in ("head", "medium", "tail")}
