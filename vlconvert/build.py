"""``vlconvert.build``: adapter → plan → shard tasks (here or in workers) → manifest.

Every record read ends in a shard or in ``errors.jsonl``; the manifest states
both counts per split and the build fails loudly if they do not add up.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from . import __version__, holdout
from . import manifest as files
from .captions import CaptionRenderer, CaptionSpec, caption_spec
from .execute import ShardResult, ShardWriter, WorkerConfig, init_worker, run_task
from .images import ImageOptions
from .plan import ShardTask, plan_split
from .prompts import DEFAULT_PROMPT_SET, PromptSet, prompt_set
from .records import Record, Rejected, VLConvertError, take_records, validate_classes
from .registry import create_adapter
from .storage import filesystem

DEFAULT_SHARD_SIZE = 1000
DEFAULT_SHARD_MAX_BYTES = 1 << 30


@dataclass
class SplitSummary:
    read: int
    written: int
    errored: int
    shards: list[dict]
    class_counts: list[int]
    held_out: int = 0


@dataclass
class BuildSummary:
    out: str
    splits: dict[str, SplitSummary]
    seconds: float
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    duplicate_classnames: int = 0  # lines of classnames.txt that repeat another (zero-shot cannot tell them apart)

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
class _SplitPlan:
    records: Sequence[Record]
    rejected: list[Rejected]
    tasks: list[ShardTask]
    held_out: int = 0  # records of held-out classes, left out of a training split on purpose


def build(
    adapter: str,
    root: str,
    out: str,
    *,
    splits: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    template_mix: Mapping[str, float] | None = None,
    all_templates: bool = False,
    zeroshot_prompts: str = DEFAULT_PROMPT_SET,
    holdout_classes: str | float | None = None,
    resize: int | None = None,
    resize_mode: str = "shorter",
    image_format: str = "auto",
    quality: int = 95,
    upscale: bool = False,
    shard_size: int = DEFAULT_SHARD_SIZE,
    shard_max_bytes: int = DEFAULT_SHARD_MAX_BYTES,
    workers: int = 1,
    seed: int = 0,
    overwrite: bool = False,
    adapter_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildSummary:
    """Convert one dataset into captioned webdataset shards under ``out``.

    ``progress(done, total)`` is called as records are finished.
    Raises :class:`VLConvertError` for problems with the input or options.
    """
    started = time.perf_counter()
    splits = [splits] if isinstance(splits, str) else splits
    templates = [templates] if isinstance(templates, str) else templates
    _check_numbers(resize=resize, quality=quality, shard_size=shard_size, shard_max_bytes=shard_max_bytes, workers=workers)
    try:
        image = ImageOptions(resize, resize_mode, image_format, quality, upscale)
    except ValueError as exc:
        raise VLConvertError(str(exc)) from None
    source = create_adapter(adapter, root, dict(adapter_options or {}))
    classes = list(source.classes())
    validate_classes(classes, adapter)
    spec = caption_spec(list(templates or []), template_mix, all_templates, seed)
    renderer = CaptionRenderer(spec.templates, classes)
    prompts = prompt_set(zeroshot_prompts, classes, spec, renderer)
    split_names = _choose_splits(source, splits)

    held = holdout.resolve(holdout_classes, classes, seed)
    if held and len(held) == len(classes):
        raise VLConvertError(f"--holdout-classes {holdout_classes} holds out every class; nothing would be left to train on")
    plans = {s: _plan(source, s, seed, shard_size, set(held) if holdout.is_training_split(s) else set()) for s in split_names}
    first = next((p.records[0] for p in plans.values() if len(p.records)), None)
    renderer.check_classes(first.metadata if first else None)

    fs, out_path = filesystem(out, "--out")
    _prepare_out(fs, out, out_path, overwrite)
    for s in split_names:
        fs.makedirs(posixpath.join(out_path, s), exist_ok=True)
    config = WorkerConfig(classes, spec, image, out, shard_size, shard_max_bytes)
    total = sum(len(p.records) for p in plans.values())
    results: dict[str, list[ShardResult]] = {s: [] for s in split_names}
    done = 0
    if progress:
        progress(done, total)
    for result in _execute(config, plans, workers):
        results[result.split].append(result)
        done += sum(i.samples for i in result.shards) + len(result.rejected)
        if progress:
            progress(done, total)

    summaries = {s: _finish_split(fs, out_path, s, plans[s], results[s], len(classes)) for s in split_names}
    all_rejected = [
        r for s in split_names
        for r in [*plans[s].rejected, *(r for res in sorted(results[s], key=lambda x: x.index) for r in res.rejected)]
    ]
    files.write_errors(fs, out_path, all_rejected)
    files.write_lines(fs, posixpath.join(out_path, files.CLASSNAMES), prompts.classnames)
    files.write_classes(fs, out_path, classes)
    files.write_lines(fs, posixpath.join(out_path, files.ZEROSHOT_TEMPLATES), prompts.templates)
    by_stage = dict(sorted(Counter(r.stage for r in all_rejected).items()))
    files.write_json(fs, posixpath.join(out_path, files.MANIFEST), {
        "format_version": files.FORMAT_VERSION,
        "vlconvert_version": __version__,
        "status": "complete",
        "adapter": {"name": adapter, "root": root, "options": dict(adapter_options or {})},
        "seed": seed,
        "shard_size": shard_size,
        "shard_max_bytes": shard_max_bytes,
        "image": config.image.describe(),
        **_describe_captions(spec, defaulted=not templates and not template_mix),
        "num_classes": len(classes),
        **_describe_prompts(prompts),
        "errors": {"file": files.ERRORS, "count": len(all_rejected), "by_stage": by_stage},
        "holdout": {"spec": holdout_classes, "classes": held, "names": [classes[label].name for label in held],
                    "kept_out_of": [s for s in split_names if holdout.is_training_split(s)]} if held else None,
        "splits": {s: vars(summary) for s, summary in summaries.items()},
    })
    return BuildSummary(out, summaries, time.perf_counter() - started, by_stage, prompts.duplicates)


def _describe_captions(spec: CaptionSpec, defaulted: bool) -> dict:
    def entry(t, member, **more) -> dict:
        return {"name": t.name, "member": member, "origin": t.origin, "sha256": hashlib.sha256(t.source.encode()).hexdigest(), **more}

    primary = [entry(t, "txt", **({"weight": round(w, 6)} if spec.is_mix else {})) for t, w in spec.primary]
    return {
        "templates": primary + [entry(t, f"{t.name}.txt") for t in spec.named],
        "template_mix": spec.is_mix,
        "default_template_used": defaulted,
    }


def _describe_prompts(prompts: PromptSet) -> dict:
    return {
        "classnames": files.CLASSNAMES,
        "classes": files.CLASSES,
        "zeroshot_templates": files.ZEROSHOT_TEMPLATES,
        "zeroshot": {
            "prompts": prompts.name,
            "classnames_are": prompts.classnames_are,
            "templates": len(prompts.templates),
            "sha256": hashlib.sha256("\n".join(prompts.templates).encode()).hexdigest(),
            # Identical lines in classnames.txt are classes zero-shot evaluation cannot tell apart.
            "duplicate_classnames": prompts.duplicates,
        },
    }


def _check_numbers(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise VLConvertError(f"{name} must be at least 1, got {value}")
    if not 1 <= values["quality"] <= 100:
        raise VLConvertError(f"quality must be between 1 and 100, got {values['quality']}")


def _choose_splits(source, splits: Sequence[str] | None) -> list[str]:
    available = list(source.splits())
    chosen = list(dict.fromkeys(splits)) if splits else available
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise VLConvertError(f"split {unknown[0]!r} not found; {source.name} has: {', '.join(available)}")
    return chosen


def _plan(source, split: str, seed: int, shard_size: int, held: set[int]) -> _SplitPlan:
    records = source.records(split)
    if not isinstance(records, Sequence):
        records = list(records)  # plugin adapters may yield; planning needs random access
    held_out = 0
    if held:
        records, held_out = holdout.exclude(records, held)
    return _SplitPlan(records, list(source.rejected(split)), plan_split(split, len(records), seed, shard_size), held_out)


def _execute(config: WorkerConfig, plans: dict[str, _SplitPlan], workers: int) -> Iterator[ShardResult]:
    work = ((p.records, t) for p in plans.values() for t in p.tasks)
    if workers == 1:
        writer = ShardWriter(config)
        for records, task in work:
            yield writer.write(task.split, task.index, take_records(records, task.positions))
        return
    # spawn, not fork: the parent holds Arrow thread pools that do not survive fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(config,)) as pool:
        pending = set()
        for records, task in work:
            # A bounded window keeps only a few tasks' records in flight at a time.
            if len(pending) >= 2 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
            pending.add(pool.submit(run_task, task.split, task.index, take_records(records, task.positions)))
        for future in pending:
            yield future.result()


def _finish_split(fs, out_path: str, split: str, plan: _SplitPlan, results: list[ShardResult], num_classes: int) -> SplitSummary:
    """Give the split's shards their final, consecutive names; account for every record."""
    split_dir = posixpath.join(out_path, split)
    shards, counts = [], Counter()
    for result in sorted(results, key=lambda r: r.index):
        counts.update(result.class_counts)
        for info in result.shards:
            name = files.shard_name(split, len(shards))
            fs.mv(info.path, posixpath.join(split_dir, name))
            shards.append({"name": f"{split}/{name}", "samples": info.samples, "bytes": info.bytes, "sha256": info.sha256})
    files.write_sizes(fs, split_dir, shards)
    written = sum(s["samples"] for s in shards)
    errored = len(plan.rejected) + sum(len(r.rejected) for r in results)
    read = len(plan.records) + len(plan.rejected) + plan.held_out
    if written + errored + plan.held_out != read:
        raise RuntimeError(f"split {split}: {read} records read but {written} written + {errored} rejected + {plan.held_out} held out")
    return SplitSummary(read, written, errored, shards, [counts.get(label, 0) for label in range(num_classes)], plan.held_out)


def _prepare_out(fs, out: str, out_path: str, overwrite: bool) -> None:
    try:
        existing = fs.ls(out_path, detail=False) if fs.isdir(out_path) else []
    except FileNotFoundError:
        existing = []
    if fs.isfile(out_path):
        raise VLConvertError(f"{out}: is a file; --out names the folder the shards go into")
    if existing:
        if not overwrite:
            raise VLConvertError(f"{out}: folder is not empty; pass --overwrite to replace an earlier vlconvert build there")
        if not fs.exists(posixpath.join(out_path, files.MANIFEST)):
            raise VLConvertError(f"{out}: not empty and holds no {files.MANIFEST}, so it is not a vlconvert build; refusing to delete it")
        fs.rm(out_path, recursive=True)
    try:
        fs.makedirs(out_path, exist_ok=True)
    except OSError as exc:
        raise VLConvertError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from exc
    # Claims the folder at once, so an interrupted build can still be replaced with --overwrite.
    files.write_json(fs, posixpath.join(out_path, files.MANIFEST),
                     {"format_version": files.FORMAT_VERSION, "vlconvert_version": __version__, "status": "in_progress"})
