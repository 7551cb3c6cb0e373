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

import os
import sys

import click

from vlconvert.cli.build import make_build_command
from vlconvert.cli.captions import captions_group
from vlconvert.cli.dedup import dedup_command
from vlconvert.cli.inspect import inspect_command
from vlconvert.cli.lit import lit_train_command, zeroshot_command
from vlconvert.cli.validate import validate_command
from vlconvert.errors import BuildFailed, TooManyRejected, VLConvertError
from vlconvert.readback.export import export_clip_benchmark
from vlconvert.registry import available_adapters, describe
from vlconvert.terminal import printable
from vlconvert.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vlconvert")
def cli() -> None:
    """Turn fine-grained image-classification datasets into captioned webdataset shards
    for CLIP / LiT training.

    Start with `vlconvert build --help`.
    """


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


cli.add_command(make_build_command())
cli.add_command(captions_group)
cli.add_command(lit_train_command)
cli.add_command(zeroshot_command)
cli.add_command(validate_command)
cli.add_command(inspect_command)
cli.add_command(dedup_command)


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
