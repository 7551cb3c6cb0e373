"""The ``vlconvert`` command.

Exit codes: 0 done (a build's rejected records, if any, are listed in
OUT/errors.jsonl); 1 a failure while running (an unwritable output, a full
disk) or, for ``captions lint``, a template that fails; 2 the input or the
command line is wrong (a missing file, a bad layout, a bad option), explained
in one line; 3 built, but more records were rejected than ``--strict`` or
``--max-error-rate`` allow (or, when the metadata alone does, nothing built);
130 interrupted.
"""

from __future__ import annotations

import math
import os
import sys

import click
from click.core import ParameterSource

from . import __version__
from .build import DEFAULT_SHARD_SIZE, BuildSummary, PlanSummary, build
from .cli_captions import captions_group
from .cli_inspect import inspect_command
from .cli_lit import lit_train_command, zeroshot_command
from .cli_progress import ProgressLine
from .cli_validate import validate_command
from .config import load_config, parse_size
from .executors import EXECUTORS
from .export import export_clip_benchmark
from .images import DEFAULT_MAX_IMAGE_PIXELS, OUTPUT_FORMATS, RESIZE_MODES
from .prompts import DEFAULT_PROMPT_SET
from .records import BuildFailed, TooManyRejected, VLConvertError
from .registry import available_adapters, describe
from .terminal import printable

MAX_IGNORED_LISTED = 50


class ByteSize(click.ParamType):
    """A byte count: 500MB and 2GB are decimal, 500MiB and 2GiB binary."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _weights(ctx, param, value):
    if not value:
        return None
    weights = {}
    for item in value.split(","):
        name, sep, weight = item.rpartition("=")
        name = name.strip()
        try:
            number = float(weight)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not NAME=WEIGHT", ctx, param) from None
        if not sep or not name or not math.isfinite(number) or number <= 0:
            raise click.BadParameter(f"{item!r} is not NAME=WEIGHT with a positive, finite weight", ctx, param)
        if name in weights:
            raise click.BadParameter(f"{name!r} is given twice", ctx, param)
        weights[name] = number
    return weights


def _key_value(ctx, param, values):
    options = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx, param)
        options[key] = value
    return options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vlconvert")
def cli() -> None:
    """Turn fine-grained image-classification datasets into captioned webdataset shards
    for CLIP / LiT training.

    Start with `vlconvert build --help`.
    """


@cli.command("build", epilog="Exit codes: 0 built (see OUT/errors.jsonl for rejected records), 1 failed while running, "
                    "2 bad input, layout or options, 3 more records rejected than --strict / --max-error-rate allow, "
                    "130 interrupted (rerun the same command to resume).")
@click.option("--config", "config_file", metavar="FILE",
              help="Read the build options from a TOML or JSON file (keys as in docs/configuration.md), or from a build's "
                   "manifest.json to repeat that build; options given on the command line override the file's.")
@click.option("--adapter", "-a", help="Dataset reader, e.g. inat2021 (see `vlconvert adapters`). Required, here or in --config.")
@click.option("--root", "-r", help="The dataset's folder (or fsspec URL), in its official release layout. Required, here or in --config.")
@click.option("--out", "-o", help="Output folder (or fsspec URL) for shards and side files. Required, here or in --config.")
@click.option("--split", "splits", multiple=True, help="Split to convert; repeat for several. Default: every split found.")
@click.option("--template", "-t", "templates", multiple=True, metavar="NAME|FILE.j2",
              help="Caption template: a built-in name or a .j2 file. The first fills KEY.txt, each further one "
                   "KEY.<name>.txt. Default: taxonomic_common. See `vlconvert captions list`.")
@click.option("--template-mix", callback=_weights, metavar="NAME=W,...",
              help="Fill KEY.txt from one of several templates per sample, drawn by weight from the seed, "
                   "e.g. scientific=0.3,common=0.3,taxonomic=0.4. --template then only adds KEY.<name>.txt members.")
@click.option("--all-templates", is_flag=True, help="Also write every built-in template as KEY.<name>.txt.")
@click.option("--zeroshot-prompts", default=DEFAULT_PROMPT_SET, show_default=True, metavar="SET|FILE",
              help="What classnames.txt and zeroshot_classification_templates.txt hold: simple, openai_imagenet "
                   "(CLIP's 80), same_as_training (each class's training caption), or a file of {c} templates.")
@click.option("--holdout-classes", metavar="FRACTION|FILE",
              help="Keep these classes out of the training splits (a seeded fraction, or a file of class names) "
                   "but in the evaluation splits, for zero-shot transfer to unseen species.")
@click.option("--resize", type=click.IntRange(min=1), metavar="N",
              help="Resize so the side chosen by --resize-mode is N pixels (never enlarged without --upscale). "
                   "Default: original bytes pass through.")
@click.option("--resize-mode", type=click.Choice(RESIZE_MODES), default="shorter", show_default=True,
              help="shorter: shorter side N; longer: longer side N; center_crop: shorter side N, then the centre NxN; "
                   "none: keep the size.")
@click.option("--format", "image_format", type=click.Choice(OUTPUT_FORMATS), default="auto", show_default=True,
              help="auto: original bytes when nothing changes, else JPEG; jpg or webp: always that format.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality when re-encoding.")
@click.option("--upscale", is_flag=True, help="Enlarge images smaller than --resize (default: keep them as they are).")
@click.option("--max-image-bytes", type=ByteSize(), default="256MiB", show_default=True,
              help="Reject an image file larger than this, without reading it.")
@click.option("--max-image-pixels", type=click.IntRange(1, DEFAULT_MAX_IMAGE_PIXELS), default=DEFAULT_MAX_IMAGE_PIXELS,
              show_default=True, help="Reject an image with more pixels than this, from its header, before decoding it "
                                      "(a JPEG also by its pixels times its scans; see docs/security.md).")
@click.option("--shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_SIZE, show_default=True, help="Most samples per shard.")
@click.option("--shard-max-bytes", type=ByteSize(), default="1GiB", show_default=True, help="Most bytes per shard, e.g. 500MB.")
@click.option("--workers", "-w", type=click.IntRange(min=1),
              help="Processes writing shards in parallel. Default: 1 locally, every CPU of the cluster with --executor ray.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="Where shard tasks run: local processes, or a Ray cluster (pip install 'vlconvert[ray]').")
@click.option("--ray-address", metavar="ADDRESS",
              help="The Ray cluster to join, e.g. 10.0.0.1:6379 or auto. Default: RAY_ADDRESS, else a new local instance.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the global shuffle; same inputs and seed give identical shards.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier vlconvert build in OUT. (An unfinished build of the same command is resumed instead.)")
@click.option("--no-resume", is_flag=True, help="With --overwrite, start an unfinished build of the same command over.")
@click.option("--strict", is_flag=True, help="Exit 3 if any record is rejected (the build still completes, or fails before any "
              "image is read when the metadata already rejects records).")
@click.option("--max-error-rate", type=click.FloatRange(0, 1), metavar="FRACTION",
              help="Exit 3 if more than this fraction of the records read is rejected, e.g. 0.001.")
@click.option("--dry-run", is_flag=True, help="Read the metadata and plan the shards; print what would be built, touch no image or file.")
@click.option("--option", "adapter_options", multiple=True, metavar="KEY=VALUE", callback=_key_value,
              help="An option passed to the adapter; repeat for several.")
@click.pass_context
def build_command(ctx, config_file, no_resume, **options):
    """Convert a dataset into webdataset tar shards with captions.

    \b
    Writes OUT/<split>/<split>-NNNNNN.tar, each split's sizes.json, and
    OUT/manifest.json, classnames.txt, zeroshot_classification_templates.txt
    and errors.jsonl.

    \b
    Example:
      vlconvert build --adapter inat2021 --root data/inat2021 --out shards/ \\
          --split train --split val --resize 256 --workers 8
    """
    if config_file:
        _apply_config(ctx, config_file, options)
    for name in ("adapter", "root", "out"):
        if not options[name]:
            raise click.UsageError(f"Missing option '--{name}' (give it here or as {name} in a --config file).", ctx)
    adapter, root, out = options.pop("adapter"), options.pop("root"), options.pop("out")
    click.echo(f"reading {adapter} dataset at {root}", err=True)
    with ProgressLine("writing shards") as progress:
        try:
            summary = build(adapter, root, out, resume=not no_resume, progress=progress, **options)
        except TooManyRejected as exc:
            if exc.summary is not None:
                _print_summary(exc.summary)
            raise
        except OSError as exc:  # a full disk, a lost mount: the user's to fix, and nothing finished is lost
            where = f": {exc.filename}" if exc.filename else ""
            raise BuildFailed(f"{exc.strerror or exc}{where}; shards finished so far are kept: "
                              "fix this and rerun the same command to resume") from exc
    if isinstance(summary, PlanSummary):
        _print_plan(summary)
        return
    _print_summary(summary)
    if summary.duplicate_classnames:
        click.echo(f"warning: classnames.txt repeats {summary.duplicate_classnames} names (compared as CLIP's tokenizer sees them); "
                   "zero-shot evaluation cannot tell those classes apart", err=True)


def _apply_config(ctx: click.Context, path: str, options: dict) -> None:
    """Fill ``options`` from the file, except where the command line gave an option explicitly."""
    for name, value in load_config(path).items():
        explicit = ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
        if name == "adapter_options":
            options[name] = {**value, **options[name]}  # --option KEY=VALUE replaces that one key
        elif not explicit:
            options[name] = value


def _print_plan(plan: PlanSummary) -> None:
    click.echo(f"dry run: nothing read or written; {plan.classes} classes; planned in {plan.seconds:.1f} s")
    click.echo(f"{'split':12} {'records':>10} {'rejected':>9} {'held out':>9} {'shards':>8} {'ignored':>8}")
    for name, s in plan.splits.items():
        click.echo(f"{name:12} {s.records:>10,} {s.rejected:>9,} {s.held_out:>9,} {s.tasks:>8,} {len(s.ignored):>8,}")
    ignored = [path for s in plan.splits.values() for path in s.ignored]
    if ignored:
        click.echo(f"ignored: {len(ignored):,} hidden files and folders (names starting with '.'), left out by convention:")
        for path in ignored[:MAX_IGNORED_LISTED]:
            click.echo(f"  {printable(path)}")
        if len(ignored) > MAX_IGNORED_LISTED:
            click.echo(f"  … and {len(ignored) - MAX_IGNORED_LISTED:,} more")
    click.echo(f"shards hold at most {plan.shard_size} samples; more are cut where --shard-max-bytes is reached")


def _print_summary(summary: BuildSummary) -> None:
    per_split = ", ".join(f"{name}: {s.written} in {len(s.shards)} shard{'s' * (len(s.shards) != 1)}" for name, s in summary.splits.items())
    if summary.resumed_tasks:
        click.echo(f"resumed an interrupted build: {summary.resumed_tasks} shard tasks were already done")
    click.echo(f"wrote {summary.written} samples in {summary.shards} shard{'s' * (summary.shards != 1)} to {summary.out} ({per_split})")
    ignored = sum(s.ignored for s in summary.splits.values())
    if ignored:
        click.echo(f"ignored {ignored} hidden files and folders (names starting with '.'); --dry-run lists them")
    if summary.errored:
        stages = ", ".join(f"{stage}: {n}" for stage, n in summary.errors_by_stage.items())
        click.echo(f"rejected {summary.errored} records ({stages}); reasons in {summary.out.rstrip('/')}/errors.jsonl")
        read = sum(s.read for s in summary.splits.values())
        click.echo(f"warning: {summary.errored} of {read} records ({summary.errored / read:.2%}) were rejected and are not in the "
                   f"shards; see {summary.out.rstrip('/')}/errors.jsonl (--strict or --max-error-rate make this an error)", err=True)
    else:
        click.echo("errors: 0")
    click.echo(f"{summary.images_per_second:.1f} images/s ({summary.seconds:.1f} s)")


@cli.command("adapters")
def adapters_command():
    """List the dataset adapters: built-in and installed plugins."""
    for name, entry in available_adapters().items():
        origin = "" if entry.origin == "built-in" else f"  [{entry.origin}]"
        click.echo(f"{name:16} {describe(entry)}{origin}")


@cli.command("export-clip-benchmark")
@click.option("--data", required=True, help="A local `vlconvert build` output folder.")
@click.option("--split", default="val", show_default=True)
@click.option("--out", required=True, help="Folder to write CLIP_benchmark's wds/ layout into (links to the shards).")
def export_clip_benchmark_command(data, split, out):
    """Lay out a converted split as a CLIP_benchmark wds/ dataset.

    \b
    Then:  clip_benchmark eval --dataset wds/inat2021 --dataset_root OUT --split val \\
               --model ViT-B-16 --pretrained laion2b_s34b_b88k --task zeroshot_classification
    """
    target = export_clip_benchmark(data, split, out)
    click.echo(f"exported {split} to {target}: clip_benchmark eval --dataset wds/<name> --dataset_root {target} --split {split} …")


cli.add_command(captions_group)
cli.add_command(lit_train_command)
cli.add_command(zeroshot_command)
cli.add_command(validate_command)
cli.add_command(inspect_command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except VLConvertError as exc:  # messages quote the data's own names and values: escaped for the terminal
        click.echo(f"error: {printable(exc)}", err=True)
        sys.exit(2)
    except BuildFailed as exc:
        click.echo(f"error: {printable(exc)}", err=True)
        sys.exit(1)
    except TooManyRejected as exc:
        click.echo(f"error: {printable(exc)}", err=True)
        sys.exit(3)
    except OSError as exc:
        # An unwritable --out, a full disk, a vanished mount: the user's to fix, and the
        # message already names the file.  VLCONVERT_DEBUG=1 shows the traceback.
        if os.environ.get("VLCONVERT_DEBUG"):
            raise
        click.echo(f"error: {printable(exc)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
