"""The zero-shot report: metrics.json, a Markdown table, and two plots.

Imports neither torch nor matplotlib until a plot is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlconvert.readback.zeroshot_reports import METRICS, REPORT

RANKS = ("species", "genus", "family", "order", "class", "phylum", "kingdom")


def document(results: dict[str, dict], chance: dict, context: dict) -> dict:
    """metrics.json: the same shape for one model or many, so a reader never has to count them first.

    The first model's name and metrics at the top level (what ``inspect`` shows), and every model, the first
    included, in ``models`` in the order given."""
    first, metrics = next(iter(results.items()))
    return {**context, "model": first, **metrics, "chance": chance,
            "models": [{"model": name, **result} for name, result in results.items()]}


def write(directory: Path, results: dict[str, dict], chance: dict, context: dict, train_counts: list[int] | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METRICS).write_text(json.dumps(document(results, chance, context), indent=2) + "\n")
    (directory / REPORT).write_text(markdown(results, chance, context))
    _plots(directory, results, train_counts)


def markdown(results: dict[str, dict], chance: dict, context: dict) -> str:
    names = list(results)
    rows = [("top-1", "acc1"), ("top-5", "acc5"), ("mean per-class recall", "mean_per_class_recall")]
    lines = [f"# Zero-shot: {context['data']} ({context['split']}, {context['prompts']} prompts)", "",
             "| metric | " + " | ".join(names) + " | chance |", "| --- |" + " --- |" * (len(names) + 1)]
    for title, key in rows:
        lines.append(f"| {title} | " + " | ".join(_pct(results[n][key]) for n in names) + f" | {_pct(chance.get(key))} |")
    for rank in RANKS:
        if any(rank in results[n]["per_rank"] for n in names):
            lines.append(f"| {rank} | " + " | ".join(_pct(results[n]["per_rank"].get(rank)) for n in names) + " | |")
    for part in ("seen", "unseen"):
        if all(part in results[n] for n in names):
            lines.append(f"| top-1, {part} classes | " + " | ".join(_pct(results[n][part]["acc1"]) for n in names) + " | |")
    for group in ("head", "medium", "tail"):
        if all("by_frequency" in results[n] for n in names):
            lines.append(f"| {group} classes | " + " | ".join(_pct(results[n]["by_frequency"][group]["acc1"]) for n in names) + " | |")
    sample = results[names[0]]
    lines += ["", f"{sample['samples']} images, {sample['classes']} classes. Rank rows: the predicted class's rank "
                  "equals the true one's (species is top-1)."]
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _plots(directory: Path, results: dict[str, dict], train_counts: list[int] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(results)
    for i, (name, result) in enumerate(results.items()):
        ranks = [r for r in RANKS if r in result["per_rank"]]
        ax.bar([x + i * width for x in range(len(ranks))], [100 * result["per_rank"][r] for r in ranks], width, label=name)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(ranks))], ranks)
    ax.set_ylabel("top-1 accuracy at this rank (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy by taxonomic rank")
    fig.tight_layout()
    fig.savefig(directory / "accuracy_by_rank.png", dpi=120)
    plt.close(fig)

    if train_counts:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, result in results.items():
            per_class = {int(c): v for c, v in result["per_class_acc1"].items()}
            ax.scatter([train_counts[c] for c in per_class], [100 * v for v in per_class.values()], s=12, alpha=0.7, label=name)
        ax.set_xlabel("training images of the class")
        ax.set_ylabel("top-1 accuracy of the class (%)")
        ax.set_title("Per-class accuracy against training frequency")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(directory / "accuracy_vs_frequency.png", dpi=120)
        plt.close(fig)
