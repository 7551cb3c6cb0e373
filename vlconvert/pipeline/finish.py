"""The end of a build: shards given their final names, the side files, and the manifest written last.

Also what the manifest and the resume key say about a build's options
(:func:`describe`, :func:`resume_settings`) and the error limit of ``--strict`` and
``--max-error-rate``, which is checked on the plan and again on the finished build.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import version as installed_version

import PIL

import vlconvert.format as output_format
from vlconvert.captions.prompts import PromptSet
from vlconvert.captions.render import CaptionSpec
from vlconvert.errors import TooManyRejected
from vlconvert.format import is_training_split
from vlconvert.options import BuildOptions
from vlconvert.pipeline import dataset_card, ledger, output_folder, shard_table
from vlconvert.pipeline.build_plan import BuildPlan
from vlconvert.pipeline.dedup_parts import drop_duplicates
from vlconvert.pipeline.images import ImageOptions
from vlconvert.pipeline.output_folder import SplitSummary
from vlconvert.pipeline.task_result import ShardResult
from vlconvert.version import __version__


@dataclass
class Finished:
    splits: dict[str, SplitSummary]
    rejected: int
    by_stage: dict[str, int]  # rejected records per stage (adapter, image, caption)


def finish(settings: BuildOptions, fs, out_path: str, plan: BuildPlan, results: dict[str, list[ShardResult]],
           image: ImageOptions, source=None) -> Finished:
    """``source``: the adapter, whose license and citation (where it has them) go into the dataset card."""
    summaries, side_files, dedup, removed = {}, {}, None, {}
    if settings.dedup or settings.dedup_against:
        found, removed = drop_duplicates(fs, out_path, results, settings.dedup_against, settings.dedup_threshold)
        side_files[output_format.DUPLICATES] = output_format.write_bytes(
            fs, posixpath.join(out_path, output_format.DUPLICATES), found.report())
        dedup = found.describe()
    for s, p in plan.splits.items():
        summaries[s], side_files[f"{s}/{output_format.SIZES}"] = output_folder.finish_split(
            fs, out_path, s, results[s], len(plan.classes), len(p.records), len(p.rejected), p.left_out, removed.get(s, 0))
        summaries[s].ignored = len(p.ignored)
        if summaries[s].shards:  # wids refuses an index without shards
            side_files[f"{s}/{output_format.wids_index_name(s)}"] = output_format.write_wids_index(
                fs, posixpath.join(out_path, s), s, summaries[s].shards)
    rejected = [
        r for s, p in plan.splits.items()
        for r in [*p.rejected, *(r for res in sorted(results[s], key=lambda x: x.index) for r in res.rejected)]
    ]
    side_files[output_format.ERRORS] = output_format.write_errors(fs, out_path, rejected)
    side_files[output_format.ERRORS_TABLE] = output_format.write_bytes(
        fs, posixpath.join(out_path, output_format.ERRORS_TABLE), shard_table.rejections(rejected))
    side_files[output_format.CLASSNAMES] = output_format.write_lines(
        fs, posixpath.join(out_path, output_format.CLASSNAMES), plan.prompts.classnames)
    side_files[output_format.CLASSES] = output_format.write_classes(fs, out_path, plan.classes)
    side_files[output_format.ZEROSHOT_TEMPLATES] = output_format.write_lines(
        fs, posixpath.join(out_path, output_format.ZEROSHOT_TEMPLATES), plan.prompts.templates)
    by_stage = dict(sorted(Counter(r.stage for r in rejected).items()))
    ledger.clear_ledger(fs, out_path)
    read = plan.read
    held = plan.held
    errors = {"file": output_format.ERRORS, "count": len(rejected), "by_stage": by_stage,
              "rate": round(len(rejected) / read, 6) if read else 0.0, "strict": settings.strict,
              "max_error_rate": settings.max_error_rate}
    held_out = {"spec": settings.holdout_classes, "classes": held, "names": [plan.classes[label].name for label in held],
                "kept_out_of": [s for s in plan.splits if is_training_split(s)]} if held else None
    parts = describe(settings, plan, image), errors, held_out, {s: vars(summary) for s, summary in summaries.items()}
    # The card is made from the manifest, and the manifest records the card's sha256: the card first.
    side_files[output_format.CARD] = dataset_card.write_card(
        fs, out_path, output_format.complete_manifest(*parts, side_files, settings.recorded(), balance=plan.balance, dedup=dedup), source,
        {s: summary.image_members for s, summary in summaries.items()})
    output_format.write_manifest(fs, out_path, output_format.complete_manifest(
        *parts, side_files, settings.recorded(), balance=plan.balance, dedup=dedup))
    return Finished(summaries, len(rejected), by_stage)


def describe(settings: BuildOptions, plan: BuildPlan, image: ImageOptions) -> dict:
    """What the manifest says about how the build ran, beside its recorded options."""
    return {
        "adapter": {"name": settings.adapter, "root": settings.root, "options": dict(settings.adapter_options)},
        "seed": settings.seed,
        "shard_size": settings.shard_size,
        "shard_max_bytes": settings.shard_max_bytes,
        "image": {**image.describe(), "max_bytes": settings.max_image_bytes},
        **_describe_captions(plan.captions, defaulted=not settings.templates and not settings.template_mix),
        "num_classes": len(plan.classes),
        **_describe_prompts(plan.prompts),
    }


def resume_settings(settings: BuildOptions, plan: BuildPlan, described: dict) -> dict:
    """What every shard task of a build shares, for the resume key; each task's own records are checked against
    the digest in its ledger entry when resuming."""
    return {
        **described, "options": settings.decisive(), "vlconvert_version": __version__, "pillow_version": PIL.__version__,
        "simplejpeg_version": installed_version("simplejpeg"), "splits": settings.splits, "holdout": plan.held,
        "classes": [[c.label, c.name, c.common_name, c.taxonomy, dict(c.extra)] for c in plan.classes],
        "templates_source": [t.source for t in plan.captions.templates],
        "zeroshot": [plan.prompts.classnames, plan.prompts.templates],
        "records": {s: [len(p.records), len(p.rejected), p.held_out] for s, p in plan.splits.items()},
    }


def check_error_limit(settings: BuildOptions, errors: int, read: int, plan: BuildPlan | None = None, summary=None) -> None:
    limit = 0.0 if settings.strict else settings.max_error_rate
    if limit is None or Fraction(errors, max(read, 1)) <= Fraction(str(limit)):  # exact: 29/100 is within 0.29
        return
    allowed = "--strict allows none" if settings.strict else f"--max-error-rate allows {limit:.2%}"
    if summary is None:
        first = next(r for p in plan.splits.values() for r in p.rejected)
        raise TooManyRejected(f"the dataset's metadata already rejects {errors} of {read} records ({errors / read:.2%}); {allowed}. "
                              f"First: {first.key} ({first.source}): {first.reason}. Nothing was written.")
    raise TooManyRejected(f"{errors} of {read} records were rejected ({errors / read:.2%}); {allowed}. "
                          f"The build is complete; see {summary.out.rstrip('/')}/{output_format.ERRORS}", summary)


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
        "classnames": output_format.CLASSNAMES,
        "classes": output_format.CLASSES,
        "zeroshot_templates": output_format.ZEROSHOT_TEMPLATES,
        "zeroshot": {
            "prompts": prompts.name,
            "classnames_are": prompts.classnames_are,
            "templates": len(prompts.templates),
            "sha256": hashlib.sha256("\n".join(" ".join(t.split()) for t in prompts.templates).encode()).hexdigest(),
            # Identical lines in classnames.txt are classes zero-shot evaluation cannot tell apart.
            "duplicate_classnames": prompts.duplicates,
        },
    }
