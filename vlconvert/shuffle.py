"""The seeded order a split's records are written in: the build's plan and ``captions lint``'s samples share it.

iNat's JSON lists images class by class; without the shuffle every shard would hold
one or two species and a training buffer would see almost no negatives.
"""

from __future__ import annotations

import random
from array import array


def shuffled_order(n: int, seed: int, split: str) -> array:
    """A permutation of range(n) that depends only on (n, seed, split).

    Python guarantees the sequence of ``Random.random()`` for a given str seed
    across versions (``shuffle`` has no such promise), so the Fisher-Yates walk
    is written out here.
    """
    rng = random.Random(f"vlconvert:{seed}:{split}")
    order = array("q", range(n))
    for i in range(n - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        order[i], order[j] = order[j], order[i]
    return order
