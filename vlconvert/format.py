"""The output contract: what a build's folder holds and how each file is named, written and read back.

The writer (``pipeline/``), the read-back tools (``readback/``) and ``lit/``
take every file name, member name and shard name from here, and read the
manifest and side files through the readers here.

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
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vlconvert.records import Rejected, is_valid_key
from vlconvert.storage import NotARegularFile, read_bounded, write_atomic
from vlconvert.version import __version__

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
ERRORS_TABLE = "errors.parquet"  # the same rejections as a table (pipeline/shard_table.py)
DUPLICATES = "duplicates.jsonl"  # with --dedup or from vlconvert dedup: each duplicate found, with its twin
CLASSNAMES = "classnames.txt"
ZEROSHOT_TEMPLATES = "zeroshot_classification_templates.txt"
SIZES = "sizes.json"
CLASSES = "classes.jsonl"
CARD = "README.md"  # the Hugging Face Hub dataset card (pipeline/dataset_card.py)
WIDS_INDEX_SUFFIX = ".wids.json"  # <split>/<split>.wids.json: never *.tar, so no shard glob picks it up
# A build's manifest is a few MB even for iNat-2021's 2,687 shards; anything far larger is not one.
MAX_MANIFEST_BYTES = 256 << 20


# The members of one sample, KEY.<member>: what a build writes and every reader looks for.
CAPTION_MEMBER = "txt"  # the first --template's caption, the one open_clip trains on
LABEL_MEMBER = "cls"
METADATA_MEMBER = "json"
IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")  # a build writes one of jpg, png, webp; "jpeg" is read as a JPEG too


def caption_member(template_name: str) -> str:
    """The member of a named template's caption (``--template scientific`` → ``scientific.txt``)."""
    return f"{template_name}.{CAPTION_MEMBER}"


def is_caption_member(member: str) -> bool:
    return member == CAPTION_MEMBER or member.endswith("." + CAPTION_MEMBER)


def is_training_split(split: str) -> bool:
    """Held-out classes are kept out of these splits (the manifest's ``holdout.kept_out_of``); the rest evaluate."""
    return split.startswith("train")


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def table_name(split: str, number: int) -> str:
    """The Parquet table of a shard's samples, beside it (docs/output-format.md)."""
    return f"{split}-{number:06d}.parquet"


def is_listed_shard_name(split: str, name: str) -> bool:
    """Whether ``name`` is how a manifest lists a shard of ``split``: ``<split>/<split>-NNNNNN.tar``, relative to OUT.
    Readers open no other name a manifest gives (``../../etc/passwd``, an absolute path, another split's folder)."""
    return is_valid_key(split) and re.fullmatch(re.escape(f"{split}/{split}-") + r"[0-9]{6}\.tar", name) is not None


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
    return write_bytes(fs, path, utf8(text))


def write_bytes(fs, path: str, data: bytes) -> dict:
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


def wids_index_name(split: str) -> str:
    return split + WIDS_INDEX_SUFFIX


def write_wids_index(fs, split_dir: str, split: str, shards: Sequence[dict]) -> dict:
    """The shard index wids (webdataset's random-access reader) opens: ``wids.ShardListDataset(PATH_OR_URL)``.
    wids resolves each ``url`` against the index's own folder, so bare file names let the build folder move."""
    return write_json(fs, posixpath.join(split_dir, wids_index_name(split)), {
        "__kind__": "wids-shard-index-v1", "wids_version": 1, "name": split,
        "shardlist": [{"url": posixpath.basename(s["name"]), "nsamples": s["samples"], "filesize": s["bytes"]} for s in shards],
    })


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


def write_classes(fs, out_path: str, classes) -> dict:
    """One JSON line per class (label, names, taxonomy, extra fields): what evaluation maps predictions through."""
    lines = [dumps({"label": c.label, "name": c.name, "common_name": c.common_name, "taxonomy": c.ranks,
                    "extra": dict(c.extra)}) for c in classes]
    return write_text(fs, posixpath.join(out_path, CLASSES), "".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------- reading back

class ManifestUnreadable(Exception):
    """OUT/manifest.json exists but is not a manifest vlconvert wrote.  ``why`` says what it is instead when that
    is known ("a FIFO, not a regular file", "far too large"); ``damaged`` when it is not JSON at all: a build's
    manifest cut short or edited badly, rather than some other file."""

    def __init__(self, why: str | None = None, damaged: bool = False):
        super().__init__(why or "not a vlconvert manifest")
        self.why, self.damaged = why, damaged


def read_manifest(fs, out_path: str) -> dict:
    """The manifest of the build in ``out_path``: a JSON object with a ``format_version`` and a ``status``.

    FileNotFoundError when there is none, :class:`ManifestUnreadable` when the file is not a manifest.
    Read bounded and without blocking: a folder from someone else may hold a FIFO or gigabytes by that name."""
    try:
        raw = read_bounded(fs, posixpath.join(out_path, MANIFEST), MAX_MANIFEST_BYTES)
    except (NotARegularFile, IsADirectoryError) as exc:
        raise ManifestUnreadable(exc.strerror) from None
    except ValueError:
        raise ManifestUnreadable("far too large") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ManifestUnreadable("not valid JSON", damaged=True) from None
    if not isinstance(data, dict) or "format_version" not in data or "status" not in data:
        raise ManifestUnreadable()
    return data


def read_sizes(fs, split_dir: str) -> dict[str, int]:
    """A split's ``sizes.json``: shard file name → samples.  FileNotFoundError when there is none."""
    with fs.open(posixpath.join(split_dir, SIZES), "rb") as f:
        sizes = json.load(f)
    if not isinstance(sizes, dict) or not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes.values()):
        raise ValueError(f"{split_dir}/{SIZES}: not a mapping of shard name to sample count")
    return sizes


def read_lines(fs, path: str) -> list[str]:
    """The entries of a file :func:`write_lines` wrote (``classnames.txt``, the zero-shot templates)."""
    with fs.open(path, "rb") as f:
        return [line for line in f.read().decode("utf-8").splitlines() if line.strip()]


def read_classes(fs, out_path: str) -> list[dict]:
    """``classes.jsonl``, one dict per class as :func:`write_classes` wrote it; [] for a build without one."""
    path = posixpath.join(out_path, CLASSES)  # the build's own file, whatever a tampered manifest names
    if not fs.exists(path):
        return []
    with fs.open(path, "rb") as f:
        return [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------- the manifest's assembly


def in_progress_manifest(resume_key: str) -> dict:
    """What claims an output folder while its build runs: a later run with the same key resumes it."""
    return {"format_version": FORMAT_VERSION, "vlconvert_version": __version__, "status": "in_progress", "resume_key": resume_key}


def complete_manifest(described: Mapping[str, Any], errors: Mapping[str, Any], holdout: Mapping[str, Any] | None,
                      splits: Mapping[str, Any], side_files: Mapping[str, dict], config: Mapping[str, Any],
                      balance: Mapping[str, Any] | None = None, dedup: Mapping[str, Any] | None = None) -> dict:
    """A finished build's account (docs/output-format.md), in the order its fields are documented.

    ``described``: how the build ran (adapter, seed, shard bounds, image, templates, prompts);
    ``side_files``: the size and sha256 of every side file, so ``vlconvert validate`` can tell
    a damaged or edited one; ``config``: every recorded option, as ``--config`` reads it back;
    ``balance``: what ``--min-per-class`` / ``--max-per-class`` left out of the training splits; ``dedup``: what
    ``--dedup`` found and left out (``duplicates.jsonl``)."""
    return {
        "format_version": FORMAT_VERSION,
        "vlconvert_version": __version__,
        "status": "complete",
        **described,
        "errors": dict(errors),
        "holdout": dict(holdout) if holdout else None,
        "balance": dict(balance) if balance else None,
        "dedup": dict(dedup) if dedup else None,
        "splits": dict(splits),
        "files": dict(sorted(side_files.items())),
        "config": dict(config),
    }
