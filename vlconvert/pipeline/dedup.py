"""Which images are duplicates, and which of them leave the training splits.

Every written image carries the sha256 of its stored bytes and its pHash (``shard_table.py``).
A training image is a duplicate, in order of precedence, when it matches

* ``external``: any image of another build (an evaluation set converted with vlconvert),
* ``across``: any image of this build's evaluation splits (``val``, ``test``, …),
* ``within``: an earlier image of its own split (the shard order decides which copy stays);

"matches" is the same stored bytes (``exact``: the same source under the same options) or a pHash
within ``threshold`` bits (``near``).  Training duplicates are dropped; duplicates within an evaluation
split are only reported, since dropping them would change the benchmark.  The search itself is
``near_duplicates.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from vlconvert.format import DUPLICATES, dumps, is_training_split
from vlconvert.pipeline.image_hashes import from_hex
from vlconvert.pipeline.near_duplicates import duplicates_to_drop, matches_in

DEFAULT_THRESHOLD = 8  # docs/dedup.md: recall and precision of the planted copies at each threshold
COLUMNS = ["split", "key", "source", "image_sha256", "phash"]
SCOPES = ("external", "across", "within")


@dataclass(frozen=True)
class Finding:
    split: str
    key: str
    source: str
    scope: str  # external, across or within
    kind: str  # exact (the same stored bytes) or near (pHash within the threshold)
    distance: int  # pHash bits that differ
    twin: dict  # the image it duplicates: build (None for this one), split, key, source
    dropped: bool

    def as_json(self) -> dict:
        return {"split": self.split, "key": self.key, "source": self.source, "scope": self.scope, "kind": self.kind,
                "distance": self.distance, "twin": self.twin, "dropped": self.dropped}


@dataclass
class DedupResult:
    threshold: int
    findings: list[Finding] = field(default_factory=list)
    against: list[str] = field(default_factory=list)

    def report(self) -> bytes:
        """``duplicates.jsonl``: one line per duplicate found, in split and shard order."""
        return "".join(dumps(f.as_json()) + "\n" for f in self.findings).encode("utf-8", "backslashreplace")

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "against": self.against, "findings": [f.as_json() for f in self.findings]}

    @classmethod
    def from_json(cls, data: dict) -> DedupResult:
        return cls(data["threshold"], [Finding(**f) for f in data["findings"]], data["against"])

    def describe(self) -> dict:
        """The manifest's ``dedup`` entry."""
        return {"method": "sha256 of the stored image (exact) and imagehash pHash, 64 bits (near)", "threshold": self.threshold,
                "against": list(self.against), "file": DUPLICATES, "splits": self.counts()}

    def dropped(self) -> dict[str, set[str]]:
        """Split → keys that leave it."""
        out: dict[str, set[str]] = {}
        for f in self.findings:
            if f.dropped:
                out.setdefault(f.split, set()).add(f.key)
        return out

    def counts(self) -> dict:
        """What the manifest's ``dedup`` entry and the summary say: found and dropped per split, scope and kind."""
        out: dict = {}
        for f in self.findings:
            entry = out.setdefault(f.split, {"found": 0, "dropped": 0, **{s: 0 for s in SCOPES}, "exact": 0, "near": 0})
            entry["found"] += 1
            entry["dropped"] += f.dropped
            entry[f.scope] += 1
            entry[f.kind] += 1
        return dict(sorted(out.items()))


def find_duplicates(tables: dict[str, pa.Table], external: dict[str, pa.Table], threshold: int) -> DedupResult:
    """``tables``: this build's rows per split (at least ``COLUMNS``), in shard order; ``external``: other builds' rows
    (every split), by the name the report gives each build."""
    result = DedupResult(threshold, against=list(external))
    evaluation = [t for s, t in tables.items() if not is_training_split(s)]
    eval_rows = pa.concat_tables(evaluation, promote_options="default") if evaluation else None
    for split, table in tables.items():
        found: dict[int, Finding] = {}
        if is_training_split(split):
            for name, other in external.items():
                _match(table, other, name, "external", threshold, found)
            if eval_rows is not None:
                _match(table, eval_rows, None, "across", threshold, found)
        _within(table, threshold, found, drop=is_training_split(split))
        result.findings += [found[i] for i in sorted(found)]
    return result


def _match(table: pa.Table, base: pa.Table, build: str | None, scope: str, threshold: int, found: dict[int, Finding]) -> None:
    rows, base_rows = table.to_pydict(), base.select(["split", "key", "source", "image_sha256"]).to_pydict()
    by_sha: dict[str, int] = {}
    for j, sha in enumerate(base_rows["image_sha256"]):
        by_sha.setdefault(sha, j)
    hits: dict[int, tuple[int, int]] = {}  # query → (base row, distance)
    for i, j, d in zip(*matches_in(from_hex(rows["phash"]), from_hex(base.column("phash").to_pylist()), threshold)):
        hits[int(i)] = (int(j), int(d))
    for i, sha in enumerate(rows["image_sha256"]):
        if i in found:
            continue
        exact = by_sha.get(sha)
        if exact is None and i not in hits:
            continue
        j, distance = (exact, 0) if exact is not None else hits[i]
        twin = {"build": build, "split": base_rows["split"][j], "key": base_rows["key"][j], "source": base_rows["source"][j]}
        found[i] = Finding(rows["split"][i], rows["key"][i], rows["source"][i], scope, "exact" if exact is not None else "near",
                           distance, twin, dropped=True)


def _within(table: pa.Table, threshold: int, found: dict[int, Finding], drop: bool) -> None:
    rows = table.select(["split", "key", "source", "image_sha256"]).to_pydict()
    first_of: dict[str, int] = {}
    exact = {}
    for i, sha in enumerate(rows["image_sha256"]):
        if sha in first_of:
            exact[i] = first_of[sha]
        else:
            first_of[sha] = i
    near = {int(i): (int(j), int(d)) for i, j, d in zip(*duplicates_to_drop(from_hex(table.column("phash").to_pylist()), threshold))}
    for i in sorted(set(exact) | set(near)):
        if i in found:
            continue
        j, distance, kind = (exact[i], 0, "exact") if i in exact else (*near[i], "near")
        twin = {"build": None, "split": rows["split"][j], "key": rows["key"][j], "source": rows["source"][j]}
        found[i] = Finding(rows["split"][i], rows["key"][i], rows["source"][i], "within", kind, distance, twin, dropped=drop)

