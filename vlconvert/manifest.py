"""The side files of a build: manifest.json, sizes.json, classnames.txt, errors.jsonl, prompts.

``manifest.json`` is the build's account: the options it ran with and, per
split, how many records were read, written and rejected, and every shard with
its sample count and sha256.  It holds no timestamps, so two identical builds
write identical manifests.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .records import Rejected
from .storage import write_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
CLASSNAMES = "classnames.txt"
ZEROSHOT_TEMPLATES = "zeroshot_classification_templates.txt"
SIZES = "sizes.json"
# A build's manifest is a few MB even for iNat-2021's 2,687 shards; anything far larger is not one.
MAX_MANIFEST_BYTES = 256 << 20


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float made null: ``NaN`` and ``Infinity`` (a CSV's "inf") are not JSON,
    and strict readers (JavaScript, Go, jq, pyarrow) refuse a file that holds them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, **options) -> str:
    """JSON text of ``value`` as every vlconvert file holds it: strict JSON, unknown types as text."""
    return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False, default=str, **options)


def utf8(text: str) -> bytes:
    """``text`` as UTF-8.  A lone surrogate (a file name that was not UTF-8, a "\\udcfe" escape in a dataset's JSON)
    cannot be encoded and is written as its escape, which in JSON is the same character again."""
    return text.encode("utf-8", "backslashreplace")


def file_info(data: bytes) -> dict:
    """What the manifest records of a side file, for ``vlconvert validate`` to check."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_text(fs, path: str, text: str) -> dict:
    data = utf8(text)
    with fs.open(path, "wb") as f:
        f.write(data)
    return file_info(data)


def write_json(fs, path: str, data: Any) -> dict:
    return write_text(fs, path, dumps(data, indent=2) + "\n")


def write_manifest(fs, out_path: str, data: dict) -> None:
    """The manifest says whether a folder is a build, and whether it is complete: never leave half of one."""
    write_atomic(fs, posixpath.join(out_path, MANIFEST), utf8(dumps(data, indent=2) + "\n"))


def write_sizes(fs, split_dir: str, shards: Sequence[dict]) -> dict:
    """open_clip reads ``sizes.json`` beside the shards to learn the dataset size."""
    return write_json(fs, posixpath.join(split_dir, SIZES), {posixpath.basename(s["name"]): s["samples"] for s in shards})


def write_lines(fs, path: str, lines: Sequence[str]) -> dict:
    # One entry per line, so an entry may not contain a line break.
    return write_text(fs, path, "".join(" ".join(line.split()) + "\n" for line in lines))


def write_errors(fs, out_path: str, rejected: Iterable[Rejected]) -> dict:
    digest, size = hashlib.sha256(), 0
    with fs.open(posixpath.join(out_path, ERRORS), "wb") as f:
        for r in rejected:
            line = utf8(dumps(r.as_json()) + "\n")
            f.write(line)
            digest.update(line)
            size += len(line)
    return {"bytes": size, "sha256": digest.hexdigest()}


CLASSES = "classes.jsonl"


def write_classes(fs, out_path: str, classes) -> dict:
    """One JSON line per class (label, names, taxonomy, extra fields): what evaluation maps predictions through."""
    lines = [dumps({"label": c.label, "name": c.name, "common_name": c.common_name, "taxonomy": c.ranks,
                    "extra": dict(c.extra)}) for c in classes]
    return write_text(fs, posixpath.join(out_path, CLASSES), "".join(line + "\n" for line in lines))
