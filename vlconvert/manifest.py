"""The side files of a build: manifest.json, sizes.json, classnames.txt, errors.jsonl, prompts.

``manifest.json`` is the build's account: the options it ran with and, per
split, how many records were read, written and rejected, and every shard with
its sample count and sha256.  It holds no timestamps, so two identical builds
write identical manifests.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

from .records import Rejected
from .storage import write_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
CLASSNAMES = "classnames.txt"
ZEROSHOT_TEMPLATES = "zeroshot_classification_templates.txt"
SIZES = "sizes.json"


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def write_text(fs, path: str, text: str) -> None:
    with fs.open(path, "wb") as f:
        f.write(text.encode("utf-8"))


def write_json(fs, path: str, data: Any) -> None:
    write_text(fs, path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_manifest(fs, out_path: str, data: dict) -> None:
    """The manifest says whether a folder is a build, and whether it is complete: never leave half of one."""
    write_atomic(fs, posixpath.join(out_path, MANIFEST), (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_sizes(fs, split_dir: str, shards: Sequence[dict]) -> None:
    """open_clip reads ``sizes.json`` beside the shards to learn the dataset size."""
    write_json(fs, posixpath.join(split_dir, SIZES), {posixpath.basename(s["name"]): s["samples"] for s in shards})


def write_lines(fs, path: str, lines: Sequence[str]) -> None:
    # One entry per line, so an entry may not contain a line break.
    write_text(fs, path, "".join(" ".join(line.split()) + "\n" for line in lines))


def write_errors(fs, out_path: str, rejected: Iterable[Rejected]) -> int:
    count = 0
    with fs.open(posixpath.join(out_path, ERRORS), "wb") as f:
        for r in rejected:
            f.write((json.dumps(r.as_json(), ensure_ascii=False) + "\n").encode("utf-8"))
            count += 1
    return count


CLASSES = "classes.jsonl"


def write_classes(fs, out_path: str, classes) -> None:
    """One JSON line per class (label, names, taxonomy, extra fields): what evaluation maps predictions through."""
    lines = [json.dumps({"label": c.label, "name": c.name, "common_name": c.common_name, "taxonomy": c.ranks,
                         "extra": dict(c.extra)}, ensure_ascii=False, default=str) for c in classes]
    write_text(fs, posixpath.join(out_path, CLASSES), "".join(line + "\n" for line in lines))
