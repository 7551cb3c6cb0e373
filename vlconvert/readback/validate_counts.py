"""The manifest's numbers against the side files and against each other.

``validate.py`` reads the shards; these checks cover each split: its
``sizes.json`` (open_clip's dataset size), its accounting (read = written +
errored + held out + capped + deduplicated + filtered), and stray tars a ``--train-data`` glob would pick up.
The side files are ``validate_files.py``'s.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Callable

from vlconvert.format import MANIFEST, SIZES
from vlconvert.readback.validate_shard import ShardCheck

Add = Callable[[str, str], None]  # (where, what)
# Records a split read but kept out of its shards on purpose, by the manifest's name for each;
# a manifest written before a reason existed has no entry for it, which counts as 0.
LEFT_OUT = (("held_out", "held out"), ("capped", "capped"), ("deduplicated", "deduplicated"), ("filtered", "filtered"))


def check_split(fs, path: str, add: Add, split: str, info: dict, shards: list[dict], checks: list[ShardCheck]) -> None:
    """``shards`` are the split's manifest entries, ``checks`` what reading each of them back found."""
    listed = {posixpath.basename(s["name"]): s.get("samples") for s in shards}
    in_shards = sum(n for n in listed.values() if isinstance(n, int))
    written, errored = info.get("written"), info.get("errored")
    # held out and capped always (every build of this version has them); the rest where the manifest has them
    left_out = [(words, info.get(name, 0)) for name, words in LEFT_OUT if name in ("held_out", "capped") or name in info]
    where = f"{MANIFEST} split {split}"
    if written != in_shards:
        add(where, f"written {written} but its shards hold {in_shards} samples")
    numbers = (info.get("read"), written, errored, *(n for _, n in left_out))
    if not all(isinstance(n, int) for n in numbers) or numbers[0] != sum(numbers[1:]):
        terms = "".join(f" + {words} {n}" for words, n in left_out)
        add(where, f"read {info.get('read')} is not written {written} + errored {errored}{terms}")
    counts = info.get("class_counts")
    if isinstance(counts, list) and sum(counts) != written:
        add(where, f"class_counts add up to {sum(counts)}, not written {written}")
    elif isinstance(counts, list) and all(c.clean for c in checks):
        # Only compared when every shard read back whole; otherwise the shard's own problem says more.
        found = sum((c.labels for c in checks), Counter())
        wrong = sorted(label for label in set(found) | set(range(len(counts)))
                       if found.get(label, 0) != (counts[label] if label < len(counts) else 0))
        if wrong:
            add(where, f"the shards' labels differ from class_counts for {len(wrong)} classes (first: label {wrong[0]})")
    _check_sizes(fs, path, add, split, listed)
    try:
        present = [posixpath.basename(p.rstrip("/")) for p in fs.ls(posixpath.join(path, split), detail=False)]
    except FileNotFoundError:
        present = []
    for name in sorted(n for n in present if n.endswith(".tar") and n not in listed):
        add(f"{split}/{name}", "not listed in manifest.json (left by another build, an unfinished run, or a copy?)")


def _check_sizes(fs, path: str, add: Add, split: str, listed: dict[str, int]) -> None:
    where = f"{split}/{SIZES}"
    try:
        sizes = json.loads(fs.cat_file(posixpath.join(path, split, SIZES)))
    except FileNotFoundError:
        add(where, "missing")
        return
    except (ValueError, RecursionError):
        add(where, "not valid JSON")
        return
    if not isinstance(sizes, dict):
        add(where, "not a JSON object")
        return
    for name in sorted(set(sizes) | set(listed)):
        if name not in sizes:
            add(where, f"no entry for {name}, which the manifest lists")
        elif name not in listed:
            add(where, f"lists {name}, which the manifest does not")
        elif sizes[name] != listed[name]:
            add(where, f"{name}: {sizes[name]} samples, the manifest says {listed[name]}")
