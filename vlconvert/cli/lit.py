"""``vlconvert lit-train``: the LiT recipe on vlconvert shards (needs the ``lit`` extra)."""

from __future__ import annotations

import click

import vlconvert.lit.caption_keys as caption_keys
from vlconvert.cli.progress import ProgressBar
from vlconvert.errors import VLConvertError
from vlconvert.format import CAPTION_MEMBER
from vlconvert.terminal import printable_lines


class _Values(click.Option):
    """An option that takes every value up to the next option, as argparse's ``nargs="+"`` does, so that
    open_clip's spelling ``--json-text-key-probs 0.5 0.5`` works here too (the words reach the command as one
    string, ``"0.5 0.5"``)."""

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            option.process = _greedy(option.process)


def _greedy(process):
    def take_the_rest(value, state):
        values = [value]
        while state.rargs and (not state.rargs[0].startswith("-") or _is_number(state.rargs[0])):
            values.append(state.rargs.pop(0))
        process(" ".join(values), state)

    return take_the_rest


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


@click.command("lit-train", context_settings={"show_default": True})
@click.option("--data", required=True, help="A `vlconvert build` output folder (or fsspec URL).")
@click.option("--out", required=True, help="The run folder: log, checkpoints, cached features.")
@click.option("--split", default="train", help="The split to train on.")
@click.option("--model", default=None, help="An open_clip model name, or lit-tiny.")
@click.option("--model-config", default=None, type=click.Path(), help="An open_clip model config JSON (instead of --model).")
@click.option("--image-weights", default=None, metavar="PATH|openclip:TAG|timm:NAME|none",
              help="Weights of the locked image tower: a checkpoint file, a cached open_clip tag, a cached timm model, or none.")
@click.option("--text-weights", default=None, metavar="PATH|openclip:TAG",
              help="Start the text tower from these weights (LiT's 'LU'); default: from scratch.")
@click.option("--caption-member", default=CAPTION_MEMBER, help="The caption to train on: txt, or another member such as scientific.txt.")
@click.option("--json-text-key", default=None, metavar="KEY[;KEY...]",
              help="Train on the captions under these top-level keys of each sample's KEY.json instead "
                   "(caption_<template> for each template the build rendered), as open_clip's --json-text-key: "
                   "without weights the first non-empty key wins.")
@click.option("--json-text-key-probs", cls=_Values, default=None, metavar="W [W...]",
              help="Weights of the --json-text-key keys, in order, as open_clip's (missing trailing ones are 0: "
                   "fallbacks only): each sample draws its caption by weight, seeded by --seed, the epoch and its key.")
@click.option("--unlocked-groups", type=click.IntRange(min=0), default=0, help="Image tower groups to leave trainable, from the top.")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="Per process.")
@click.option("--lr", type=float, default=None)
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Warmup steps.")
@click.option("--wd", type=float, default=None, help="AdamW weight decay.")
@click.option("--seed", type=int, default=0)
@click.option("--cache-image-features/--no-cache-image-features", default=None,
              help="Encode every image once with the locked tower and train the text tower alone.")
@click.option("--preset", type=click.Choice(["demo"]), default=None, help="demo: the embedded example on CPU in minutes.")
def lit_train_command(preset, **given):
    """Train a text tower against a locked, pretrained image tower (LiT) on vlconvert shards.

    \b
    One process:   vlconvert lit-train --data OUT --out RUN --preset demo
    Many:          torchrun --nproc_per_node 8 -m vlconvert lit-train --data OUT --out RUN --model ViT-B-16 \\
                       --image-weights openclip:laion2b_s34b_b88k --cache-image-features
    """
    given["json_text_key_probs"] = caption_keys.parse_weights(given["json_text_key_probs"])
    # Checked before torch loads: a mistyped key or weight costs a second, not a model's start-up.
    captions = caption_keys.caption_choice(given["caption_member"], given["json_text_key"], given["json_text_key_probs"])
    caption_keys.check_keys(given["data"], given["split"], captions)
    try:
        from vlconvert.lit.train import LitOptions, train, with_preset
    except ImportError as exc:
        raise VLConvertError(f"lit-train needs the lit extra: pip install 'vlconvert[lit]' ({exc})") from exc
    chosen = {k: v for k, v in given.items() if v is not None}
    options = with_preset(LitOptions(**chosen), preset, set(chosen))
    options.check()  # before the progress display starts
    with ProgressBar("training") as progress:
        def say(line: str) -> None:
            click.echo(("\n" if progress.active else "") + line, err=True)

        summary = train(options, say=say, progress=progress)
    last = summary["last"].get("loss")
    click.echo(f"trained {summary['epochs']} epochs of {summary['model']}; last loss {last}; run in {summary['run']}")


@click.command("zeroshot")
@click.option("--data", required=True, help="A `vlconvert build` output folder.")
@click.option("--split", default="val", show_default=True)
@click.option("--checkpoint", "checkpoints", multiple=True,
              help="A lit-train run folder (its latest checkpoint) or a checkpoint file in one.")
@click.option("--model", "models", multiple=True, help="An open_clip model name; pair each with --pretrained.")
@click.option("--pretrained", "pretrained", multiple=True, help="An open_clip tag or checkpoint path for the --model at the same position.")
@click.option("--prompts", default="build", show_default=True,
              help="build (the build's classnames.txt and templates), simple, openai_imagenet, same_as_training, or a file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--report", "report_dir", required=True, type=click.Path(), help="Folder for metrics.json, report.md and plots.")
def zeroshot_command(data, split, checkpoints, models, pretrained, prompts, batch_size, report_dir):
    """Zero-shot accuracy of one or more models on a converted split, with per-rank and frequency breakdowns."""
    try:
        from vlconvert.lit import evaluate
    except ImportError as exc:
        raise VLConvertError(f"zeroshot needs the lit extra: pip install 'vlconvert[lit]' ({exc})") from exc
    evaluation = evaluate(data, checkpoints=checkpoints, models=models, pretrained=pretrained, split=split, prompts=prompts,
                          batch_size=batch_size, report_dir=report_dir)
    click.echo(printable_lines(evaluation.markdown()))
