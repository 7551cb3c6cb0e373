"""Plans a split: a seeded global shuffle, cut into shard-sized tasks.

Planning touches no image, so the same plan can be executed in this process,
in a pool of workers, or on a cluster.  iNat's JSON lists images class by
class; without the shuffle every shard would hold one or two species and a
training buffer would see almost no negatives.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int  # position of this task in the split's plan
    positions: array  # indices into the split's record sequence, in write order


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


def plan_split(split: str, n: int, seed: int, shard_size: int) -> list[ShardTask]:
    order = shuffled_order(n, seed, split)
    return [
        ShardTask(split, index, order[start : start + shard_size])
        for index, start in enumerate(range(0, n, shard_size))
    ]
