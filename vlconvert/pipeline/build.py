"""``vlconvert.build``: check → plan → run → finish.

* **check**: the options (:mod:`vlconvert.options`), where the output goes, the Ray
  cluster, the adapter; nothing is read or written yet;
* **plan** (:mod:`~vlconvert.pipeline.build_plan`): classes, captions, the shard tasks;
* **run**: claims the output folder, skips the tasks an interrupted run finished, runs
  the rest (:mod:`~vlconvert.pipeline.executors`);
* **finish** (:mod:`~vlconvert.pipeline.finish`): final shard names, side files, the manifest.

Every record read ends in a shard or in ``errors.jsonl``; the manifest states
both counts per split and the build fails loudly if they do not add up.
"""

from __future__ import annotations

import inspect
import os
import posixpath
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from vlconvert.errors import VLConvertError
from vlconvert.options import OPTIONS, BuildOptions, resolve
from vlconvert.pipeline import output_folder
from vlconvert.pipeline.balance import check_bounds
from vlconvert.pipeline.build_plan import BuildPlan, make_plan
from vlconvert.pipeline.build_tables import check_against
from vlconvert.pipeline.executors import check_ray, run_tasks
from vlconvert.pipeline.finish import check_error_limit, describe, finish, resume_settings
from vlconvert.pipeline.image_files import ReadLimits
from vlconvert.pipeline.images import ImageOptions
from vlconvert.pipeline.ledger import records_digest
from vlconvert.pipeline.output_folder import SplitSummary
from vlconvert.pipeline.shard_task import WorkerConfig
from vlconvert.pipeline.task_result import ShardResult
from vlconvert.records import Adapter, take_records
from vlconvert.registry import create_adapter
from vlconvert.storage import check_no_glob, filesystem, storage_errors

__all__ = ["BuildSummary", "PlanSummary", "PlannedSplit", "Progress", "SplitSummary", "build"]


@dataclass
class BuildSummary:
    out: str
    splits: dict[str, SplitSummary]
    seconds: float
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    duplicate_classnames: int = 0  # lines of classnames.txt that repeat another (zero-shot cannot tell them apart)
    resumed_tasks: int = 0  # shard tasks an interrupted run of the same build had already finished
    balance: dict | None = None  # the manifest's "balance" entry: what --min/--max-per-class left out

    @property
    def written(self) -> int:
        return sum(s.written for s in self.splits.values())

    @property
    def errored(self) -> int:
        return sum(s.errored for s in self.splits.values())

    @property
    def shards(self) -> int:
        return sum(len(s.shards) for s in self.splits.values())

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class PlannedSplit:
    records: int  # records that will be converted
    rejected: int  # rows the adapter already rejected
    held_out: int  # records of held-out classes, kept out on purpose
    tasks: int  # shard tasks; a task writes one shard, or more if the byte bound is crossed
    ignored: list[str] = field(default_factory=list)  # hidden files the adapter leaves out by convention
    capped: int = 0  # records --min-per-class and --max-per-class leave out


@dataclass
class PlanSummary:
    """What ``build(dry_run=True)`` reports: the plan, without an image read or a file written."""

    out: str
    classes: int
    splits: dict[str, PlannedSplit]
    shard_size: int
    seconds: float
    balance: dict | None = None  # the manifest's "balance" entry: what --min/--max-per-class leave out


@dataclass(frozen=True)
class Progress:
    done: int  # records finished (written or rejected), including those of resumed tasks
    total: int
    errors: int
    resumed: int  # records finished by an earlier, interrupted run


@dataclass
class Target:
    """Where the build reads and writes, once checked."""

    source: Adapter
    fs: Any  # the output's fsspec filesystem
    out_path: str
    image: ImageOptions


@storage_errors
def build(adapter: str | Adapter, root: str, out: str, *, progress: Callable[[Progress], None] | None = None,
          **options: Any) -> BuildSummary | PlanSummary:
    """Convert one dataset into captioned webdataset shards under ``out``.

    ``adapter`` is a registered adapter's name (constructed with ``root`` and
    ``adapter_options``) or an adapter object (``root`` is then only recorded).
    ``options`` are the keyword names of :data:`vlconvert.options.OPTIONS` (docs/configuration.md):
    ``splits``, ``templates``, ``resize``, ``shard_size``, ``workers``, ``seed``, ``overwrite``, …

    ``workers`` processes write shards (default 1 locally; with ``executor="ray"``
    every CPU of the cluster).  Rerunning an interrupted build with the same
    inputs and options finishes it, redoing only unfinished shards, unless
    ``resume=False``.  ``dry_run=True`` reads the metadata, plans the shards and
    returns a :class:`PlanSummary` without reading an image or writing a file.
    ``progress(Progress)`` is called as shard tasks finish.
    Rejected records go to ``errors.jsonl`` and the build goes on; with ``strict`` (none
    allowed) or ``max_error_rate`` (a fraction of the records read) it raises
    :class:`TooManyRejected` when they pass the limit.
    Raises :class:`VLConvertError` for problems with the input or options.
    """
    started = time.perf_counter()
    name = adapter if isinstance(adapter, str) else getattr(adapter, "name", type(adapter).__name__)
    settings = resolve({**options, "adapter": name, "root": root, "out": out})
    target = check(adapter, settings)
    # "auto" is recorded as the codec it chose, so a rebuild from the manifest takes the same path (and bytes).
    settings = settings.replace(image_codec=target.image.codec)
    with _input_errors():
        plan = make_plan(target.source, name, settings)
    settings = settings.replace(splits=list(plan.splits))
    check_error_limit(settings, sum(len(p.rejected) for p in plan.splits.values()), plan.read, plan=plan)
    if settings.dry_run:
        planned = {s: PlannedSplit(len(p.records), len(p.rejected), p.held_out, len(p.tasks), p.ignored, p.capped)
                   for s, p in plan.splits.items()}
        return PlanSummary(settings.out, len(plan.classes), planned, settings.shard_size, time.perf_counter() - started, plan.balance)
    results, resumed_tasks = run(settings, target, plan, progress)
    finished = finish(settings, target.fs, target.out_path, plan, results, target.image, target.source)
    summary = BuildSummary(settings.out, finished.splits, time.perf_counter() - started, finished.by_stage, plan.prompts.duplicates,
                           resumed_tasks, plan.balance)
    check_error_limit(settings, finished.rejected, plan.read, summary=summary)
    return summary


def _signature() -> inspect.Signature:
    """What ``help(vlconvert.build)`` shows: every option with its default, though build() takes them as ``**options``."""
    Parameter = inspect.Parameter
    given = [Parameter(name, Parameter.POSITIONAL_OR_KEYWORD) for name in ("adapter", "root", "out")]
    keywords = [Parameter(o.name, Parameter.KEYWORD_ONLY, default=o.default) for o in OPTIONS if o.name not in {"adapter", "root", "out"}]
    return inspect.Signature([*given, Parameter("progress", Parameter.KEYWORD_ONLY, default=None), *keywords])


build.__signature__ = _signature()


def check(adapter: str | Adapter, settings: BuildOptions) -> Target:
    """Everything that can be checked before the (long) planning, so a typo costs seconds, not the read of train.json."""
    try:
        image = ImageOptions(settings.resize, settings.resize_mode, settings.image_format, settings.quality, settings.upscale,
                             settings.max_image_pixels, settings.image_codec)
    except ValueError as exc:
        raise VLConvertError(str(exc)) from None
    check_bounds(settings.min_per_class, settings.max_per_class)
    check_no_glob(settings.out, "--out")
    fs, out_path = filesystem(settings.out, "--out")
    if fs.isfile(out_path):
        raise VLConvertError(f"{settings.out}: is a file; --out names the folder the shards go into")
    if settings.executor == "ray":
        check_ray(settings.ray_address)  # before anything is written: a wrong address must not leave a claimed OUT
    check_against(settings.dedup_against, fs, out_path, settings.out)  # read only at the end: a typo must fail now
    with _input_errors():
        source = create_adapter(adapter, settings.root, settings.adapter_options) if isinstance(adapter, str) else adapter
        _check_apart(source, settings, fs, out_path)
    return Target(source, fs, out_path, image)


@contextmanager
def _input_errors():
    """An unreadable dataset or option file is the input's problem: exit 2, nothing written."""
    try:
        yield
    except OSError as exc:
        raise VLConvertError(f"{exc.filename or 'input'}: {exc.strerror or exc}") from exc


def run(settings: BuildOptions, target: Target, plan: BuildPlan, progress) -> tuple[dict[str, list[ShardResult]], int]:
    """Claims (or resumes) the output folder and runs every shard task an earlier run did not finish."""
    fs, out_path = target.fs, target.out_path
    key = output_folder.resume_key(resume_settings(settings, plan, describe(settings, plan, target.image)))
    done = output_folder.prepare(fs, settings.out, out_path, settings.splits, key, settings.overwrite, settings.resume)
    for s in settings.splits:
        fs.makedirs(posixpath.join(out_path, s), exist_ok=True)
    # Workers get an absolute location: a Ray worker's own folder is not the caller's.
    config = WorkerConfig(plan.classes, plan.captions, target.image, fs.unstrip_protocol(out_path), settings.shard_size,
                          settings.shard_max_bytes, os.getcwd(), ReadLimits(_image_root(target.source), settings.max_image_bytes))
    results: dict[str, list[ShardResult]] = {s: [] for s in settings.splits}
    count = _Counter(sum(len(p.records) for p in plan.splits.values()), sum(len(p.rejected) for p in plan.splits.values()), progress)

    def work():
        for p in plan.splits.values():
            for t in p.tasks:
                records = take_records(p.records, t.positions)
                kept = done.get((t.split, t.index))
                if kept is not None and kept.inputs == records_digest(records):
                    results[t.split].append(kept)
                    count.add(kept, resumed=True)
                else:
                    yield t.split, t.index, records

    count.show()
    for result in run_tasks(config, work(), settings.executor, settings.workers, settings.ray_address):
        results[result.split].append(result)
        count.add(result)
    return results, count.resumed_tasks


class _Counter:
    """What the progress callback is told as tasks finish."""

    def __init__(self, total: int, errors: int, progress):
        self.total, self.errors, self.progress = total, errors, progress
        self.finished = self.resumed = self.resumed_tasks = 0

    def add(self, result: ShardResult, resumed: bool = False) -> None:
        self.finished += result.records
        self.errors += len(result.rejected)
        self.resumed += result.records if resumed else 0
        self.resumed_tasks += resumed
        self.show()

    def show(self) -> None:
        if self.progress:
            self.progress(Progress(self.finished, self.total, self.errors, self.resumed))


def _check_apart(source, settings: BuildOptions, out_fs, out_path: str) -> None:
    """The dataset's folder as the adapter reads it (a table's folder, not the table), else ``root`` if it is a folder."""
    root = settings.root
    files = getattr(source, "files", None)
    if files is not None and hasattr(files, "fs") and hasattr(files, "path"):
        data_fs, data_path = files.fs, files.path
    elif isinstance(root, str) and root and os.path.isdir(root):
        data_fs, data_path = filesystem(root, "--root")
    else:
        return
    output_folder.check_apart(out_fs, out_path, data_fs, data_path, settings.out, root)


def _image_root(source) -> str | None:
    """The folder the adapter's local images must resolve into (docs/security.md); None: the adapter allows any."""
    root = getattr(source, "image_root", None)
    return os.path.realpath(root) if isinstance(root, str) and root else None
