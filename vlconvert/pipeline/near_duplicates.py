"""Exact and near-duplicate images by their 64-bit perceptual hashes: every pair within a Hamming distance.

The search behind ``vlconvert dedup``.  Hashes are ``uint64`` (imagehash's pHash); an ``int64`` array is read
as the same 64 bits, so a hash with bit 63 set is never taken for a negative number.

Method: multi-index hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space with multi-index hashing",
CVPR 2012) with the generalised pigeonhole bound.  The 64 bits are cut into m disjoint chunks and chunk i gets a radius
r_i with sum(r_i + 1) = t + 1: two hashes within t differ in at most r_i bits of some chunk i, or they would differ in
at least t + 1 bits.  Each chunk of the indexed side is a table of buckets by chunk value; a probing hash looks up every
chunk value within r_i of its own, and each hash in those buckets is a candidate, kept when its distance is within t.
No pair within t is missed, and a pair that several chunks find is reported by the first of them only.  m, the widths
and radii come from a cost model (``_plan``); for 100,000 against 2.7 million hashes: 22/21/21 bits with radii 2/2/2
at t = 8, 17/17/17/13 bits with radii 2/2/2/1 at t = 10.  Small sets are compared by brute force.

The search runs on distinct values: identical hashes (a thousand blank images all hash to 0) are one value,
searched once.  Only the pair APIs expand value pairs back into item pairs (a group of n identical hashes is
n(n - 1)/2 pairs); ``duplicates_to_drop`` and ``matches_in`` never do, so their memory stays linear.
"""

from __future__ import annotations

import itertools
import math
import operator

import numpy as np

# Probes plus candidates per block of probing hashes.  Blocks this small keep the transient arrays near 10 MB and,
# since hashes probe in chunk order, a block's bucket reads within a few MB: 1.5x faster than 2**22 on 2.7M hashes.
_BLOCK_WORK = 1 << 18
# Seconds per probe (a bucket lookup, or a binary search in chunks wider than _DIRECT_BITS), per candidate, per pair
# compared by brute force and per hash put in a chunk table: fitted to timings of forced plans on this 2-core machine
# (100,000 x 2.7M at t = 8 with 3 and 4 chunks, 5,000 x 5,000 brute force).  Only their ratios matter.
_COST_PROBE, _COST_SEARCH, _COST_CANDIDATE, _COST_BRUTE, _COST_TABLE = 30e-9, 150e-9, 5e-9, 3e-9, 100e-9
# A chunk this wide or narrower is looked up in a table of 2**width bucket bounds (8 bytes each: 128 MB at 24).
_DIRECT_BITS = 24
_ALL = (1 << 64) - 1

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def popcount64(x) -> np.ndarray:
    """The number of set bits of each 64-bit value, as uint8."""
    a = np.asarray(x)
    # np.bitwise_count counts the bits of |x| for a signed type, and a hash is its bit pattern.
    return np.bitwise_count(a.view(np.uint64) if a.dtype == np.int64 else a)


def near_pairs(query, base, threshold: int) -> Pairs:
    """Every (i, j) with popcount(query[i] ^ base[j]) <= threshold: (query indices, base indices, distances), sorted by (i, j)."""
    t = _threshold(threshold)
    qv, _, qorder, qstarts = _groups(_as_hashes(query))
    bv, _, border, bstarts = _groups(_as_hashes(base))
    ua, ub, d = _value_pairs(qv, bv, t)
    i, j, k = _cross(qorder, qstarts, ua, border, bstarts, ub)
    return _sorted(i, j, d[k], len(border))


def pairs_within(hashes, threshold: int) -> Pairs:
    """Every (i, j), i < j, with popcount(hashes[i] ^ hashes[j]) <= threshold, once each, sorted by (i, j).

    A group of n identical hashes alone makes n(n - 1)/2 pairs: for clustered sets use ``duplicates_to_drop``.
    """
    t = _threshold(threshold)
    vals, _, order, starts = _groups(_as_hashes(hashes))
    # Within a group of identical hashes, each member with every later member (a group lists its members ascending).
    after = np.arange(1, len(order) + 1)
    p, q = _ranges(after, np.repeat(starts[1:], np.diff(starts)) - after)
    ua, ub, d = _value_pairs(vals, vals, t, same=True)
    i, j, k = _cross(order, starts, ua, order, starts, ub)
    first, second = np.concatenate([order[p], np.minimum(i, j)]), np.concatenate([order[q], np.maximum(i, j)])
    return _sorted(first, second, np.concatenate([np.zeros(len(p), np.uint8), d[k]]), len(order))


def duplicates_to_drop(hashes, threshold: int, order_keys=None) -> Pairs:
    """Every item with an earlier item within threshold: (drop indices, twin indices, distances), sorted by drop index.

    Earlier means a lower index or, given ``order_keys`` (one sortable key per item), a lower key, then a lower
    index: keys such as minus the pixel count keep the largest image of each cluster.  The twin is the earliest
    item within threshold, which may itself be dropped (chains are not followed).  Keeping the items not listed
    keeps the earliest of every cluster and no two kept items are within threshold.
    """
    t, h = _threshold(threshold), _as_hashes(hashes)
    n = len(h)
    rank = np.arange(n) if order_keys is None else _ranks(order_keys, n)
    vals, inv, order, starts = _groups(h)
    # A value's earliest item is the twin of its other items, unless a near value has an item earlier still.
    by_rank = order if order_keys is None else np.argsort(inv * n + rank)
    first = by_rank[starts[:-1]]
    ua, ub, d = _value_pairs(vals, vals, t, same=True)
    u, v, dd = np.concatenate([ua, ub]), np.concatenate([ub, ua]), np.concatenate([d, d])
    pick = np.lexsort((rank[first[v]], u))
    u, v, dd = u[pick], v[pick], dd[pick]
    head = _run_starts(u)
    near, near_item, near_d = np.full(len(vals), n), np.zeros(len(vals), np.intp), np.zeros(len(vals), np.uint8)
    near[u[head]], near_item[u[head]], near_d[u[head]] = rank[first[v[head]]], first[v[head]], dd[head]
    own = first[inv]
    via_near = near[inv] < np.minimum(rank[own], rank)
    drop = np.flatnonzero(via_near | (own != np.arange(n)))
    via, value = via_near[drop], inv[drop]
    return drop, np.where(via, near_item[value], own[drop]), np.where(via, near_d[value], 0).astype(np.uint8)


def matches_in(query, base, threshold: int) -> Pairs:
    """For each query item its nearest base item within threshold, the lowest base index on ties, if there is one.

    Returns (query indices, base indices, distances) of the matched query items only, sorted by query index.
    """
    t = _threshold(threshold)
    qv, qinv, _, _ = _groups(_as_hashes(query))
    bv, _, border, bstarts = _groups(_as_hashes(base))
    ua, ub, d = _value_pairs(qv, bv, t)
    lowest = border[bstarts[ub]]
    pick = np.lexsort((lowest, d, ua))
    ua, lowest, d = ua[pick], lowest[pick], d[pick]
    head = _run_starts(ua)
    best = np.full(len(qv), -1)
    best[ua[head]] = head  # each query value's first pair in that order is its nearest
    slot = best[qinv]
    i = np.flatnonzero(slot >= 0)
    return i, lowest[slot[i]], d[slot[i]]


def _threshold(threshold) -> int:
    t = operator.index(threshold)
    if t < 0:
        raise ValueError(f"threshold {t}: a Hamming distance is at least 0")
    return min(t, 64)


def _as_hashes(x) -> np.ndarray:
    a = np.asarray(x)
    if a.size == 0 or a.dtype.kind in "fO" and not isinstance(x, np.ndarray):
        a = np.array(x, np.uint64)  # empty, or a list mixing ints past 2**63 with small ones: numpy makes floats of it
    if a.ndim != 1:
        raise ValueError(f"hashes must be a 1-D array, not of shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"hashes must be 64-bit unsigned integers, not {a.dtype}")
    if a.dtype == np.int64:
        return a.view(np.uint64)  # hashes stored signed (a database column, pandas) keep their bits
    if a.dtype.kind == "i" and (a < 0).any():
        raise ValueError(f"negative hashes in a {a.dtype} array: store 64-bit hashes as uint64")
    return a.astype(np.uint64, copy=False)


def _ranks(order_keys, n: int) -> np.ndarray:
    keys = np.asarray(order_keys)
    if keys.shape != (n,):
        raise ValueError(f"order_keys has shape {keys.shape}: one key per hash is ({n},)")
    return np.argsort(np.lexsort((np.arange(n), keys)))  # the inverse of the order: each item's place in it


def _groups(h: np.ndarray):
    """Distinct values (sorted), each item's value, and value g's items, ascending, as order[starts[g]:starts[g + 1]]."""
    order = np.argsort(h, kind="stable")
    starts = _run_starts(h[order])
    inv = np.empty(len(h), np.intp)
    inv[order] = np.repeat(np.arange(len(starts)), np.diff(starts, append=len(h)))
    return h[order[starts]], inv, order, np.append(starts, len(h))


def _run_starts(s: np.ndarray) -> np.ndarray:
    """Where each run of equal values in s begins."""
    return np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, np.intp)


def _ranges(starts: np.ndarray, lengths: np.ndarray):
    """The k of each element, and starts[k], starts[k] + 1, ..., starts[k] + lengths[k] - 1 for every k, concatenated."""
    ends = np.cumsum(lengths)
    values = np.repeat(starts - ends + lengths, lengths)
    return np.repeat(np.arange(len(lengths)), lengths), values + np.arange(len(values))


def _cross(a_order, a_starts, ua, b_order, b_starts, ub):
    """Item pairs (i, j) of value pairs: every item of value ua[k] with every item of ub[k]; k names the value pair."""
    na, nb = np.diff(a_starts)[ua], np.diff(b_starts)[ub]
    k, local = _ranges(np.zeros(len(ua), np.intp), na * nb)
    return a_order[a_starts[ua[k]] + local // nb[k]], b_order[b_starts[ub[k]] + local % nb[k]], k


def _sorted(i, j, d, n_j: int) -> Pairs:
    pick = np.argsort(i * n_j + j)
    return i[pick].astype(np.intp), j[pick].astype(np.intp), d[pick].astype(np.uint8)


def _chunks(m: int, t: int, wide: int) -> list[tuple[int, int, int]]:
    """(shift, width, radius) of m chunks with sum(radius + 1) = t + 1 (m <= t + 1); the larger radii share `wide` bits."""
    q, s = divmod(t + 1, m)
    widths = [wide // s + (i < wide % s) for i in range(s)] if s else []
    widths += [(64 - wide) // (m - s) + (i < (64 - wide) % (m - s)) for i in range(m - s)]
    radii = [q] * s + [q - 1] * (m - s)
    return [(sum(widths[:i]), w, r) for i, (w, r) in enumerate(zip(widths, radii))]


def _ball(w: int, r: int) -> int:
    return sum(math.comb(w, k) for k in range(r + 1))


def _plan(n_probe: int, n_index: int, t: int):
    """The cheapest complete search by the cost model: (chunks, probing hashes per block); no chunks is brute force.

    For each probing hash a chunk costs a probe per value in its ball and a candidate per indexed hash expected in
    those buckets, as if hashes were random: clustered sets are mostly identical values, which are searched once.
    """
    best = (n_probe * n_index * _COST_BRUTE, None, max(1, _BLOCK_WORK // max(n_index, 1)))
    for m in range(1, min(t + 1, 16) + 1):
        s = (t + 1) % m
        for wide in range(s, 65 - m + s) if s else [0]:
            chunks = _chunks(m, t, wide)
            probes = sum(_ball(w, r) for _, w, r in chunks)
            if probes > 50_000:
                continue
            per_probe = sum(_ball(w, r) * (_COST_PROBE if w <= _DIRECT_BITS else _COST_SEARCH) for _, w, r in chunks)
            candidates = sum(_ball(w, r) / 2.0**w for _, w, r in chunks) * n_index
            cost = n_probe * (per_probe + candidates * _COST_CANDIDATE) + m * n_index * _COST_TABLE
            if cost < best[0]:
                best = (cost, chunks, max(1, int(_BLOCK_WORK // (probes + candidates))))
    return best[1], best[2]


def _chunk_of(x: np.ndarray, shift: int, width: int) -> np.ndarray:
    keys = (x >> np.uint64(shift)) & np.uint64(_ALL >> (64 - width))
    return keys.astype(np.intp) if width <= _DIRECT_BITS else keys


def _table(vals: np.ndarray, shift: int, width: int, radius: int):
    """One chunk's index: the values in bucket order, their value indices, the bucket lookup, the flips of the ball."""
    keys = _chunk_of(vals, shift, width)
    order = np.argsort(keys, kind="stable")
    flips = [sum(1 << b for b in bits) for k in range(radius + 1) for bits in itertools.combinations(range(width), k)]
    if width <= _DIRECT_BITS:
        # A bucket's (start, stop) as one int64 (so under 2**32 values), so that a probe is one random read; the
        # extra last bucket is empty.
        offsets = np.r_[0, np.cumsum(np.bincount(keys, minlength=1 << width)), len(vals)]
        lookup = offsets[:-1] | offsets[1:] << 32
    else:
        lookup = keys[order]
    return vals[order], order, lookup, np.array(flips, keys.dtype)


def _value_pairs(a: np.ndarray, b: np.ndarray, t: int, same: bool = False) -> Pairs:
    """(ia, ib, d) for every popcount(a[ia] ^ b[ib]) <= t over distinct sorted values; with same (a is b) ia < ib only."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.uint8)
    swap = not same and len(a) > len(b)  # probes cost per probing hash, so the smaller side probes
    a, b = (b, a) if swap else (a, b)
    chunks, block = _plan(len(a), len(b), t)
    found = []
    for lo in range(0, len(a), block) if chunks is None else ():
        x = a[lo:lo + block]
        d = np.bitwise_count(x[:, None] ^ b[None, :])
        i, j = np.nonzero((d <= t) & (np.arange(len(b)) > np.arange(lo, lo + len(x))[:, None] if same else True))
        found.append((i + lo, j, d[i, j]))
    for c, chunk in enumerate(chunks or ()):
        table = _table(b, *chunk)
        # Probing hashes go in chunk order, so a block's probes for one flip fall in one narrow run of buckets.
        ids = table[1] if same else np.argsort(_chunk_of(a, *chunk[:2]), kind="stable")
        xs = table[0] if same else a[ids]
        found += [_probe(xs[lo:lo + block], ids[lo:lo + block], table, chunks, c, t, same) for lo in range(0, len(a), block)]
    ia, ib, d = (np.concatenate(parts) for parts in zip(*found))
    return (ib, ia, d) if swap else (ia, ib, d)


def _probe(x: np.ndarray, ids: np.ndarray, table, chunks, c: int, t: int, same: bool) -> Pairs:
    """The pairs of x (values ids) with the indexed values within t that chunk c is the first to find."""
    vals, order, lookup, flips = table
    shift, width, _ = chunks[c]
    keys = _chunk_of(x, shift, width)
    probes = keys[:, None] ^ flips
    direct = width <= _DIRECT_BITS
    if same and direct:
        # A pair whose chunks differ is in both sides' balls: only the side with the lower chunk probes for it;
        # the others read the empty last bucket, one cached line, which is cheaper than compacting the probes.
        probes = np.where(probes >= keys[:, None], probes, len(lookup) - 1)
    if direct:
        # mode="clip" skips numpy's bounds check; every probe is a chunk value or the empty bucket, so in range.
        bounds = np.take(lookup, probes.ravel(), mode="clip")
        start, lengths = bounds & 0xFFFFFFFF, (bounds >> 32) - (bounds & 0xFFFFFFFF)
    else:
        start = np.searchsorted(lookup, probes.ravel(), "left")
        lengths = np.searchsorted(lookup, probes.ravel(), "right") - start
        if same:
            lengths *= (probes >= keys[:, None]).ravel()
    ends = np.cumsum(lengths)
    pos = np.repeat(start - ends + lengths, lengths)
    pos += np.arange(len(pos))
    per_hash = ends[len(flips) - 1::len(flips)]
    xq = np.repeat(x, np.diff(per_hash, prepend=0))
    y = np.take(vals, pos, mode="clip")
    d = np.bitwise_count(xq ^ y)
    keep = np.flatnonzero(d <= t)
    xq, y, pos, d = xq[keep], y[keep], pos[keep], d[keep]
    qi = np.searchsorted(per_hash, keep, "right")
    diff = xq ^ y
    # Both sides of a pair with the same chunk found it: the lower value (value order is index order) reports it.
    first = (y > xq) | (_chunk_of(diff, shift, width) != 0) if same else np.ones(len(keep), bool)
    for s, w, r in chunks[:c]:
        first &= np.bitwise_count(_chunk_of(diff, s, w)) > r  # that earlier chunk reported the pair
    ia, ib = ids[qi[first]], order[pos[first]]
    return (np.minimum(ia, ib), np.maximum(ia, ib), d[first]) if same else (ia, ib, d[first])
