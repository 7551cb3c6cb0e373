"""Near-duplicate search at scale: vlconvert/pipeline/near_duplicates.py on millions of 64-bit hashes.

A base set shaped like real pHash sets: random hashes, 1 % of them planted near copies of another base hash
(at distances 0 to 12), and 0.5 % in clusters of 1,000 identical hashes, the first of them 0 (blank images
all hash to 0).  The query set: random hashes, 10 % near copies of base hashes (distances 0 to 12), 1 % blank.
Each step prints its wall and CPU time, the process's peak resident memory during the step (VmHWM, reset
before each step), and the resident memory before it (the inputs).  Run from the repository root:

    .venv/bin/python benchmarks/near_duplicate_search.py [--base 2700000] [--query 100000] [--threshold 8 10] [--within-threshold 8]

Measured on the 2-core, 24 GB development machine (numpy 2.3.5, one thread, the machine otherwise idle), with
2,700,000 base hashes (2,684,951 distinct) and 100,000 queries; "inputs" is the process before the step:

    step                      wall     peak RSS (inputs)   found
    near_pairs t=0             0.4 s   0.30 GB (0.24 GB)   1,002,782 pairs (1,000 blank queries x 1,000 blank images)
    near_pairs t=8             3.1 s   0.41 GB (0.24 GB)   1,038,029 pairs
    near_pairs t=10            6.9 s   0.33 GB (0.24 GB)   1,049,129 pairs
    near_pairs t=12           16.4 s   0.35 GB (0.25 GB)   1,113,757 pairs
    matches_in t=8             2.9 s   0.41 GB (0.22 GB)   8,004 queries matched
    matches_in t=10            6.8 s   0.33 GB (0.23 GB)   11,801 queries matched
    duplicates_to_drop t=0     0.8 s   0.37 GB (0.24 GB)   15,049 to drop
    duplicates_to_drop t=8    25.8 s   0.45 GB (0.26 GB)   32,504 to drop
    duplicates_to_drop t=10   75.0 s   0.68 GB (0.26 GB)   71,088 to drop (about 36,000 pairs of random
                                                           64-bit hashes are within 10 at this size)
    pairs_within t=8          26.3 s   0.68 GB (0.23 GB)   6,513,070 pairs (6,493,500 inside the 13 clusters of 1,000)
    pairs_within t=10         75.6 s   0.81 GB (0.37 GB)   6,553,434 pairs

Plans the cost model chose: 22/21/21-bit chunks with radii 2/2/2 at t = 8, 17/17/17/13 bits with radii 2/2/2/1 at
t = 10 (forcing 22/21/21 bits with radii 3/3/2 instead: 9.3 s for near_pairs, 117 s for the within-set search).
Probing in chunk order in blocks of 2**18 probes and candidates: 27 s of CPU for the t=8 within-set search, against
40 s with blocks of 2**22 and 58 s with blocks of 2**22 in value order (CPU times, taken while the machine was busy).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from vlconvert.pipeline.near_duplicates import duplicates_to_drop, matches_in, near_pairs, pairs_within


def random_flips(rng: np.random.Generator, n: int, max_distance: int) -> np.ndarray:
    """n masks of 0..max_distance distinct bits each."""
    distance = rng.integers(0, max_distance + 1, n)
    bits = np.argsort(rng.random((n, 64)), axis=1) < distance[:, None]  # a random subset of `distance` bits
    return (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def make_sets(n_base: int, n_query: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, n_base, dtype=np.uint64, endpoint=False)
    slots = rng.permutation(n_base)
    near, rest = slots[:n_base // 100], slots[n_base // 100:]
    base[near] = base[rng.choice(rest, len(near))] ^ random_flips(rng, len(near), 12)
    for k, start in enumerate(range(len(near), len(near) + n_base // 200 - 999, 1000)):
        base[slots[start:start + 1000]] = 0 if k == 0 else rng.integers(0, 2**64, dtype=np.uint64, endpoint=False)
    query = rng.integers(0, 2**64, n_query, dtype=np.uint64, endpoint=False)
    copies = n_query // 10
    query[:copies] = base[rng.integers(0, n_base, copies)] ^ random_flips(rng, copies, 12)
    query[copies:copies + n_query // 100] = 0
    return base, rng.permutation(query)


def memory() -> tuple[float, float]:
    """(resident, peak resident since the last reset) in GB."""
    try:
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(status["VmRSS"].split()[0]) / 1e6, int(status["VmHWM"].split()[0]) / 1e6
    except OSError:  # not Linux: the peak since the process started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        return peak, peak


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
    except OSError:
        pass


def measure(name: str, step) -> None:
    reset_peak()
    before, _ = memory()
    wall, cpu = time.perf_counter(), time.process_time()
    found = step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = memory()[1]
    print(f"{name:26s} {wall:6.1f} s wall {cpu:6.1f} s CPU   peak RSS {peak:5.2f} GB (inputs {before:4.2f} GB)   {found}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=2_700_000)
    parser.add_argument("--query", type=int, default=100_000)
    parser.add_argument("--threshold", type=int, nargs="+", default=[8, 10], help="query searches at each of these")
    parser.add_argument("--within-threshold", type=int, nargs="*", default=[8], help="searches within the base set at these")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base, query = make_sets(args.base, args.query, args.seed)
    print(f"base {len(base):,} hashes ({len(np.unique(base)):,} distinct), query {len(query):,}")
    for t in args.threshold:
        measure(f"near_pairs t={t}", lambda: f"{len(near_pairs(query, base, t)[0]):,} pairs")
        measure(f"matches_in t={t}", lambda: f"{len(matches_in(query, base, t)[0]):,} query hashes matched")
    for t in args.within_threshold:
        measure(f"duplicates_to_drop t={t}", lambda: f"{len(duplicates_to_drop(base, t)[0]):,} to drop")
        measure(f"pairs_within t={t}", lambda: f"{len(pairs_within(base, t)[0]):,} pairs")


if __name__ == "__main__":
    main()
