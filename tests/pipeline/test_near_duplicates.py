"""The near-duplicate search behind ``vlconvert dedup``: every pair within the threshold, none twice, against brute force.

Each search runs under its own cost-model plan and also under forced plans (brute force, and multi-index hashing with
each number of chunks that is cheap enough at that threshold), so every chunking's pigeonhole bound is checked, not
only the one the model picks for a set this small.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from vlconvert.pipeline import near_duplicates as nd
from vlconvert.pipeline.near_duplicates import duplicates_to_drop, matches_in, near_pairs, pairs_within, popcount64

TOP = np.uint64(1 << 63)


def flips(rng: np.random.Generator, distance: int) -> np.uint64:
    return np.uint64(sum(1 << int(b) for b in rng.choice(64, distance, replace=False)))


def planted_set(seed: int, n: int = 1200, max_distance: int = 14):
    """Random hashes, near copies at every distance 0..max_distance, a cluster of blanks (0) and one of a top-bit value."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    h[:40] |= TOP
    h[300:350] = 0
    h[350:370] = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    h[370] = np.uint64(0xFFFF_FFFF_FFFF_FFFF) ^ np.uint64(0b101)  # distance 2 from that cluster
    planted = []
    for k, d in enumerate(np.repeat(np.arange(max_distance + 1), 6)):
        src, dst = 3 * k, n - 1 - k
        h[dst] = h[src] ^ flips(rng, int(d))
        planted.append((src, dst, int(d)))
    return h, planted


def ref_distances(q, b):
    return np.bitwise_count(np.asarray(q, np.uint64)[:, None] ^ np.asarray(b, np.uint64)[None, :])


def ref_near_pairs(q, b, t):
    d = ref_distances(q, b)
    i, j = np.nonzero(d <= t)
    return i, j, d[i, j]


def ref_pairs_within(h, t):
    d = ref_distances(h, h)
    i, j = np.nonzero((d <= t) & np.triu(np.ones(d.shape, bool), 1))
    return i, j, d[i, j]


def ref_duplicates_to_drop(h, t, keys=None):
    n = len(h)
    rank = np.arange(n) if keys is None else np.argsort(np.lexsort((np.arange(n), keys)))
    d = ref_distances(h, h)
    drop, twin, dist = [], [], []
    for j in range(n):
        earlier = np.flatnonzero((d[j] <= t) & (rank < rank[j]))
        if len(earlier):
            i = earlier[np.argmin(rank[earlier])]
            drop.append(j), twin.append(i), dist.append(d[j, i])
    return np.array(drop, int), np.array(twin, int), np.array(dist, int)


def ref_matches_in(q, b, t):
    d = ref_distances(q, b).astype(int)
    out = ([], [], [])
    for i in range(len(q)):
        within = np.flatnonzero(d[i] <= t)
        if len(within):
            j = within[np.lexsort((within, d[i, within]))[0]]
            for column, value in zip(out, (i, j, d[i, j])):
                column.append(value)
    return tuple(np.array(c, int) for c in out)


def assert_same(got, expected):
    assert len(got) == 3 and all(isinstance(a, np.ndarray) for a in got)
    for g, e in zip(got, expected):
        assert g.shape == np.shape(e) and np.array_equal(g.astype(np.int64), np.asarray(e, np.int64))


def plans(t: int):
    """'model', 'brute', and (chunks, widths of the larger radii) for each number of chunks cheap enough at t."""
    forced = ["model", "brute"]
    for m in range(1, min(t + 1, 6) + 1):
        s = (t + 1) % m
        chunks = nd._chunks(m, t, 64 * s // m)
        if sum(nd._ball(w, r) for _, w, r in chunks) <= 4000:
            forced.append(chunks)
    return forced


@pytest.fixture
def use_plan(monkeypatch):
    def use(plan):
        if plan == "brute":
            monkeypatch.setattr(nd, "_plan", lambda p, i, t: (None, 97))
        elif plan != "model":
            monkeypatch.setattr(nd, "_plan", lambda p, i, t: (plan, 97))  # 97: blocks end mid-set
    return use


@pytest.mark.slow
@pytest.mark.parametrize("t", [0, 2, 8, 10, 12])
def test_every_search_matches_brute_force_under_every_plan(t, use_plan):
    h, planted = planted_set(seed=t)
    q = np.concatenate([h[::7] ^ np.uint64(0b11), h[:300:3], np.zeros(5, np.uint64)])
    expected = ref_near_pairs(q, h, t), ref_pairs_within(h, t), ref_duplicates_to_drop(h, t), ref_matches_in(q, h, t)
    found = set(zip(*expected[1][:2]))
    assert all(((src, dst) in found) == (d <= t) for src, dst, d in planted)  # the planted copies: found iff within t
    for plan in plans(t):
        use_plan(plan)
        assert_same(near_pairs(q, h, t), expected[0])
        assert_same(near_pairs(h, q, t), ref_near_pairs(h, q, t))  # the larger side probes: the swap is undone
        assert_same(pairs_within(h, t), expected[1])
        assert_same(duplicates_to_drop(h, t), expected[2])
        assert_same(matches_in(q, h, t), expected[3])


def test_pairs_are_sorted_and_each_listed_once():
    h, _ = planted_set(seed=1)
    for i, j, _ in (near_pairs(h, h, 8), pairs_within(h, 8)):
        key = i * len(h) + j
        assert np.all(np.diff(key) > 0)
    i, j, d = pairs_within(h, 8)
    assert np.all(i < j) and d.dtype == np.uint8 and i.dtype == j.dtype == np.intp


def test_order_keys_choose_which_item_of_a_cluster_stays():
    h, _ = planted_set(seed=2, n=600)
    keys = np.random.default_rng(2).integers(0, 50, len(h))  # ties broken by index
    for t in (0, 6):
        assert_same(duplicates_to_drop(h, t, order_keys=keys), ref_duplicates_to_drop(h, t, keys))
    drop, twin, _ = duplicates_to_drop(np.zeros(4, np.uint64), 0, order_keys=[3, 1, 2, 1])
    assert drop.tolist() == [0, 2, 3] and twin.tolist() == [1, 1, 1]


def test_keeping_the_items_not_dropped_leaves_no_two_within_the_threshold():
    h, _ = planted_set(seed=3)
    drop, _, _ = duplicates_to_drop(h, 8)
    kept = np.setdiff1d(np.arange(len(h)), drop)
    assert len(pairs_within(h[kept], 8)[0]) == 0 and 0 in kept


def test_a_huge_cluster_of_identical_hashes_costs_linear_time_and_memory():
    rng = np.random.default_rng(4)
    h = rng.integers(0, 2**64, 300_000, dtype=np.uint64)
    h[::2] = 0  # 150,000 blank images: 11 billion pairs, which must never be built
    h[1:2000:2] = np.uint64(0b111)  # and 1,000 at distance 3 from them
    start = time.perf_counter()
    drop, twin, d = duplicates_to_drop(h, 4)
    assert time.perf_counter() - start < 3
    assert len(drop) == 150_000 - 1 + 1000 and np.all(twin[h[drop] == 0] == 0) and np.all(twin[h[drop] == 7] == 0)
    assert set(d[h[drop] == 7].tolist()) == {3}
    q = np.array([0, 0b1001, 0b110, 0b111000], np.uint64)
    assert_same(matches_in(q, h, 2), ([0, 1, 2], [0, 0, 1], [0, 2, 1]))


def test_bit_63_is_a_bit_not_a_sign():
    top = [0xFFFF_FFFF_FFFF_FFFF, 1 << 63, (1 << 63) | 1, 0, 0x7FFF_FFFF_FFFF_FFFF]
    as_uint = np.array(top, np.uint64)
    expected = ref_pairs_within(as_uint, 2)
    assert_same(pairs_within(as_uint, 2), expected)
    assert_same(pairs_within(as_uint.view(np.int64), 2), expected)  # stored signed: the same bits
    assert_same(pairs_within(top, 2), expected)  # Python ints past 2**63
    assert popcount64(as_uint).tolist() == [64, 1, 2, 0, 63]
    assert popcount64(as_uint.view(np.int64)).tolist() == [64, 1, 2, 0, 63]
    assert int(popcount64(np.uint64(1 << 63) ^ np.uint64(1))) == 2
    assert_same(near_pairs(as_uint[:1], as_uint, 64), ([0] * 5, range(5), [0, 63, 62, 64, 1]))


def test_empty_inputs():
    empty, some = np.zeros(0, np.uint64), np.arange(5, dtype=np.uint64)
    for result in (near_pairs(empty, some, 3), near_pairs(some, [], 3), pairs_within(empty, 3), pairs_within(np.array([]), 3),
                   duplicates_to_drop(empty, 3), duplicates_to_drop(empty, 3, order_keys=[]), matches_in(empty, some, 3),
                   matches_in(some, empty, 3)):
        assert [len(a) for a in result] == [0, 0, 0]
    assert [len(a) for a in pairs_within(some[:1], 64)] == [0, 0, 0]


def test_bad_arguments_are_refused():
    h = np.arange(4, dtype=np.uint64)
    with pytest.raises(ValueError, match="at least 0"):
        near_pairs(h, h, -1)
    with pytest.raises(TypeError):
        pairs_within(h, 2.5)
    with pytest.raises(TypeError, match="unsigned"):
        pairs_within(h.astype(float), 2)
    with pytest.raises(ValueError, match="1-D"):
        pairs_within(h.reshape(2, 2), 2)
    with pytest.raises(ValueError, match="negative"):
        pairs_within(np.array([-1, 3], np.int32), 2)
    with pytest.raises(ValueError, match="one key per hash"):
        duplicates_to_drop(h, 2, order_keys=[1, 2])
