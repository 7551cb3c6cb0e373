"""``vlconvert dedup``: the duplicates of a finished build, reported, and optionally a copy without them.

Reads only the shards' tables (the hashes were taken while the build decoded each image),
so it takes seconds where a separate hashing job re-reads every image; the copy is
:func:`vlconvert.reshard` with the dropped samples counted as ``deduplicated``.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlconvert.errors import VLConvertError
from vlconvert.format import DUPLICATES
from vlconvert.pipeline.build_tables import complete_build, read_tables
from vlconvert.pipeline.dedup import COLUMNS, DEFAULT_THRESHOLD, DedupResult, find_duplicates
from vlconvert.readback.reshard import reshard, side_files


def find_build_duplicates(out: str, against: Sequence[str] = (), threshold: int = DEFAULT_THRESHOLD) -> DedupResult:
    """Exact and near duplicates within each split of ``out``, of its evaluation splits in its training splits, and of
    every build in ``against`` in its training splits (docs/dedup.md)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= 32:
        raise VLConvertError(f"the threshold is a number of differing pHash bits from 0 to 32, got {threshold!r}")
    _, _, manifest = complete_build(out)
    tables = {split: read_tables(out, [split], COLUMNS) for split in manifest["splits"]}
    external = {}
    for other in against:
        if other in external:
            raise VLConvertError(f"--against {other} is given twice")
        external[other] = read_tables(other, columns=COLUMNS)
    return find_duplicates(tables, external, threshold)


def dedup(out: str, new_out: str | None = None, *, against: Sequence[str] = (), threshold: int = DEFAULT_THRESHOLD,
          overwrite: bool = False) -> DedupResult:
    """Find the duplicates of ``out``; with ``new_out``, write a copy of ``out`` without the training duplicates there,
    its manifest counting them (``deduplicated``, ``dedup``) and ``duplicates.jsonl`` listing each with its twin."""
    result = find_build_duplicates(out, against, threshold)
    if new_out is not None:
        dropped = result.dropped()
        rows = read_tables(out, columns=["key"])
        keep = {}
        for split, key in zip(rows.column("split").to_pylist(), rows.column("key").to_pylist()):
            if key not in dropped.get(split, ()):
                keep.setdefault(split, set()).add(key)
        fs, path, manifest = complete_build(out)
        # A build deduplicated before (--dedup) keeps the list of what it left out, ahead of this round's.
        earlier = side_files(fs, path, manifest, out).get(DUPLICATES, b"")
        described = {**result.describe(), **({"earlier": manifest["dedup"]} if manifest.get("dedup") else {})}
        reshard(out, keep, new_out, shard_size=manifest.get("shard_size") or 1000, overwrite=overwrite,
                left_out_as="deduplicated", extra_files={DUPLICATES: earlier + result.report()},
                extra_manifest={"dedup": described}, keep_apart=list(against))
    return result

