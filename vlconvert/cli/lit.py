"""``vlconvert lit-train``: the LiT recipe on vlconvert shards (needs the ``lit`` extra)."""

from __future__ import annotations

import click

import vlconvert.lit.caption_keys as caption_keys
import vlconvert.lit.run_folder as run_folder
from vlconvert.cli.progress import ProgressBar
from vlconvert.cli.vocabulary import build_argument, renamed
from vlconvert.errors import VLConvertError
from vlconvert.format import CAPTION_MEMBER
from vlconvert.lit.options import PRESETS, LitOptions, check_model_name, with_preset


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


def _preset_default(field: str) -> str:
    demo = PRESETS["demo"][field]
    plain = LitOptions.__dataclass_fields__[field].default
    if isinstance(plain, bool):
        plain, demo = ("on" if plain else "off"), ("on" if demo else "off")
    return f"{plain}; demo: {demo}"


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


@click.command("lit-train", context_settings={"show_default": True})
@build_argument
@click.option("--run-dir", "run", default=None, metavar="RUN", show_default=False,
              help="The run folder: run.json, log, checkpoints, cached features. Required. (Was --out.)")
@renamed("--out", "run", "--run-dir", required=True)
@click.option("--split", "-s", default="train", help="The split to train on.")
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
# Defaults of None: a preset fills what the user did not give, and click's own default would count as given.
@click.option("--unlocked-groups", type=click.IntRange(min=0), default=None, show_default="0",
              help="Image tower groups to leave trainable, from the top.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, show_default=_preset_default("epochs"))
@click.option("--batch-size", type=click.IntRange(min=2), default=None, show_default=_preset_default("batch_size"),
              help="Per process.")
@click.option("--lr", type=float, default=None, show_default=_preset_default("lr"), help="Peak learning rate.")
@click.option("--warmup", type=click.IntRange(min=0), default=None, show_default=_preset_default("warmup"), help="Warmup steps.")
@click.option("--wd", type=float, default=None, show_default=_preset_default("wd"), help="AdamW weight decay.")
@click.option("--seed", type=int, default=None, show_default="0")
@click.option("--cache-image-features/--no-cache-image-features", default=None, show_default=_preset_default("cache_image_features"),
              help="Encode every image once with the locked tower and train the text tower alone.")
@click.option("--threads", type=click.IntRange(min=1), default=None, show_default="auto",
              help="torch's CPU threads. auto: 1 when the model trains under 20M parameters (small steps gain "
                   "nothing from more on a CPU), else torch's default; OMP_NUM_THREADS, when set, wins.")
@click.option("--keep-checkpoints", type=click.IntRange(min=0), default=1,
              help="Keep the last N epochs' checkpoints, and the best by mean loss; 0 keeps all. Optimizer state "
                   "is kept for the last epoch only.")
@click.option("--overwrite", is_flag=True,
              help="Start again in a RUN that holds another run (other data, model or schedule): removes only what "
                   "lit-train wrote there.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None, help="demo: the embedded example on CPU in seconds.")
def lit_train_command(preset, build, run, **given):
    """Train a text tower against a locked, pretrained image tower (LiT) on the shards of BUILD,
    a `vlconvert build` output folder (or fsspec URL).

    \b
    One process:   vlconvert lit-train BUILD --run-dir RUN --preset demo
    Many:          torchrun --nproc_per_node 8 -m vlconvert lit-train BUILD --run-dir RUN --model ViT-B-16 \\
                       --image-weights openclip:laion2b_s34b_b88k --cache-image-features

    RUN resumes only the run it holds: the same build (its manifest's sha256), model,
    weights, captions and schedule; anything else is refused unless --overwrite.
    """
    given["json_text_key_probs"] = caption_keys.parse_weights(given["json_text_key_probs"])
    chosen = {k: v for k, v in given.items() if v is not None and not (k == "overwrite" and v is False)}
    options = with_preset(LitOptions(data=build, out=run, **chosen), preset, set(chosen))
    # Checked before torch loads: a mistyped option, key or run folder costs a second, not a model's start-up.
    options.check()
    check_model_name(options.model, options.model_config)
    caption_keys.check_keys(options.data, options.split, options.captions())
    run_folder.check(options, run_folder.world_size())
    try:
        from vlconvert.lit.train import train
    except ImportError as exc:
        raise VLConvertError(f"lit-train needs the lit extra: pip install 'vlconvert[lit]' ({exc})") from exc
    with ProgressBar("training") as progress:
        def say(line: str) -> None:
            click.echo(("\n" if progress.active else "") + line, err=True)

        summary = train(options, say=say, progress=progress)
    if not summary["trained_epochs"]:
        click.echo(f"nothing to train: the run in {summary['run']} had finished its {summary['epochs']} epochs")
        return
    last = summary["last"].get("loss")
    click.echo(f"trained {summary['epochs']} epochs of {summary['model']}; last loss {last}; run in {summary['run']}")
