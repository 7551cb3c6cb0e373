"""The ``vlconvert`` command.

Exit codes: 0 done (a build's rejected records, if any, are listed in
OUT/errors.jsonl); 1 a failure while running (an unwritable output, a full
disk) or, for ``captions lint``, a template that fails; 2 the input or the
command line is wrong (a missing file, a bad layout, a bad option), explained
in one line; 3 built, but more records were rejected than ``--strict`` or
``--max-error-rate`` allow, or every record was (or, when the metadata alone
does, nothing built);
130 interrupted.
"""

from __future__ import annotations

import atexit
import os
import sys

import click

from vlconvert.cli.build import make_build_command
from vlconvert.cli.captions import captions_group
from vlconvert.cli.dedup import dedup_command
from vlconvert.cli.inspect import inspect_command
from vlconvert.cli.lit import lit_train_command
from vlconvert.cli.validate import validate_command
from vlconvert.cli.vocabulary import build_argument, renamed
from vlconvert.cli.zeroshot import zeroshot_command
from vlconvert.errors import BuildFailed, TooManyRejected, VLConvertError
from vlconvert.readback.export import export_clip_benchmark
from vlconvert.registry import available_adapters, describe
from vlconvert.terminal import printable
from vlconvert.version import __version__


# show_default here reaches every command's context: each option's default shows in its --help.
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True})
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
@build_argument
@click.option("--split", "-s", default="val", help="The split to export.")
@click.option("--dataset-root", default=None, metavar="DIR",
              help="Folder to write CLIP_benchmark's wds/ layout into (links to the shards): its --dataset_root. "
                   "Required. (Was --out.)")
@renamed("--out", "dataset_root", "--dataset-root", required=True)
def export_clip_benchmark_command(build, split, dataset_root):
    """Lay out a split of BUILD (a local `vlconvert build` output folder) as a CLIP_benchmark wds/ dataset.

    \b
    Then:  clip_benchmark eval --dataset wds/inat2021 --dataset_root DIR --split val \\
               --model ViT-B-16 --pretrained laion2b_s34b_b88k --task zeroshot_classification
    """
    target = export_clip_benchmark(build, split, dataset_root)
    click.echo(f"exported {split} to {target}: clip_benchmark eval --dataset wds/<name> --dataset_root {target} --split {split} …")


cli.add_command(make_build_command())
cli.add_command(captions_group)
cli.add_command(lit_train_command)
cli.add_command(zeroshot_command)
cli.add_command(validate_command)
cli.add_command(inspect_command)
cli.add_command(dedup_command)


def run_command() -> None:
    """The console script: :func:`main`, then an exit that skips the C++ libraries' static destructors.

    pyarrow's native thread pools may still be joinable when the interpreter tears them down, and a
    std::thread destroyed joinable aborts the process (SIGABRT, "terminate called without an active
    exception"; apache/arrow#34314) after the command has done its work.  Python's own exit handlers
    (Ray, multiprocessing, logging) run first, as they would; only the teardown after them is skipped."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (vlconvert … | head) has nothing left to flush into
            pass
    os._exit(code)


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
