"""``vlconvert zeroshot``: zero-shot accuracy of trained or stock models on a converted split (the ``lit`` extra)."""

from __future__ import annotations

import click

from vlconvert.cli.progress import ProgressBar
from vlconvert.cli.vocabulary import build_argument
from vlconvert.terminal import printable_lines


class _ImagesPerModel:
    """``progress(model, done, total)`` for evaluate: one bar of images per model, each closed when the next starts."""

    def __init__(self):
        self._model = None
        self._bar: ProgressBar | None = None

    def __call__(self, model: str, done: int, total: int) -> None:
        if model != self._model:
            self._close()
            self._model, self._bar = model, ProgressBar(f"images, {model}", stage="zeroshot")
        self._bar(done, total)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self) -> _ImagesPerModel:
        return self

    def __exit__(self, *exc) -> None:
        self._close()


@click.command("zeroshot", context_settings={"show_default": True})
@build_argument
@click.option("--split", "-s", default="val", help="The split of the build to evaluate, as its manifest names it.")
@click.option("--checkpoint", "checkpoints", multiple=True,
              help="A lit-train run folder (its latest checkpoint) or a checkpoint file in one. Repeatable.")
@click.option("--model", "models", multiple=True,
              help="An open_clip model name (or lit-tiny); pair each with --pretrained, or give none for random init. Repeatable.")
@click.option("--pretrained", "pretrained", multiple=True,
              help="A checkpoint file, or an open_clip tag whose weights are already in the local cache (nothing is "
                   "downloaded), for the --model at the same position.")
@click.option("--prompts", default="build",
              help="build (the build's classnames.txt and templates), simple, openai_imagenet, same_as_training, or a file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, help="Images, or class prompts, encoded at once.")
@click.option("--report", "report_dir", required=True, type=click.Path(), help="Folder for metrics.json, report.md and plots.")
def zeroshot_command(build, split, checkpoints, models, pretrained, prompts, batch_size, report_dir):
    """Zero-shot accuracy of one or more models on a converted split, with per-rank and frequency breakdowns.

    \b
    BUILD is the --out folder of `vlconvert build`.
    Example:  vlconvert zeroshot out/zs --checkpoint runs/demo-zs --report runs/demo-report

    The arguments are checked before torch loads; metrics.json holds the first model's metrics at its top
    level and every model's under "models".
    """
    from vlconvert.lit.evaluation import evaluate  # no torch: it loads once the arguments are checked

    with _ImagesPerModel() as progress:
        evaluation = evaluate(build, checkpoints=checkpoints, models=models, pretrained=pretrained, split=split,
                              prompts=prompts, batch_size=batch_size, report_dir=report_dir, progress=progress)
    click.echo(printable_lines(evaluation.markdown()))
