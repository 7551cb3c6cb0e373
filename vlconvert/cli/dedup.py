"""``vlconvert dedup OUT``: exact and near-duplicate images of a build, reported, and a copy without them."""

from __future__ import annotations

import os

import click

from vlconvert.cli.vocabulary import renamed
from vlconvert.errors import VLConvertError
from vlconvert.pipeline.dedup import DEFAULT_THRESHOLD, SCOPES
from vlconvert.readback.dedup_build import dedup
from vlconvert.terminal import printable


@click.command("dedup", epilog="Exit codes: 0 done (duplicates or not), 2 BUILD, --against or --out is not usable.")
@click.argument("out", metavar="BUILD")
@click.option("--against", multiple=True, metavar="BUILD",
              help="Another vlconvert build (an evaluation set): its images are looked for in BUILD's training splits. Repeatable.")
@renamed("-a", "against", "--against", multiple=True)
@click.option("--threshold", type=click.IntRange(0, 32), default=DEFAULT_THRESHOLD, show_default=True,
              help="Most pHash bits (of 64) two images may differ in to be near duplicates; 0: identical hashes only.")
@renamed("-t", "threshold", "--threshold", type=click.IntRange(0, 32))
@click.option("--report", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write every duplicate found, with its twin, to this JSON-lines file.")
@renamed("-r", "report", "--report", type=click.Path(dir_okay=False, writable=True))
@click.option("--out", "-o", "new_out", default=None, metavar="NEW_BUILD",
              help="Write a copy of BUILD without the training duplicates here, a build of its own (samples copied, not "
                   "re-encoded). (Was --into.)")
@renamed("--into", "new_out", "--out")
@click.option("--overwrite", is_flag=True, help="Replace an earlier vlconvert build in NEW_BUILD.")
def dedup_command(out, against, threshold, report, new_out, overwrite):
    """Find duplicate images in a build: within each split, of the evaluation splits
    (val, test) in the training splits, and of other builds (--against) in the
    training splits.

    \b
    Reads the hashes the build stored in each shard's table (the source file's
    sha256 and a 64-bit pHash); no image is decoded.  Training duplicates are
    what --out leaves out; duplicates within an evaluation split are only
    reported.  docs/dedup.md has the method and its measured precision and recall.
    """
    if report:
        _check_report(report, [out, *against, *([new_out] if new_out else [])])
    result = dedup(out, new_out, against=against, threshold=threshold, overwrite=overwrite)
    if report:
        scratch = f"{report}.tmp"
        with open(scratch, "wb") as f:
            f.write(result.report())
        os.replace(scratch, report)
    counts = result.counts()
    if not counts:
        click.echo(f"{printable(out)}: no duplicates at threshold {threshold}")
    for split, c in counts.items():
        scopes = ", ".join(f"{c[s]} {s}" for s in SCOPES if c[s])
        click.echo(f"{split}: {c['found']} duplicates ({scopes}; {c['exact']} exact, {c['near']} near), {c['dropped']} dropped")
    if new_out:
        kept = "the training duplicates left out" if any(c["dropped"] for c in counts.values()) else "nothing to leave out"
        click.echo(f"wrote {printable(new_out)}: a copy of {printable(out)} with {kept}")


def _check_report(report: str, builds: list[str]) -> None:
    """Before any work: the report's folder exists, and the report lands in none of the builds read or written
    (``--report OUT/manifest.json`` would replace the manifest of the build it reads)."""
    target = os.path.realpath(report)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise VLConvertError(f"--report {report}: cannot write there (no such folder, or not writable)")
    for build in builds:
        if "://" in build:
            continue
        root = os.path.realpath(build)
        if target == root or target.startswith(root.rstrip("/") + "/"):
            raise VLConvertError(f"--report {report} is inside the build {build}; write the report outside any build folder")
