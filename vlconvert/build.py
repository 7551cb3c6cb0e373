"""``vlconvert.build``: adapter → plan → shard tasks (here or in workers) → manifest.

Every record read ends in a shard or in ``errors.jsonl``; the manifest states
both counts per split and the build fails loudly if they do not add up.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from importlib.metadata import version as installed_version
from typing import Any

import PIL

from . import __version__, checkpoints, holdout, output
from . import manifest as files
from .captions import CaptionRenderer, CaptionSpec, caption_spec
from .checkpoints import ShardResult, records_digest
from .config import recorded_config
from .execute import WorkerConfig
from .executors import EXECUTORS, check_ray, run_tasks
from .image_files import DEFAULT_MAX_IMAGE_BYTES, ReadLimits
from .images import DEFAULT_MAX_IMAGE_PIXELS, ImageOptions
from .output import SplitSummary
from .plan import ShardTask, plan_split
from .prompts import DEFAULT_PROMPT_SET, PromptSet, prompt_set
from .records import Adapter, Record, Rejected, TooManyRejected, VLConvertError, is_valid_key, take_records, validate_classes
from .registry import create_adapter
from .storage import check_no_glob, filesystem, storage_errors

DEFAULT_SHARD_SIZE = 1000
DEFAULT_SHARD_MAX_BYTES = 1 << 30


@dataclass
class BuildSummary:
    out: str
    splits: dict[str, SplitSummary]
    seconds: float
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    duplicate_classnames: int = 0  # lines of classnames.txt that repeat another (zero-shot cannot tell them apart)
    resumed_tasks: int = 0  # shard tasks an interrupted run of the same build had already finished

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


@dataclass
class PlanSummary:
    """What ``build(dry_run=True)`` reports: the plan, without an image read or a file written."""

    out: str
    classes: int
    splits: dict[str, PlannedSplit]
    shard_size: int
    seconds: float


@dataclass(frozen=True)
class Progress:
    done: int  # records finished (written or rejected), including those of resumed tasks
    total: int
    errors: int
    resumed: int  # records finished by an earlier, interrupted run


@dataclass
class _SplitPlan:
    records: Sequence[Record]
    rejected: list[Rejected]
    tasks: list[ShardTask]
    held_out: int = 0  # records of held-out classes, left out of a training split on purpose
    ignored: list[str] = field(default_factory=list)  # hidden entries the adapter left out (not records)


@storage_errors
def build(
    adapter: str | Adapter,
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
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    shard_size: int = DEFAULT_SHARD_SIZE,
    shard_max_bytes: int = DEFAULT_SHARD_MAX_BYTES,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    resume: bool = True,
    dry_run: bool = False,
    strict: bool = False,
    max_error_rate: float | None = None,
    adapter_options: Mapping[str, Any] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> BuildSummary | PlanSummary:
    """Convert one dataset into captioned webdataset shards under ``out``.

    ``adapter`` is a registered adapter's name (constructed with ``root`` and
    ``adapter_options``) or an adapter object (``root`` is then only recorded).

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
    splits = [splits] if isinstance(splits, str) else splits
    templates = [templates] if isinstance(templates, str) else templates
    _check_numbers(resize=resize, quality=quality, shard_size=shard_size, shard_max_bytes=shard_max_bytes, workers=workers,
                   max_image_bytes=max_image_bytes)
    if max_error_rate is not None and not 0 <= max_error_rate <= 1:
        raise VLConvertError(f"max_error_rate is a fraction between 0 and 1, got {max_error_rate}")
    limit = 0.0 if strict else max_error_rate
    if executor not in EXECUTORS:
        raise VLConvertError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    try:
        image = ImageOptions(resize, resize_mode, image_format, quality, upscale, max_image_pixels)
    except ValueError as exc:
        raise VLConvertError(str(exc)) from None
    # --out is checked before the (long) planning, so a typo costs seconds, not the read of train.json.
    check_no_glob(out, "--out")
    fs, out_path = filesystem(out, "--out")
    if fs.isfile(out_path):
        raise VLConvertError(f"{out}: is a file; --out names the folder the shards go into")
    if executor == "ray":
        check_ray(ray_address)  # before anything is written: a wrong address must not leave a claimed OUT
    try:
        source, adapter = _open_adapter(adapter, root, adapter_options)
        _check_apart(source, root, fs, out_path, out)
        classes, spec, prompts, split_names, held, plans = _read_and_plan(
            source, adapter, splits, templates, template_mix, all_templates, zeroshot_prompts, holdout_classes, seed, shard_size)
    except OSError as exc:  # an unreadable dataset or option file is the input's problem: exit 2, nothing written
        raise VLConvertError(f"{exc.filename or 'input'}: {exc.strerror or exc}") from exc
    read_total = sum(len(p.records) + len(p.rejected) + p.held_out for p in plans.values())
    _check_error_limit(sum(len(p.rejected) for p in plans.values()), read_total, limit, strict, plans)
    if dry_run:
        planned = {s: PlannedSplit(len(p.records), len(p.rejected), p.held_out, len(p.tasks), p.ignored) for s, p in plans.items()}
        return PlanSummary(out, len(classes), planned, shard_size, time.perf_counter() - started)

    described = {
        "adapter": {"name": adapter, "root": root, "options": dict(adapter_options or {})},
        "seed": seed,
        "shard_size": shard_size,
        "shard_max_bytes": shard_max_bytes,
        "image": {**image.describe(), "max_bytes": max_image_bytes},
        **_describe_captions(spec, defaulted=not templates and not template_mix),
        "num_classes": len(classes),
        **_describe_prompts(prompts),
    }
    # Each task's records are checked against their digest in its ledger entry when resuming;
    # the key covers the rest: what every task shares.
    key = output.resume_key({
        **described, "vlconvert_version": __version__, "pillow_version": PIL.__version__,
        "simplejpeg_version": installed_version("simplejpeg"), "splits": split_names, "holdout": held,
        "classes": [[c.label, c.name, c.common_name, c.taxonomy, dict(c.extra)] for c in classes],
        "templates_source": [t.source for t in spec.templates], "zeroshot": [prompts.classnames, prompts.templates],
        "records": {s: [len(p.records), len(p.rejected), p.held_out] for s, p in plans.items()},
    })
    done = output.prepare(fs, out, out_path, split_names, key, overwrite, resume)
    for s in split_names:
        fs.makedirs(posixpath.join(out_path, s), exist_ok=True)
    # Workers get an absolute location: a Ray worker's own folder is not the caller's.
    config = WorkerConfig(classes, spec, image, fs.unstrip_protocol(out_path), shard_size, shard_max_bytes, os.getcwd(),
                          ReadLimits(_image_root(source), max_image_bytes))
    results: dict[str, list[ShardResult]] = {s: [] for s in split_names}
    total = sum(len(p.records) for p in plans.values())
    state = {"finished": 0, "errors": sum(len(p.rejected) for p in plans.values()), "resumed": 0, "resumed_tasks": 0}

    def report(result: ShardResult, resumed: bool = False) -> None:
        results[result.split].append(result)
        state["finished"] += result.records
        state["errors"] += len(result.rejected)
        state["resumed"] += result.records if resumed else 0
        state["resumed_tasks"] += resumed
        if progress:
            progress(Progress(state["finished"], total, state["errors"], state["resumed"]))

    def work():
        for p in plans.values():
            for t in p.tasks:
                records = take_records(p.records, t.positions)
                kept = done.get((t.split, t.index))
                if kept is not None and kept.inputs == records_digest(records):
                    report(kept, resumed=True)
                else:
                    yield t.split, t.index, records

    if progress:
        progress(Progress(0, total, state["errors"], 0))
    for result in run_tasks(config, work(), executor, workers, ray_address):
        report(result)

    summaries, side_files = {}, {}
    for s in split_names:
        summaries[s], side_files[f"{s}/{files.SIZES}"] = output.finish_split(
            fs, out_path, s, results[s], len(classes), len(plans[s].records), len(plans[s].rejected), plans[s].held_out)
        summaries[s].ignored = len(plans[s].ignored)
    all_rejected = [
        r for s in split_names
        for r in [*plans[s].rejected, *(r for res in sorted(results[s], key=lambda x: x.index) for r in res.rejected)]
    ]
    side_files[files.ERRORS] = files.write_errors(fs, out_path, all_rejected)
    side_files[files.CLASSNAMES] = files.write_lines(fs, posixpath.join(out_path, files.CLASSNAMES), prompts.classnames)
    side_files[files.CLASSES] = files.write_classes(fs, out_path, classes)
    side_files[files.ZEROSHOT_TEMPLATES] = files.write_lines(fs, posixpath.join(out_path, files.ZEROSHOT_TEMPLATES), prompts.templates)
    by_stage = dict(sorted(Counter(r.stage for r in all_rejected).items()))
    checkpoints.clear_ledger(fs, out_path)
    files.write_manifest(fs, out_path, {
        "format_version": files.FORMAT_VERSION,
        "vlconvert_version": __version__,
        "status": "complete",
        **described,
        "errors": {"file": files.ERRORS, "count": len(all_rejected), "by_stage": by_stage,
                   "rate": round(len(all_rejected) / read_total, 6) if read_total else 0.0, "strict": strict,
                   "max_error_rate": max_error_rate},
        "holdout": {"spec": holdout_classes, "classes": held, "names": [classes[label].name for label in held],
                    "kept_out_of": [s for s in split_names if holdout.is_training_split(s)]} if held else None,
        "splits": {s: vars(summary) for s, summary in summaries.items()},
        # Size and sha256 of every side file, so `vlconvert validate` can tell a damaged or edited one.
        "files": dict(sorted(side_files.items())),
        # Every option that shaped this output, as `vlconvert build --config` reads it back.
        "config": recorded_config(
            adapter=adapter, root=root, splits=split_names, templates=list(templates or []),
            template_mix=dict(template_mix) if template_mix else None, all_templates=all_templates,
            zeroshot_prompts=zeroshot_prompts, holdout_classes=holdout_classes, resize=resize, resize_mode=resize_mode,
            image_format=image_format, quality=quality, upscale=upscale, max_image_bytes=max_image_bytes,
            max_image_pixels=max_image_pixels, shard_size=shard_size,
            shard_max_bytes=shard_max_bytes, seed=seed, strict=strict, max_error_rate=max_error_rate,
            adapter_options=dict(adapter_options or {})),
    })
    summary = BuildSummary(out, summaries, time.perf_counter() - started, by_stage, prompts.duplicates, state["resumed_tasks"])
    _check_error_limit(len(all_rejected), read_total, limit, strict, summary=summary)
    return summary


def _check_error_limit(errors: int, read: int, limit: float | None, strict: bool, plans=None, summary=None) -> None:
    if limit is None or Fraction(errors, max(read, 1)) <= Fraction(str(limit)):  # exact: 29/100 is within 0.29
        return
    allowed = "--strict allows none" if strict else f"--max-error-rate allows {limit:.2%}"
    if summary is None:
        first = next(r for p in plans.values() for r in p.rejected)
        raise TooManyRejected(f"the dataset's metadata already rejects {errors} of {read} records ({errors / read:.2%}); {allowed}. "
                              f"First: {first.key} ({first.source}): {first.reason}. Nothing was written.")
    raise TooManyRejected(f"{errors} of {read} records were rejected ({errors / read:.2%}); {allowed}. "
                          f"The build is complete; see {summary.out.rstrip('/')}/{files.ERRORS}", summary)


def _open_adapter(adapter, root, adapter_options) -> tuple[Adapter, str]:
    if isinstance(adapter, str):
        return create_adapter(adapter, root, dict(adapter_options or {})), adapter
    return adapter, getattr(adapter, "name", type(adapter).__name__)  # an adapter object from the caller's own code


def _check_apart(source, root, out_fs, out_path: str, out: str) -> None:
    """The dataset's folder as the adapter reads it (a table's folder, not the table), else ``root`` if it is a folder."""
    files = getattr(source, "files", None)
    if files is not None and hasattr(files, "fs") and hasattr(files, "path"):
        data_fs, data_path = files.fs, files.path
    elif isinstance(root, str) and root and os.path.isdir(root):
        data_fs, data_path = filesystem(root, "--root")
    else:
        return
    output.check_apart(out_fs, out_path, data_fs, data_path, out, root)


def _image_root(source) -> str | None:
    """The folder the adapter's local images must resolve into (docs/security.md); None: the adapter allows any."""
    root = getattr(source, "image_root", None)
    return os.path.realpath(root) if isinstance(root, str) and root else None


def _read_and_plan(source, adapter, splits, templates, template_mix, all_templates, zeroshot_prompts,
                   holdout_classes, seed, shard_size):
    """Everything a build knows before it reads an image: classes, captions checked on every class, the plan."""
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
    return classes, spec, prompts, split_names, held, plans


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
            "sha256": hashlib.sha256("\n".join(" ".join(t.split()) for t in prompts.templates).encode()).hexdigest(),
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
    # A split names a folder in OUT: "../x" from a data file must not write outside it.
    unusable = [s for s in chosen if not is_valid_key(s)]
    if unusable:
        raise VLConvertError(f"split name {unusable[0]!r} (from the dataset) cannot name a folder: letters, digits, '_' and '-' only")
    return chosen


def _plan(source, split: str, seed: int, shard_size: int, held: set[int]) -> _SplitPlan:
    records = source.records(split)
    rejected = list(source.rejected(split))
    if not isinstance(records, Sequence) or isinstance(records, (list, tuple)):
        # A plugin's records: planning needs random access, and a repeated key would merge two samples.
        records, repeated = _first_of_each_key(records, split)
        rejected += repeated
    held_out = 0
    if held:
        records, held_out = holdout.exclude(records, held)
    ignored = list(source.ignored(split)) if callable(getattr(source, "ignored", None)) else []
    return _SplitPlan(records, rejected, plan_split(split, len(records), seed, shard_size), held_out, ignored)


def _first_of_each_key(records, split: str) -> tuple[list[Record], list[Rejected]]:
    kept, repeated, seen = [], [], set()
    for record in records:
        if record.key in seen:
            repeated.append(Rejected(split, record.key, record.source or str(record.image)[:200], f"duplicate key {record.key}", "adapter"))
        else:
            seen.add(record.key)
            kept.append(record)
    return kept, repeated
