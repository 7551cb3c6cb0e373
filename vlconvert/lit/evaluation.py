"""``vlconvert.lit.evaluate(...)``: zero-shot accuracy of one or more models on a converted split.

The Python API of ``vlconvert zeroshot``: it checks its arguments, loads each
model, builds (or reuses) its classifier from the build's class names and
prompts, predicts every image of the split, and computes the metrics of
:mod:`vlconvert.lit.zeroshot`; with ``report_dir`` it also writes
metrics.json, report.md and the plots (:mod:`vlconvert.lit.report`).

This module imports no torch: every argument that can be checked without a
model (the build, the split, the prompts, the paths) is checked before torch
and open_clip load, which takes seconds, so a typo fails at once.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import vlconvert.lit.report as report
from vlconvert.errors import VLConvertError
from vlconvert.format import CLASSNAMES, ZEROSHOT_TEMPLATES, is_training_split, read_classes, read_lines
from vlconvert.readback.build_folder import build_manifest, require_split

# A --pretrained ending so names a file, never an open_clip tag: a missing one is a typo, caught before torch loads.
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass
class Evaluation:
    results: dict[str, dict]  # model (as the report names it) → its metrics
    chance: dict  # what guessing scores
    context: dict  # data, split, prompts
    train_counts: list[int] | None  # training images per class, when the build has a training split

    def markdown(self) -> str:
        """The report's table, as report.md holds it."""
        return report.markdown(self.results, self.chance, self.context)


def _items(value) -> list:
    """A sequence of names, where one name (a str or a path) is one item, not its characters."""
    if value is None:
        return []
    return [value] if isinstance(value, (str, os.PathLike)) else list(value)


def evaluate(data: str, *, checkpoints: Sequence[str] = (), models: Sequence[str] = (),
             pretrained: Sequence[str | None] = (), split: str = "val", prompts: str = "build", batch_size: int = 64,
             report_dir: str | Path | None = None, progress: Callable[[str, int, int], None] | None = None) -> Evaluation:
    """Zero-shot metrics of each model on ``split`` of the build in ``data``.

    ``checkpoints`` are lit-train run folders (their latest checkpoint) or checkpoint files in one; ``models``
    are open_clip model names, each paired with the ``pretrained`` tag or file at the same position (none at
    all: random init).  A tag's weights must already be in the local cache; nothing is downloaded.
    ``prompts``: build, simple, openai_imagenet, same_as_training, or a file of templates.
    With ``report_dir`` the report is written there and classifiers are cached in its ``.cache`` folder.
    ``progress(model, images done, images total)`` follows the images of each model.
    One string is one item.  Wrong arguments raise :class:`VLConvertError` before any model loads."""
    checkpoints, models, pretrained = _items(checkpoints), _items(models), _items(pretrained)
    if not checkpoints and not models:
        raise VLConvertError("give --checkpoint RUN or --model NAME --pretrained TAG|PATH")
    if pretrained and len(pretrained) != len(models):
        raise VLConvertError(f"give one --pretrained per --model (or none at all for random init): "
                             f"{len(models)} --model, {len(pretrained)} --pretrained")
    if batch_size < 1:
        raise VLConvertError(f"--batch-size {batch_size}: must be at least 1")
    if report_dir is not None and Path(report_dir).exists() and not Path(report_dir).is_dir():
        raise VLConvertError(f"--report {report_dir}: is a file; it names the folder the report goes into")
    fs, out, manifest = build_manifest(data)
    require_split(manifest, split, data)
    counts, held_out, taxonomy = _build_facts(fs, out, manifest)
    names, templates = prompt_texts(fs, out, data, prompts)
    runs = [_run(c) for c in checkpoints]
    for p in pretrained:
        if p and not Path(p).exists() and (os.sep in str(p) or "/" in str(p) or str(p).endswith(_CHECKPOINT_SUFFIXES)):
            raise VLConvertError(f"--pretrained {p}: no such checkpoint file")

    zeroshot = _load_lit()
    wanted = [zeroshot.find_weights(m, p) for m, p in zip(models, pretrained or [None] * len(models))]  # before loading any
    loaded = [zeroshot.load_run(run, checkpoint) for run, checkpoint in runs] + [zeroshot.load_model(w) for w in wanted]
    cache = Path(report_dir) / ".cache" if report_dir is not None else None
    results, labels = {}, None
    for number, model in enumerate(loaded):
        column = model.label if model.label not in results else f"{model.label} ({number + 1})"
        weights = zeroshot.classifier(model, names, templates, cache, batch_size)
        step = (lambda done, total, column=column: progress(column, done, total)) if progress else None
        top5, labels = zeroshot.predict(model, weights, data, split, batch_size, step)
        results[column] = zeroshot.metrics(top5, labels, taxonomy, counts, held_out)
    evaluation = Evaluation(results, zeroshot.chance(labels, len(names)), {"data": data, "split": split, "prompts": prompts},
                            counts)
    if report_dir is not None:
        report.write(Path(report_dir), evaluation.results, evaluation.chance, evaluation.context, counts)
    return evaluation


def _load_lit():
    try:
        import vlconvert.lit.zeroshot as zeroshot
    except ImportError as exc:
        raise VLConvertError(f"zeroshot needs the lit extra: pip install 'vlconvert[lit]' ({exc})") from exc
    return zeroshot


def _build_facts(fs, out: str, manifest: dict) -> tuple[list[int] | None, list[int], dict[int, dict]]:
    """From the build: per-class training counts, the held-out classes, and every class's taxonomy."""
    training = [s for s in manifest.get("splits", {}) if is_training_split(s)]
    counts = manifest["splits"][training[0]].get("class_counts") if training else None
    taxonomy = {row["label"]: {**row["taxonomy"], "species": row["name"]} for row in read_classes(fs, out)}
    return counts, (manifest.get("holdout") or {}).get("classes", []), taxonomy


def prompt_texts(fs, out: str, data: str, prompts: str) -> tuple[list[str], list[str]]:
    """(class names, templates): the build's own files, a built-in set, or a file of templates."""
    names = read_lines(fs, posixpath.join(out, CLASSNAMES))
    if prompts == "build":
        return names, read_lines(fs, posixpath.join(out, ZEROSHOT_TEMPLATES))
    if prompts == "same_as_training":
        templates = read_lines(fs, posixpath.join(out, ZEROSHOT_TEMPLATES))
        if templates != ["{c}"]:
            raise VLConvertError(f"{data}: --prompts same_as_training needs a build made with --zeroshot-prompts same_as_training")
        return names, templates
    from vlconvert.captions.prompts import BUILTIN_PROMPT_SETS, parse_templates
    from vlconvert.captions.render import builtin_resource, read_utf8

    if prompts in BUILTIN_PROMPT_SETS:
        return names, parse_templates(builtin_resource(f"zeroshot/{prompts}.txt"), prompts)
    if not Path(prompts).is_file():
        raise VLConvertError(f"--prompts {prompts}: no such file; give build, simple, openai_imagenet, same_as_training, "
                             "or a file of {c} templates")
    return names, parse_templates(read_utf8(Path(prompts), "prompt file"), prompts)


def _run(path: str) -> tuple[Path, Path | None]:
    """(run folder, the checkpoint file given or None for the run's latest) of a --checkpoint."""
    target = Path(path)
    if not target.exists():
        raise VLConvertError(f"--checkpoint {path}: no such run folder or checkpoint file")
    run = target.parent.parent if target.is_file() else target
    if not (run / "run.json").is_file():
        raise VLConvertError(f"--checkpoint {path}: not a lit-train run folder or a checkpoint inside one (no run.json)")
    try:
        json.loads((run / "run.json").read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError):
        raise VLConvertError(f"--checkpoint {path}: {run / 'run.json'} does not name the run's model") from None
    return run, target if target.is_file() else None
