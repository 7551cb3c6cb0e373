"""One shard task: read image → prepare → caption → write, for each of the task's records, then commit.

A task needs only the classes, the templates, the image options and the
output location (a ``WorkerConfig``), plus its records.  ``ShardTaskRunner``
is the same code in this process, in a pool worker and in a Ray actor.
"""

from __future__ import annotations

import ctypes
import operator
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlconvert.captions.render import CaptionError, CaptionRenderer, CaptionSpec
from vlconvert.format import CAPTION_MEMBER, LABEL_MEMBER, METADATA_MEMBER, caption_member, dumps, utf8
from vlconvert.pipeline import shard_table
from vlconvert.pipeline.image_files import ReadLimits, read_image_bytes
from vlconvert.pipeline.images import ImageError, ImageOptions, prepare
from vlconvert.pipeline.ledger import commit, part_path, records_digest, table_path
from vlconvert.pipeline.shard_table import PartRows, caption_key, sample_row
from vlconvert.pipeline.tar_writer import RollingTarWriter, ShardInfo, TarPart
from vlconvert.pipeline.task_result import ShardResult
from vlconvert.records import ClassInfo, Record, Rejected
from vlconvert.storage import filesystem


@dataclass(frozen=True)
class WorkerConfig:
    classes: Sequence[ClassInfo]
    captions: CaptionSpec
    image: ImageOptions
    out: str  # the build's output folder: an absolute path or an fsspec URL
    max_samples: int
    max_bytes: int
    cwd: str = ""  # relative image paths are relative to the caller's folder, wherever the worker runs
    read: ReadLimits = ReadLimits()  # where local images may be read from, and how many bytes


class ShardTaskRunner:
    """Runs shard tasks: each record through the image, caption and tar stages, then the commit."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.fs, self.out_path = filesystem(config.out, "--out")
        self.captions = CaptionRenderer(config.captions.templates, config.classes)
        self.table_schema = shard_table.schema([t.name for t in config.captions.templates])

    def run(self, split: str, index: int, records: Sequence[Record]) -> ShardResult:
        """Write one task's shard (parts, if the byte bound is crossed) and commit it."""

        def open_part(part: int) -> TarPart:
            path = part_path(self.fs, self.out_path, split, index, part)
            return TarPart(self.fs.open(path, "wb"), path)

        result = ShardResult(split, index, [], inputs=records_digest(records))
        count = len(self.config.classes)
        tables: list[PartRows] = []
        with RollingTarWriter(open_part, self.config.max_samples, self.config.max_bytes) as tar_writer:
            for record in records:
                if not _is_label(record.label, count):
                    reason = f"label {record.label!r} is not one of the adapter's {count} classes (0..{count - 1})"
                    result.rejected.append(Rejected(split, record.key, record.source or _describe(record.image), reason, "adapter"))
                    continue
                try:
                    members, row, thumbnail = self._members(record)
                except (ImageError, CaptionError) as exc:
                    stage = "image" if isinstance(exc, ImageError) else "caption"
                    result.rejected.append(Rejected(split, record.key, record.source or _describe(record.image), str(exc), stage))
                    continue
                except Exception as exc:  # noqa: BLE001  one odd record (a Pillow or codec bug) must not end a 2.7M-image build
                    reason = f"unexpected {type(exc).__name__} while preparing this record: {exc}"
                    result.rejected.append(Rejected(split, record.key, record.source or _describe(record.image), reason, "image"))
                    continue
                part = tar_writer.write(record.key, members)
                tables.extend(PartRows() for _ in range(part + 1 - len(tables)))
                tables[part].add(row, thumbnail)
                result.class_counts[operator.index(record.label)] += 1
                result.image_members[members[0][0]] += 1
            parts = tar_writer.close()
        result.shards = [self._write_table(info, rows) for info, rows in zip(parts, tables)]
        return commit(self.fs, self.out_path, result)

    def _write_table(self, info: ShardInfo, rows: PartRows) -> ShardInfo:
        size, digest = shard_table.write(self.fs, table_path(info.path), shard_table.encode(rows, self.table_schema))
        return ShardInfo(info.path, info.samples, info.bytes, info.sha256, size, digest)

    def _members(self, record: Record) -> tuple[list[tuple[str, bytes]], dict, np.ndarray]:
        """The sample's tar members, its row of the shard's table, and its image's thumbnail."""
        spec = self.config.captions
        primary = spec.choose(record.key)
        texts = {t.name: self.captions.render(t, record) for t in spec.templates}
        captions = [(CAPTION_MEMBER, texts[primary.name])] + [(caption_member(t.name), texts[t.name]) for t in spec.named]
        source = read_image_bytes(self._locate(record.image), self.config.read)
        image = prepare(source, self.config.image, record.crop)
        label = operator.index(record.label)
        cls = self.config.classes[label]
        sample = {
            "key": record.key,
            "split": record.split,
            "label": label,
            "class_name": cls.name,
            "common_name": cls.common_name,
            "taxonomy": cls.ranks,
            "class_fields": dict(cls.extra),
            "source": record.source or _describe(record.image),
            "width": image.width,
            "height": image.height,
            "metadata": dict(record.metadata),
            "caption_template": primary.name,
            # every rendered caption, for open_clip's --json-text-key / --json-text-key-probs to mix without a rebuild
            **{caption_key(name): text for name, text in texts.items()},
        }
        members = [(image.extension, image.data)] + [(member, utf8(text)) for member, text in captions]
        members.append((METADATA_MEMBER, utf8(dumps(sample))))  # strict JSON: a CSV's "inf" becomes null, not Infinity
        members.append((LABEL_MEMBER, str(label).encode()))
        row = sample_row(record.key, record.split, label, cls.name, texts, primary.name, sample["source"], source, image, members)
        return members, row, image.thumbnail

    def _locate(self, image: str | bytes) -> str | bytes:
        if isinstance(image, bytes) or "://" in image or os.path.isabs(image) or not self.config.cwd:
            return image
        return os.path.join(self.config.cwd, image)


def _is_label(label, count: int) -> bool:
    if isinstance(label, bool):
        return False
    try:
        return 0 <= operator.index(label) < count  # numpy integers are labels too
    except TypeError:
        return False


def _describe(image: str | bytes) -> str:
    return image if isinstance(image, str) else f"<{len(image)} bytes>"


# Pool workers keep one ShardTaskRunner for their lifetime (templates compiled once).
_worker: ShardTaskRunner | None = None


def init_worker(config: WorkerConfig, parent: int | None = None) -> None:
    global _worker
    # Ctrl-C is the parent's to handle: it lets running tasks commit, then stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        die_with_parent(parent)
    _worker = ShardTaskRunner(config)


def die_with_parent(parent: int) -> None:
    """End this worker when the build process that started it dies, even by ``kill -9``.

    Left alone, a pool worker goes on converting (and holding memory, and writing parts) for a parent
    that is gone.  On Linux the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``);
    everywhere, a watchdog thread notices the worker was handed to another parent."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog alone
    if os.getppid() != parent:  # died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="vlconvert-parent-watchdog", daemon=True).start()


def run_task(split: str, index: int, records: Sequence[Record]) -> ShardResult:
    assert _worker is not None, "init_worker was not called in this process"
    return _worker.run(split, index, records)
