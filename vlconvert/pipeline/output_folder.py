"""The output folder's life: claimed, resumed or replaced at the start; shards named at the end.

A build claims its folder by writing an ``in_progress`` manifest that carries
the build's *resume key*, a digest of everything that decides the shards'
bytes (inputs, options, version).  Running the same command again on an
unfinished build with the same key resumes it; anything else in the folder
is replaced only with ``overwrite``, and then only when the folder holds a
vlconvert manifest and nothing a build does not write: a dataset, a thesis or a
folder whose ``manifest.json`` merely has that name is never deleted.

On a local disk the claim is exclusive (:func:`vlconvert.storage.write_exclusive`): of two runs finding the folder
empty at once, one claims it and the other stops.  On an object store a claim replaces any other, as every write
there does (fsspec has no create-if-absent for S3, GCS, Azure): two runs started together can both claim it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections import Counter
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from fsspec.implementations.local import LocalFileSystem

import vlconvert.format as output_format
from vlconvert.errors import VLConvertError
from vlconvert.pipeline import ledger
from vlconvert.pipeline.task_result import ShardResult
from vlconvert.storage import CLAIM_TEMP, uploads_are_atomic, write_exclusive
from vlconvert.version import __version__


def resume_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _read_manifest(fs, path: str) -> dict | None:
    """None when the folder holds no manifest; {} for a file by that name that is not one vlconvert wrote."""
    try:
        return output_format.read_manifest(fs, path)
    except FileNotFoundError:
        return None
    except (output_format.ManifestUnreadable, OSError):  # a folder, a FIFO, a huge file, another program's JSON
        return {}


_HEX64 = re.compile(r"[0-9a-f]{64}")


def build_status(manifest: dict | None) -> str | None:
    """``"complete"`` or ``"in_progress"`` for a manifest vlconvert wrote; None for anything else.

    Checked field by field, because ``--overwrite`` deletes what such a manifest vouches for:
    a file that merely is named manifest.json must not make a dataset deletable."""
    if not isinstance(manifest, dict) or manifest.get("format_version") != output_format.FORMAT_VERSION:
        return None
    if not isinstance(manifest.get("vlconvert_version"), str):
        return None
    status = manifest.get("status")
    if status == "in_progress":
        key = manifest.get("resume_key")
        return status if isinstance(key, str) and _HEX64.fullmatch(key) else None
    if status == "complete":
        return status if isinstance(manifest.get("splits"), dict) and isinstance(manifest.get("adapter"), dict) else None
    return None


def prepare(fs, out: str, out_path: str, splits: list[str], key: str, overwrite: bool, resume: bool, *,
            resumable: bool = True) -> dict[tuple[str, int], ShardResult]:
    """Make ``out`` ready; returns the tasks an interrupted identical build already finished.  ``resumable=False``:
    the caller (``vlconvert.reshard``, ``dedup --into``) cannot resume a run cut short, so offers only --overwrite."""
    fs.invalidate_cache()
    try:
        existing = fs.ls(out_path, detail=False) if fs.isdir(out_path) else []
    except FileNotFoundError:
        existing = []
    if existing and all(_CLAIM_TEMPS.fullmatch(posixpath.basename(e.rstrip("/"))) for e in existing):
        for entry in existing:  # claims cut short (a full disk, a kill): the folder is still empty
            with suppress(FileNotFoundError):  # another run cleared it first
                fs.rm(entry)
        existing = []
    if existing:
        manifest = _read_manifest(fs, out_path)
        if manifest is None:
            raise VLConvertError(f"{out}: not empty and holds no {output_format.MANIFEST}, so it is not a vlconvert build; "
                                 "refusing to delete it")
        status = build_status(manifest)
        if status is None:
            raise VLConvertError(f"{out}: its {output_format.MANIFEST} is not one vlconvert wrote, so the folder is not a vlconvert build; "
                                 "refusing to write into it or delete it")
        unfinished = status == "in_progress"
        same = manifest.get("resume_key") == key
        if unfinished and same and resume:
            ledger.remove_partial(fs, out_path, splits)
            return ledger.load_committed(fs, out_path, splits)
        if not overwrite:
            if unfinished and same:
                raise VLConvertError(f"{out}: holds an unfinished run of this same build; rerun without --no-resume to finish it, "
                                     "or add --overwrite to start over" if resumable else
                                     f"{out}: holds an unfinished copy of this same selection, cut short; add --overwrite to start over")
            if unfinished and manifest.get("vlconvert_version") != __version__:
                raise VLConvertError(f"{out}: holds an unfinished build by vlconvert {manifest.get('vlconvert_version')} (this is "
                                     f"{__version__}), which cannot be resumed by another version; pass --overwrite to discard it")
            if unfinished:
                raise VLConvertError(f"{out}: holds an unfinished build with other inputs or options; pass --overwrite to discard it")
            raise VLConvertError(f"{out}: folder is not empty; pass --overwrite to replace an earlier vlconvert build there")
        foreign = foreign_files(fs, out_path, manifest)
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            what = "which its manifest does not list" if all(map(_OPTIONAL.fullmatch, foreign)) else "which no vlconvert build writes"
            raise VLConvertError(f"{out}: holds {foreign[0]}{more}, {what}; --overwrite deletes only "
                                 "a build's own files: move them away or choose another --out")
        _delete_build(fs, out_path, existing)
    try:
        fs.makedirs(out_path, exist_ok=True)
    except OSError as exc:
        raise VLConvertError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from exc
    # Claims the folder at once: an interrupted build can be resumed, or replaced with --overwrite.
    claim = output_format.utf8(output_format.dumps(output_format.in_progress_manifest(key), indent=2) + "\n")
    if not write_exclusive(fs, posixpath.join(out_path, output_format.MANIFEST), claim):
        raise VLConvertError(f"another vlconvert run claimed {out} at the same moment; let that run finish, "
                             "or write to another folder")
    return {}


# What a build writes (see docs/output-format.md), relative to OUT.  "*.tmp" is a write cut short.
_SIDE_FILES = (output_format.MANIFEST, output_format.ERRORS, output_format.CLASSNAMES, output_format.CLASSES,
               output_format.ZEROSHOT_TEMPLATES)
# Side files not every build has (a build from before them, one without --dedup): a build's own only where its
# manifest's ``files`` lists them, so --overwrite never deletes a person's README.md beside an older build.
_OPTIONAL_FILES = (output_format.ERRORS_TABLE, output_format.DUPLICATES, output_format.CARD)
_WIDS = re.escape(output_format.WIDS_INDEX_SUFFIX)
_OPTIONAL = re.compile(rf"{'|'.join(map(re.escape, _OPTIONAL_FILES))}|(?P<split>[A-Za-z0-9_-]+)/(?P=split){_WIDS}")
_CLAIM_TEMPS = re.compile(rf"{re.escape(output_format.MANIFEST)}(?:\.tmp|{CLAIM_TEMP.pattern})")  # write_atomic's, write_exclusive's
_OWN_FILES = re.compile(
    rf"(?:{'|'.join(map(re.escape, _SIDE_FILES))})(?:\.tmp)?|(?:{'|'.join(map(re.escape, _OPTIONAL_FILES))})\.tmp"
    rf"|{_CLAIM_TEMPS.pattern}"
    r"|_progress/[A-Za-z0-9_-]+/[0-9]{6}\.json(?:\.tmp)?"
    rf"|(?P<split>[A-Za-z0-9_-]+)/(?:{re.escape(output_format.SIZES)}(?:\.tmp)?|(?P=split)-[0-9]{{6}}\.tar"
    rf"|(?P=split){_WIDS}\.tmp"
    r"|(?P=split)-[0-9]{6}\.parquet|_(?:tmp|done)-[0-9]{6}-[0-9]{3}\.(?:part|tar|parquet\.part))"
)


def _owner(manifest: dict | None):
    """Whether a path relative to OUT is the own of the build ``manifest`` describes.  A complete build owns the
    optional side files its ``files`` lists; an unfinished one (a claim lists no files) those a finish cut short may
    have written but README.md: the card, written just before the manifest, is the one such name a person writes."""
    status = build_status(manifest)
    files = manifest.get("files") if status == "complete" else None
    listed = set(files) if isinstance(files, dict) else None
    return lambda relative: _OWN_FILES.fullmatch(relative) is not None or (_OPTIONAL.fullmatch(relative) is not None and (
        relative in listed if listed is not None else status == "in_progress" and relative != output_format.CARD))


def foreign_files(fs, out_path: str, manifest: dict | None = None) -> list[str]:
    """Entries under ``out_path`` that are not a build's own (``manifest``: the folder's, read if not given), sorted.

    Links count as foreign and are never followed: a link in OUT may lead anywhere."""
    root = out_path.rstrip("/") or "/"
    own = _owner(manifest if manifest is not None else _read_manifest(fs, out_path))
    foreign = []
    if isinstance(fs, LocalFileSystem):
        for folder, dirs, names in os.walk(root, followlinks=False, onerror=_unlistable):
            relative_folder = os.path.relpath(folder, root)
            depth = 0 if relative_folder == "." else relative_folder.count("/") + 1
            for name in dirs:
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, root)
                # Only the folders a build makes: OUT/<split>, OUT/_progress, OUT/_progress/<split>.
                allowed = depth == 0 or (depth == 1 and relative_folder == "_progress")
                if os.path.islink(path) or not allowed:
                    foreign.append(relative + ("" if os.path.islink(path) else "/"))
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))
                       and (depth == 0 or (depth == 1 and relative_folder == "_progress"))]
            for name in names:
                relative = os.path.relpath(os.path.join(folder, name), root)
                if os.path.islink(os.path.join(folder, name)) or not own(relative):
                    foreign.append(relative)
        return sorted(foreign)
    for path in fs.find(root, withdirs=False):  # object stores: no links, no empty folders
        relative = posixpath.relpath(path.rstrip("/"), root)
        if not own(relative):
            foreign.append(relative)
    return sorted(foreign)


def _unlistable(error: OSError) -> None:
    raise VLConvertError(f"{error.filename}: cannot list this folder ({error.strerror}); refusing to delete what it may hold")


_DATASET = "the dataset folder"


def check_apart(out_fs, out_path: str, data_fs, data_path: str, out: str, root: str, *, flag: str = "--out",
                source_is: str = _DATASET) -> None:
    """``--out`` may not be the dataset's folder, hold it, or sit inside it.

    A build written into the dataset would be read as data by the next build (an extra
    class of an image folder), and ``--overwrite`` there could delete the dataset.  ``flag`` and ``source_is`` name
    the option and what it reads for another caller (``dedup --out``: ``"--out"``, ``"the build it reads"``)."""
    local = isinstance(out_fs, LocalFileSystem)
    if local != isinstance(data_fs, LocalFileSystem) or (not local and out_fs.protocol != data_fs.protocol):
        return
    if local:  # through links: "-o link-to-data" is the data
        out_real, data_real = os.path.realpath(out_path), os.path.realpath(data_path)
    else:
        out_real, data_real = "/" + out_path.strip("/"), "/" + data_path.strip("/")
    inside = (out_real.rstrip("/") + "/").startswith(data_real.rstrip("/") + "/")
    holds = (data_real.rstrip("/") + "/").startswith(out_real.rstrip("/") + "/")
    if inside or holds:
        where = "is" if out_real.rstrip("/") == data_real.rstrip("/") else "is inside" if inside else "contains"
        why = ("a later build would read the shards as data, and --overwrite could delete the dataset" if source_is == _DATASET
               else "--overwrite there could delete it")
        raise VLConvertError(f"{flag} {out} {where} {source_is} {root}: vlconvert never writes into the data it reads ({why}); "
                             f"choose an {flag} outside it")


def _delete_build(fs, out_path: str, entries: list[str]) -> None:
    """The manifest goes last: a delete cut short still leaves a folder vlconvert knows is its own."""
    manifest = posixpath.join(out_path, output_format.MANIFEST)
    for entry in entries:
        if entry.rstrip("/") != manifest:
            fs.rm(entry, recursive=True)
    fs.rm(manifest)


@dataclass
class SplitSummary:
    read: int
    written: int
    errored: int
    shards: list[dict]
    class_counts: list[int]
    held_out: int = 0  # records of held-out classes (--holdout-classes)
    capped: int = 0  # records left out by --min-per-class and --max-per-class
    deduplicated: int = 0  # samples --dedup left out of a training split (duplicates.jsonl lists each with its twin)
    image_members: dict = field(default_factory=dict)  # samples per image member: more than one breaks Hugging Face's loader
    ignored: int = 0  # hidden files the adapter left out by convention: not records, counted so nothing vanishes


def finish_split(fs, out_path: str, split: str, results: list[ShardResult], num_classes: int,
                 planned: int, rejected_before: int, left_out: Mapping[str, int], deduplicated: int = 0) -> tuple[SplitSummary, dict]:
    """Give the split's committed parts their final, consecutive names; account for every record.
    Returns the split's summary and what the manifest records of its sizes.json.

    ``planned`` records went into tasks; the adapter rejected ``rejected_before``
    rows, and ``left_out`` counts the records kept out on purpose by reason
    (``held_out``, ``capped``: each a field of :class:`SplitSummary`); ``deduplicated`` samples were written, then
    dropped from their parts by ``--dedup``."""
    read = planned + rejected_before + sum(left_out.values())
    split_dir = posixpath.join(out_path, split)
    shards, counts, renames, members = [], Counter(), [], Counter()
    for result in sorted(results, key=lambda r: r.index):
        counts.update(result.class_counts)
        members.update(result.image_members)
        for info in result.shards:
            name, table = output_format.shard_name(split, len(shards)), output_format.table_name(split, len(shards))
            renames += [(info.path, posixpath.join(split_dir, name)), (ledger.table_path(info.path), posixpath.join(split_dir, table))]
            shards.append({"name": f"{split}/{name}", "samples": info.samples, "bytes": info.bytes, "sha256": info.sha256,
                           "table": {"name": f"{split}/{table}", "bytes": info.table_bytes, "sha256": info.table_sha256}})
    _rename_all(fs, split_dir, renames)
    sizes = output_format.write_sizes(fs, split_dir, shards)
    written = sum(s["samples"] for s in shards)
    errored = rejected_before + sum(len(r.rejected) for r in results)
    left_out = {**left_out, "deduplicated": deduplicated}
    if written + errored + sum(left_out.values()) != read:
        terms = "".join(f" + {n} {reason.replace('_', ' ')}" for reason, n in left_out.items())
        raise RuntimeError(f"split {split}: {read} records read but {written} written + {errored} rejected{terms}")
    summary = SplitSummary(read, written, errored, shards, [counts.get(label, 0) for label in range(num_classes)], **left_out,
                           image_members=dict(sorted((+members).items())))
    return summary, sizes


def _rename_all(fs, split_dir: str, renames: list[tuple[str, str]]) -> None:
    # After a crash in this very step some parts already have their final names; those stay.
    try:
        present = {posixpath.basename(p) for p in fs.ls(split_dir, detail=False)}
    except FileNotFoundError:
        present = set()
    renames = [(source, target) for source, target in renames if posixpath.basename(source) in present]
    if not renames:
        return
    if not uploads_are_atomic(fs):
        for source, target in renames:
            fs.mv(source, target)
        return
    # On an object store a rename is a server-side copy; fsspec's async stores run a list of them
    # concurrently, which for iNat-2021's 2,687 shards is minutes rather than an hour.
    sources, targets = zip(*renames)
    fs.copy(list(sources), list(targets))
    fs.rm(list(sources))
