"""The HTML report of ``vlconvert inspect --html``: one self-contained folder that opens offline.

Everything is local: CSS inline, thumbnails and plots as files beside
index.html, links relative, so the folder can be copied or attached as it is.
Every text that comes from the data (class names, captions, error reasons) is
HTML-escaped: a dataset's names are not trusted markup.
"""

from __future__ import annotations

import io
import os
from html import escape
from pathlib import Path

from vlconvert.captions.lengths import CONTEXT_LENGTH, percentiles
from vlconvert.errors import VLConvertError
from vlconvert.readback.inspect import Inspection
from vlconvert.readback.stats import FREQUENCY_PERCENTILES, LENGTH_PERCENTILES

THUMB_SIZE = 192

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } td.text { text-align: left; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fafafa; border: 1px solid #e5e5e5; border-radius: 6px; padding: 6px; }
figure img { display: block; margin: 0 auto; max-width: 100%; height: auto; }
figcaption { font-size: 12px; margin-top: 4px; } .name { font-weight: 600; } .tax { color: #666; }
.caption { margin-top: 3px; } .member { color: #888; } .plot { max-width: 100%; }
.note { color: #666; } .warn { color: #a00; }
"""


def require_matplotlib() -> None:
    """The report's plots need matplotlib (the ``report`` extra); ``inspect --html`` checks before reading any shard."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise VLConvertError("--report needs matplotlib: pip install 'vlconvert[report]'") from None


def write_report(directory: str, report: Inspection, zeroshot: list, grid: int, summary: list[str]) -> str:
    """Writes the report into ``directory``; returns the path of its index.html."""
    require_matplotlib()
    root = Path(directory)
    thumbs = root / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    for old in thumbs.glob("*.jpg"):  # a rerun with fewer samples must not leave stale thumbnails behind
        old.unlink()
    cards = [_card(sample, thumbs, number) for number, sample in enumerate(report.samples[:grid])]
    _plot_long_tail(root / "long_tail.png", report)
    _plot_caption_lengths(root / "caption_lengths.png", report)
    parts = [f"<h1>vlconvert build: {escape(report.out)}</h1>", f"<p class='note'>{escape(summary[0])}</p>",
             _summary_table(report), _frequency(report), _captions(report), _grid(cards, report), _errors(report),
             _zeroshot(zeroshot, root)]
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>vlconvert inspect: {escape(report.out)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    index = root / "index.html"
    index.write_text(page, encoding="utf-8")
    return str(index)


def _table(header, rows, text_columns=()) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=text' if i in text_columns else ''}>{escape(str(c))}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_table(report: Inspection) -> str:
    rows = [(r.split, f"{r.shards:,}", f"{r.samples:,}", f"{r.classes_present:,}", f"{r.bytes:,}", f"{r.errors:,}") for r in report.rows]
    rows.append(("total", f"{sum(r.shards for r in report.rows):,}", f"{sum(r.samples for r in report.rows):,}",
                 f"{report.num_classes:,}", f"{sum(r.bytes for r in report.rows):,}", f"{sum(r.errors for r in report.rows):,}"))
    warn = "" if report.manifest.get("status") == "complete" else "<p class='warn'>The build is not complete.</p>"
    return (f"<h2>Manifest</h2>{warn}" + _table(("split", "shards", "samples", "classes present", "bytes", "errors"), rows)
            + f"<p>Templates: {escape(', '.join(report.templates) or 'none recorded')}</p>")


def _frequency(report: Inspection) -> str:
    if not report.frequency_split:
        return "<h2>Images per class</h2><p>The manifest has no class_counts.</p>"
    stats = percentiles(report.class_counts, FREQUENCY_PERCENTILES)
    text = f"<h2>Images per class ({escape(report.frequency_split)})</h2>" + _table(list(stats), [[f"{v:,}" for v in stats.values()]])
    if report.cutoffs:
        low, high = report.cutoffs
        g = report.groups
        text += (f"<p>Head {g['head']:,} classes (&ge; {high:,} images), medium {g['medium']:,}, tail {g['tail']:,} "
                 f"(&lt; {low:,}), cut at the thirds as <code>vlconvert zeroshot</code> groups accuracy.</p>")
    return text + "<img class='plot' src='long_tail.png' alt='images per class, sorted (long-tail plot)'>"


def _captions(report: Inspection) -> str:
    text = (f"<h2>Caption lengths</h2><p class='note'>KEY.txt of {report.samples_read:,} samples from "
            f"{report.shards_read:,} of {report.shards_total:,} shards.</p>")
    rows = [("characters", *percentiles(report.char_lengths, LENGTH_PERCENTILES).values())] if report.char_lengths else []
    if report.token_lengths:
        rows.append(("CLIP tokens", *percentiles(report.token_lengths, LENGTH_PERCENTILES).values()))
    text += _table(("", *(name for name, _ in LENGTH_PERCENTILES)), rows)
    if report.token_lengths is None:
        text += f"<p class='note'>CLIP tokens: {escape(report.tokenizer_note)}</p>"
    else:
        text += f"<p>{report.over_context:,} captions exceed {CONTEXT_LENGTH} tokens (truncated in training).</p>"
    return text + "<img class='plot' src='caption_lengths.png' alt='caption length histogram'>"


def _card(sample, thumbs: Path, number: int) -> str:
    info = sample.info
    img = "<p class='warn'>(image not readable)</p>"
    if sample.image is not None:
        try:
            from PIL import Image

            with Image.open(io.BytesIO(sample.image)) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMB_SIZE, THUMB_SIZE))
                name = f"{number:03d}.jpg"
                im.save(thumbs / name, "JPEG", quality=85)
                img = (f"<img src='thumbs/{name}' width='{im.width}' height='{im.height}' "
                       f"alt='{escape(str(info.get('class_name', sample.key)), quote=True)}'>")
        except Exception:  # a damaged image shows as such; `vlconvert validate` is the place to hunt it down
            pass
    name = escape(str(info.get("class_name", "?")))
    common = info.get("common_name")
    if common and common != info.get("class_name"):
        name += f" ({escape(str(common))})"
    taxonomy = info.get("taxonomy") if isinstance(info.get("taxonomy"), dict) else {}
    captions = "".join(f"<div class='caption'><span class='member'>{escape(member)}:</span> {escape(text)}</div>"
                       for member, text in sample.captions.items())
    return (f"<figure>{img}<figcaption><div class='name'>{name}</div>"
            f"<div class='tax'>{escape(' › '.join(str(v) for v in taxonomy.values()))}</div>"
            f"<div class='member'>{escape(sample.split)}/{escape(sample.key)} · label {escape(str(info.get('label', '?')))}</div>"
            f"{captions}</figcaption></figure>")


def _grid(cards: list[str], report: Inspection) -> str:
    return (f"<h2>Samples</h2><p class='note'>{len(cards)} drawn at random from the {report.samples_read:,} samples read.</p>"
            f"<div class='grid'>{''.join(cards)}</div>")


def _errors(report: Inspection) -> str:
    if not report.errors_total:
        return "<h2>Errors</h2><p>No record was rejected.</p>"
    text = "<h2>Errors</h2>" + _table(("stage", "records"), [(s, f"{n:,}") for s, n in report.errors_by_stage.items()])
    rows = [(e.get("split", ""), e.get("key", ""), e.get("stage", ""), e.get("source", ""), e.get("reason", ""))
            for e in report.first_errors]
    return (text + f"<p class='note'>The first {len(rows)} of {report.errors_total:,} in errors.jsonl:</p>"
            + _table(("split", "key", "stage", "source", "reason"), rows, text_columns=(1, 2, 3, 4)))


def _zeroshot(reports: list, root: Path) -> str:
    if not reports:
        return ""
    items = []
    for z in reports:
        href = z.document if "://" in z.document else os.path.relpath(z.document, root)
        accuracy = f" (top-1 {100 * z.acc1:.2f}%)" if z.acc1 is not None else ""
        items.append(f"<li><a href='{escape(href, quote=True)}'>{escape(z.document)}</a>{accuracy}</li>")
    return "<h2>Zero-shot</h2><ul>" + "".join(items) + "</ul>"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a data box
    from matplotlib import pyplot

    return pyplot


def _plot_long_tail(path: Path, report: Inspection) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    counts = sorted(report.class_counts, reverse=True)
    if counts:
        ax.plot(range(1, len(counts) + 1), [max(c, 0.5) for c in counts], drawstyle="steps-mid")  # log axis: show 0 at 0.5
        ax.set_yscale("log")
    if report.cutoffs:
        low, high = report.cutoffs
        g = report.groups
        # Sorted descending, so the head ends after its count of classes and the tail starts after head + medium.
        ax.axvline(g["head"] + 0.5, color="tab:red", linestyle="--", label=f"head ≥ {high}")
        ax.axvline(g["head"] + g["medium"] + 0.5, color="tab:orange", linestyle=":", label=f"tail < {low}")
        ax.legend(fontsize=8)
    ax.set_xlabel("class (sorted by images)")
    ax.set_ylabel("images (log)")
    ax.set_title(f"Images per class, {report.frequency_split or 'no counts'}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_caption_lengths(path: Path, report: Inspection) -> None:
    plt = _pyplot()
    panels = [("characters", report.char_lengths)] + ([("CLIP tokens", report.token_lengths)] if report.token_lengths else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (label, values) in zip(axes[0], panels):
        ax.hist(values or [0], bins=30, color="tab:blue")
        if label == "CLIP tokens":
            ax.axvline(CONTEXT_LENGTH, color="tab:red", linestyle="--", label=f"context {CONTEXT_LENGTH}")
            ax.legend(fontsize=8)
        ax.set_xlabel(f"caption length ({label})")
        ax.set_ylabel("captions")
    fig.suptitle("Caption lengths (KEY.txt)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
