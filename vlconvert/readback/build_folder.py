"""A finished build's folder as the read-back tools open it: the manifest, checked field by field, and its shards.

The manifest is read by :func:`vlconvert.format.read_manifest`; here a folder
that is not a build is a one-line :class:`VLConvertError`, and a build's
damaged manifest is a finding for ``validate`` and ``inspect`` to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import vlconvert.format as output_format
from vlconvert.errors import VLConvertError
from vlconvert.storage import filesystem


def open_build(out: str) -> tuple[object, str, dict | None]:
    """(fs, path, manifest) of the build in ``out`` (a folder or fsspec URL); the manifest is None when it is
    not valid JSON.  Raises VLConvertError when ``out`` is not a vlconvert build."""
    fs, path = filesystem(out, "OUT")
    if not fs.exists(path):
        raise VLConvertError(f"{out}: no such folder")
    if not fs.isdir(path):
        raise VLConvertError(f"{out}: is a file, not a build's output folder")
    manifest = output_format.MANIFEST
    try:
        return fs, path, output_format.read_manifest(fs, path)
    except FileNotFoundError:
        raise VLConvertError(f"{out}: holds no {manifest}, so it is not a vlconvert build") from None
    except output_format.ManifestUnreadable as exc:
        if exc.damaged:
            return fs, path, None  # a build's manifest that got damaged: a finding, not a wrong argument
        raise VLConvertError(f"{out}: its {manifest} is not a vlconvert manifest" + (f" ({exc.why})" if exc.why else "")) from None


def build_manifest(data: str, required: bool = True) -> tuple[object, str, dict | None]:
    """(fs, path, manifest) of the build BUILD names; the manifest is None when there is none and it is not
    ``required``.  A manifest that is not one, or is damaged, is a one-line VLConvertError."""
    fs, path = filesystem(data, "BUILD")
    try:
        manifest = output_format.read_manifest(fs, path)
    except FileNotFoundError:
        if not required:
            return fs, path, None
        raise VLConvertError(f"{data}: no {output_format.MANIFEST}; give the --out folder of `vlconvert build`") from None
    except output_format.ManifestUnreadable as exc:
        raise VLConvertError(f"{data}: its {output_format.MANIFEST} is not a vlconvert manifest ({exc})") from None
    for problem in manifest_problems(manifest):
        raise VLConvertError(f"{data}: {output_format.MANIFEST}: {problem} (`vlconvert validate {data}` checks the whole build)")
    return fs, path, manifest


def require_split(manifest: dict, split: str, data: str) -> None:
    """A one-line VLConvertError when the build in ``data`` has no ``split``."""
    splits = list(manifest.get("splits", {}))
    if split not in splits:
        raise VLConvertError(f"--split {split}: the build in {data} has no such split; it has {', '.join(splits) or 'none'}")


def manifest_problems(manifest: dict) -> Iterator[str]:
    """A hand-edited or damaged manifest is reported, field by field, instead of crashing the checks."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not whole(manifest.get("num_classes", 0)):
        yield f"num_classes is {manifest.get('num_classes')!r}, not a count"
    splits = manifest.get("splits", {})
    if not isinstance(splits, dict):
        yield f"splits is a {type(splits).__name__}, not a mapping of split name to its account"
        return
    for split, info in splits.items():
        if not isinstance(info, dict):
            yield f"split {split}: its entry is a {type(info).__name__}, not a mapping"
            continue
        for name in ("read", "written", "errored", "held_out", "capped", "deduplicated", "filtered"):
            if name in info and not whole(info[name]):
                yield f"split {split}: {name} is {info[name]!r}, not a count"
        counts = info.get("class_counts", [])
        if not isinstance(counts, list) or not all(whole(c) for c in counts):
            yield f"split {split}: class_counts is not a list of counts"
        for n, shard in enumerate(info.get("shards", []) if isinstance(info.get("shards", []), list) else []):
            if not isinstance(shard, dict) or not isinstance(shard.get("name"), str) or not whole(shard.get("samples")) \
                    or not whole(shard.get("bytes")) or not isinstance(shard.get("sha256"), str):
                yield f"split {split}: shards[{n}] is not a shard entry (name, samples, bytes, sha256)"


def listed_shards(split: str, shards: list, add: Callable[[str, str], None]) -> list[dict]:
    """The split's shard entries whose names are ones a build writes; a name that is not (``../../etc/passwd``,
    an absolute path, another split's folder) is reported and never opened."""
    usable = []
    for n, shard in enumerate(shards):
        name = shard.get("name") if isinstance(shard, dict) else None
        if not isinstance(name, str) or not output_format.is_listed_shard_name(split, name):
            add(output_format.MANIFEST, f"split {split}: shards[{n}] is named {name!r}, not {split}/{split}-NNNNNN.tar "
                                        "as a build names them; not opened")
        else:
            usable.append(shard)
    return usable
