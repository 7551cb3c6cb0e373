"""Everything a build knows before it reads an image: the classes, captions checked on every class, the plan.

A template is rendered once for every class here, so a template mistake fails in
seconds, not after hours of image work.  Each split's records are shuffled
(:mod:`vlconvert.shuffle`) and cut into shard tasks; held-out classes leave training
splits, and ``--min-per-class`` / ``--max-per-class`` balance them.  Planning touches
no image, so the same plan can be executed in this process, in a pool of workers, or
on a cluster.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from vlconvert.captions.prompts import PromptSet, prompt_set
from vlconvert.captions.render import CaptionRenderer, CaptionSpec, caption_spec
from vlconvert.errors import VLConvertError
from vlconvert.format import is_training_split
from vlconvert.options import BuildOptions
from vlconvert.pipeline import balance, holdout
from vlconvert.records import ClassInfo, Record, Rejected, is_valid_key, key_rule, validate_classes
from vlconvert.shuffle import shuffled_order


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int  # position of this task in the split's plan
    positions: array  # indices into the split's record sequence, in write order


def plan_split(split: str, n: int, seed: int, shard_size: int) -> list[ShardTask]:
    order = shuffled_order(n, seed, split)
    return [ShardTask(split, index, order[start : start + shard_size]) for index, start in enumerate(range(0, n, shard_size))]


@dataclass
class SplitPlan:
    records: Sequence[Record]
    rejected: list[Rejected]
    tasks: list[ShardTask]
    held_out: int = 0  # records of held-out classes, left out of a training split on purpose
    ignored: list[str] = field(default_factory=list)  # hidden entries the adapter left out (not records)
    balanced: balance.SplitBalance | None = None  # a training split's balancing, when asked for

    @property
    def capped(self) -> int:
        return self.balanced.left_out if self.balanced else 0

    @property
    def left_out(self) -> dict[str, int]:
        """Records read but kept out of the shards on purpose, by reason, as the manifest counts them per split."""
        return {"held_out": self.held_out, "capped": self.capped}

    @property
    def read(self) -> int:
        return len(self.records) + len(self.rejected) + sum(self.left_out.values())


@dataclass
class BuildPlan:
    classes: list[ClassInfo]
    captions: CaptionSpec
    prompts: PromptSet
    held: list[int]  # labels of held-out classes
    splits: dict[str, SplitPlan]
    balance: dict | None = None  # the manifest's "balance" entry

    @property
    def read(self) -> int:
        return sum(p.read for p in self.splits.values())


def make_plan(source, adapter_name: str, options: BuildOptions) -> BuildPlan:
    classes = list(source.classes())
    validate_classes(classes, adapter_name)
    spec = caption_spec(options.templates or [], options.template_mix, options.all_templates, options.seed)
    renderer = CaptionRenderer(spec.templates, classes)
    prompts = prompt_set(options.zeroshot_prompts, classes, spec, renderer)
    split_names = _choose_splits(source, options.splits)

    held = holdout.resolve(options.holdout_classes, classes, options.seed)
    if held and len(held) == len(classes):
        raise VLConvertError(f"--holdout-classes {options.holdout_classes} holds out every class; nothing would be left to train on")
    splits = {s: _plan(source, s, options, set(held) if is_training_split(s) else set()) for s in split_names}
    first = next((p.records[0] for p in splits.values() if len(p.records)), None)
    renderer.check_classes(first.metadata if first else None)
    balanced = {s: p.balanced for s, p in splits.items() if p.balanced is not None}
    described = balance.describe(options.min_per_class, options.max_per_class, classes, balanced)
    return BuildPlan(classes, spec, prompts, held, splits, described)


def _choose_splits(source, splits: Sequence[str] | None) -> list[str]:
    available = list(source.splits())
    chosen = list(dict.fromkeys(splits)) if splits else available
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise VLConvertError(f"split {unknown[0]!r} not found; {source.name} has: {', '.join(available)}")
    # A split names a folder in OUT: "../x" from a data file must not write outside it.
    unusable = [s for s in chosen if not is_valid_key(s)]
    if unusable:
        raise VLConvertError(f"split name {unusable[0]!r} (from the dataset) cannot name a folder {key_rule(unusable[0])}")
    return chosen


def _plan(source, split: str, options: BuildOptions, held: set[int]) -> SplitPlan:
    records = source.records(split)
    rejected = list(source.rejected(split))
    if not isinstance(records, Sequence) or isinstance(records, (list, tuple)):
        # A plugin's records: planning needs random access, and a repeated key would merge two samples.
        records, repeated = _first_of_each_key(records, split)
        rejected += repeated
    held_out = 0
    if held:
        records, held_out = holdout.exclude(records, held)
    balanced = None
    if is_training_split(split) and (options.min_per_class is not None or options.max_per_class is not None):
        # Counted on what the plan would write: after held-out classes left.
        records, balanced = balance.balance(records, split, options.seed, options.min_per_class, options.max_per_class)
    ignored = list(source.ignored(split)) if callable(getattr(source, "ignored", None)) else []
    tasks = plan_split(split, len(records), options.seed, options.shard_size)
    return SplitPlan(records, rejected, tasks, held_out, ignored, balanced)


def _first_of_each_key(records, split: str) -> tuple[list[Record], list[Rejected]]:
    kept, repeated, seen = [], [], set()
    for record in records:
        if record.key in seen:
            repeated.append(Rejected(split, record.key, record.source or str(record.image)[:200], f"duplicate key {record.key}", "adapter"))
        else:
            seen.add(record.key)
            kept.append(record)
    return kept, repeated
