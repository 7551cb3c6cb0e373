"""Exports a converted split in the layout CLIP_benchmark's ``wds/`` datasets read.

CLIP_benchmark expects ``DIR/<split>/nshards.txt`` and shards named
``0.tar … N-1.tar``, with ``classnames.txt`` and
``zeroshot_classification_templates.txt`` beside the split folders.  The
shards are linked, not copied, so the export costs no space.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem

from vlconvert.errors import VLConvertError
from vlconvert.format import CLASSNAMES, SIZES, ZEROSHOT_TEMPLATES, read_sizes


def export_clip_benchmark(data: str, split: str, out: str) -> Path:
    source, target = Path(data), Path(out)
    if "://" in data or not (source / split / SIZES).is_file():
        raise VLConvertError(f"{data}: no local {split}/{SIZES}; export needs a local `vlconvert build` output")
    shards = sorted(read_sizes(LocalFileSystem(), str(source / split)))
    (target / split).mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(shards):
        link = target / split / f"{number}.tar"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink((source / split / name).resolve(), link)
    (target / split / "nshards.txt").write_text(f"{len(shards)}\n")
    for name in (CLASSNAMES, ZEROSHOT_TEMPLATES):
        shutil.copyfile(source / name, target / name)
    return target
