"""``vlconvert.lit.evaluate(...)``: zero-shot accuracy of one or more models on a converted split.

The Python API of ``vlconvert zeroshot``: it checks its arguments, loads each
model, builds (or reuses) its classifier from the build's class names and
prompts, predicts every image of the split, and computes the metrics of
:mod:`vlconvert.lit.zeroshot`; with ``report_dir`` it also writes
metrics.json, report.md and the plots (:mod:`vlconvert.lit.report`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import vlconvert.lit.report as report
import vlconvert.lit.zeroshot as zeroshot
from vlconvert.errors import VLConvertError


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
             report_dir: str | Path | None = None) -> Evaluation:
    """Zero-shot metrics of each model on ``split`` of the build in ``data``.

    ``checkpoints`` are lit-train run folders (their latest checkpoint) or checkpoint files in one; ``models``
    are open_clip model names, each paired with the ``pretrained`` tag or file at the same position (none at
    all: random init).  ``prompts``: build, simple, openai_imagenet, same_as_training, or a file of templates.
    With ``report_dir`` the report is written there and classifiers are cached in its ``.cache`` folder.
    One string is one item.  Wrong arguments raise :class:`VLConvertError` before any model loads."""
    checkpoints, models, pretrained = _items(checkpoints), _items(models), _items(pretrained)
    if not checkpoints and not models:
        raise VLConvertError("give --checkpoint RUN or --model NAME --pretrained TAG|PATH")
    if pretrained and len(pretrained) != len(models):
        raise VLConvertError("give one --pretrained per --model (or none at all for random init)")
    if batch_size < 1:
        raise VLConvertError(f"--batch-size {batch_size}: must be at least 1")
    if report_dir is not None and Path(report_dir).exists() and not Path(report_dir).is_dir():
        raise VLConvertError(f"--report {report_dir}: is a file; it names the folder the report goes into")
    counts, held_out, taxonomy = zeroshot.build_facts(data)  # checks data before any model loads
    names, templates = zeroshot.prompt_texts(data, prompts)
    loaded = [zeroshot.load_run(c) for c in checkpoints]
    loaded += [zeroshot.load_model(m, p) for m, p in zip(models, pretrained or [None] * len(models))]
    cache = Path(report_dir) / ".cache" if report_dir is not None else None
    results, labels = {}, None
    for number, model in enumerate(loaded):
        weights = zeroshot.classifier(model, names, templates, cache, batch_size)
        top5, labels = zeroshot.predict(model, weights, data, split, batch_size)
        column = model.label if model.label not in results else f"{model.label} ({number + 1})"
        results[column] = zeroshot.metrics(top5, labels, taxonomy, counts, held_out)
    evaluation = Evaluation(results, zeroshot.chance(labels, len(names)), {"data": data, "split": split, "prompts": prompts},
                            counts)
    if report_dir is not None:
        report.write(Path(report_dir), evaluation.results, evaluation.chance, evaluation.context, counts)
    return evaluation
