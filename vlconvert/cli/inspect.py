"""``vlconvert inspect OUT``: a summary of a finished build on the terminal, and optionally an offline HTML report."""

from __future__ import annotations

import click

from vlconvert.captions.lengths import CONTEXT_LENGTH, percentiles
from vlconvert.cli.vocabulary import renamed
from vlconvert.readback.inspect import Inspection, inspect
from vlconvert.readback.stats import FREQUENCY_PERCENTILES, LENGTH_PERCENTILES
from vlconvert.readback.zeroshot_reports import find_zeroshot_reports
from vlconvert.terminal import printable


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def _row(cells, widths) -> str:
    # The first column (split names) reads left-aligned, numbers right-aligned.
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def summary_lines(report: Inspection) -> list[str]:
    m = report.manifest
    adapter = m.get("adapter") if isinstance(m.get("adapter"), dict) else {}
    lines = [f"{report.out}: {m.get('status')} build of {adapter.get('name', '?')} ({adapter.get('root', '?')}), "
             f"{report.num_classes} classes"]
    if m.get("status") != "complete":
        lines.append("  warning: the build is not complete; rerun its `vlconvert build` command to finish it")
    header = ("split", "shards", "samples", "classes", "bytes", "errors")
    body = [(r.split, f"{r.shards:,}", f"{r.samples:,}", f"{r.classes_present:,}", human_bytes(r.bytes), f"{r.errors:,}")
            for r in report.rows]
    total = ("total", f"{sum(r.shards for r in report.rows):,}", f"{sum(r.samples for r in report.rows):,}",
             f"{report.num_classes:,}", human_bytes(sum(r.bytes for r in report.rows)), f"{sum(r.errors for r in report.rows):,}")
    table = [header, *body, total]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines += [_row(row, widths) for row in table]
    lines.append("templates: " + (", ".join(report.templates) or "none recorded"))
    return lines


def frequency_lines(report: Inspection) -> list[str]:
    if not report.frequency_split:
        return ["images per class: the manifest has no class_counts"]
    counts = report.class_counts
    empty = sum(c == 0 for c in counts)
    lines = [f"images per class in {report.frequency_split} ({len(counts)} classes, from the manifest"
             + (f"; {empty} with no image" if empty else "") + "):",
             "  " + "  ".join(f"{k} {v:,}" for k, v in percentiles(counts, FREQUENCY_PERCENTILES).items())]
    if report.cutoffs:
        low, high = report.cutoffs
        g = report.groups
        lines.append(f"  head {g['head']:,} classes (>= {high:,} images), medium {g['medium']:,}, tail {g['tail']:,} (< {low:,}); "
                     "cut at the thirds, as `vlconvert zeroshot` groups accuracy")
    return lines


def caption_lines(report: Inspection, max_shards: int) -> list[str]:
    partial = report.shards_read < report.shards_total
    lines = [f"captions (KEY.txt) of {report.samples_read:,} samples read from {report.shards_read:,} of "
             f"{report.shards_total:,} shards" + (f" (a seeded sample; --max-shards {max_shards} to read more)" if partial else "") + ":"]
    if not report.char_lengths:
        return lines + ["  no captions read"]
    lines.append("  characters:  " + "  ".join(f"{k} {v:,}" for k, v in percentiles(report.char_lengths, LENGTH_PERCENTILES).items()))
    if report.token_lengths is None:
        lines.append(f"  CLIP tokens: {report.tokenizer_note}")
    else:
        lines.append("  CLIP tokens: " + "  ".join(f"{k} {v:,}" for k, v in percentiles(report.token_lengths, LENGTH_PERCENTILES).items())
                     + f"; {report.over_context:,} exceed {CONTEXT_LENGTH} (truncated in training)")
    return lines


def sample_lines(report: Inspection, n: int, seed: int) -> list[str]:
    if not n:
        return []
    lines = [f"{min(n, len(report.samples))} random samples (--seed {seed}):"]
    for s in report.samples[:n]:
        info = s.info
        common = info.get("common_name")
        name = str(info.get("class_name", "?")) + (f" ({common})" if common and common != info.get("class_name") else "")
        lines.append(f"[{s.split}/{s.key}] label {info.get('label', '?')}: {name}")
        taxonomy = info.get("taxonomy")
        if isinstance(taxonomy, dict) and taxonomy:
            lines.append("    " + " > ".join(str(v) for v in taxonomy.values()))
        for member, caption in s.captions.items():
            lines.append(f"    {s.key}.{member}: {caption}")
    return lines


def problem_lines(report: Inspection) -> list[str]:
    if not report.problems:
        return []
    return [f"problems ({len(report.problems)}; `vlconvert validate` checks the whole build):"] + [f"  {p}" for p in report.problems]


def error_lines(report: Inspection) -> list[str]:
    if not report.errors_total:
        return ["errors: 0"]
    stages = ", ".join(f"{stage} {count:,}" for stage, count in report.errors_by_stage.items())
    lines = [f"errors: {report.errors_total:,} ({stages}); first {len(report.first_errors)} from errors.jsonl:"]
    for e in report.first_errors[:5]:
        lines.append(f"  {e.get('split', '?')}/{e.get('key', '?')} [{e.get('stage', '?')}] {e.get('reason', '')}")
    return lines


def _zeroshot_accuracy(z) -> str:
    if z.acc1 is None:
        return ""
    # A comparison's top-1 is its first model's: say which, lest it read as the report's only number.
    which = f" of {z.model}, the first of {z.models} models" if z.models > 1 and z.model else ""
    return f" (top-1 {100 * z.acc1:.2f}%{which})"


@click.command("inspect", epilog="Exit codes: 0 shown, 2 BUILD is not a vlconvert build (or --report without matplotlib).")
@click.argument("out", metavar="BUILD")
@click.option("--samples", "-n", type=click.IntRange(min=0), default=5, show_default=True, help="Random samples to print.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which shards and samples are drawn.")
@click.option("--max-shards", type=click.IntRange(min=1), default=20, show_default=True,
              help="Most shards streamed for captions and samples (counts come from the manifest).")
@click.option("--report", "html_dir", type=click.Path(file_okay=False), metavar="REPORT_DIR",
              help="Also write an offline HTML report (index.html, thumbs/, plots) into this folder. (Was --html.)")
@renamed("--html", "html_dir", "--report", type=click.Path(file_okay=False))
@click.option("--grid", type=click.IntRange(min=1), default=24, show_default=True, help="Thumbnails in the HTML report.")
@click.option("--zeroshot-report", metavar="DIR", help="A local `vlconvert zeroshot --report` folder to link. "
              "Default: BUILD/zeroshot*/ or a sibling folder whose metrics.json was computed on BUILD.")
def inspect_command(out, samples, seed, max_shards, html_dir, grid, zeroshot_report):
    """Summarize a build: counts per split, class frequencies, caption lengths, random samples.

    \b
    BUILD is the --out of a finished `vlconvert build` (a folder or fsspec URL).
    Example:  vlconvert inspect shards/ --report shards-report/
    """
    if html_dir:
        from vlconvert.readback.report_html import require_matplotlib

        require_matplotlib()  # before reading any shard
    report = inspect(out, samples=max(samples, grid if html_dir else 0), seed=seed, max_shards=max_shards)
    zeroshot = find_zeroshot_reports(out, zeroshot_report)
    sections = [summary_lines(report), problem_lines(report), frequency_lines(report), caption_lines(report, max_shards),
                sample_lines(report, samples, seed), error_lines(report)]
    for z in zeroshot:
        sections.append([f"zero-shot report: {z.document}" + _zeroshot_accuracy(z)])
    # Class names, captions and error reasons are data from someone else's files.
    click.echo("\n\n".join("\n".join(printable(line) for line in s) for s in sections if s))
    if html_dir:
        from vlconvert.readback.report_html import write_report

        index = write_report(html_dir, report, zeroshot, grid, summary_lines(report))
        click.echo(f"\nreport: {index}")
