"""``vlconvert validate OUT``: read a build back and report what does not match its manifest."""

from __future__ import annotations

import sys

import click

from vlconvert.cli.progress import ProgressBar
from vlconvert.readback.validate import validate
from vlconvert.terminal import printable


@click.command("validate", epilog="Exit codes: 0 every check holds, 1 problems found (listed, one a line), "
                                  "2 BUILD is not a vlconvert build.")
@click.argument("out", metavar="BUILD")
@click.option("--no-decode", is_flag=True, help="Skip decoding the images (faster; hashes still catch changed bytes).")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True,
              help="Shards read at a time (threads).")
def validate_command(out, no_decode, workers):
    """Check a build's output against its manifest.json.

    \b
    Reads every listed shard back: the tar, its size, sha256 and sample count;
    each sample's image (decoded), caption, label and JSON; unique keys.
    Then each split's sizes.json and counts, unlisted .tar files, errors.jsonl,
    classnames.txt and classes.jsonl.  BUILD is the --out folder of `vlconvert build`
    (or an fsspec URL).
    """
    # Drawn on a terminal only: in a job's log click's bar would leave just its label.
    with ProgressBar("checking shards") as progress:
        report = validate(out, decode=not no_decode, workers=workers, progress=progress if sys.stderr.isatty() else None)
    for problem in report.problems:
        click.echo(printable(problem))
    splits = len(report.splits)
    counts = (f"{splits} split{'s' * (splits != 1)}, {report.shards} shard{'s' * (report.shards != 1)}, "
              f"{report.samples:,} samples checked{'' if not no_decode else ' (images not decoded)'}")
    if report.ok:
        click.echo(f"{out}: {counts}; no problems")
        return
    problems = len(report.problems)
    click.echo(f"{out}: {counts}; {problems} problem{'s' * (problems != 1)} (build status: {report.status})")
    raise SystemExit(1)
