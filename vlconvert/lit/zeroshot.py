"""Zero-shot classification of a converted split: classifier from class names × prompts, then metrics.

The classifier is one normalized mean text embedding per class; it is cached on
disk, keyed by the model's weights, the prompts and the class names.  Metrics
follow CLIP_benchmark's definitions (top-1, top-5, mean per-class recall) and
add accuracy at every taxonomic rank and by training frequency.  The arguments
are checked before this module (and torch) loads: :mod:`vlconvert.lit.evaluation`.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

import vlconvert.lit.model as lit_model
from vlconvert.errors import VLConvertError
from vlconvert.format import LABEL_MEMBER
from vlconvert.lit.data import read_samples, sample_image, split_shards
from vlconvert.lit.report import RANKS
from vlconvert.lit.train import epoch_checkpoints
from vlconvert.readback.stats import frequency_cutoffs, frequency_group

__all__ = ["RANKS", "Loaded", "Wanted", "chance", "classifier", "find_weights", "load_model", "load_run", "metrics",
           "predict"]


@dataclass
class Loaded:
    label: str  # how the report names this model
    model: object
    preprocess: object
    tokenizer: object
    fingerprint: str  # identifies the weights, for the classifier cache


@dataclass
class Wanted:
    """A --model/--pretrained pair, its weights found before any model loads."""
    name: str  # the open_clip model name, its config registered
    pretrained: str | None  # as given: a tag, a file, or None for random init
    weights: str | None  # the local file to load
    preprocess: dict  # a tag's image preprocessing (open_clip applies it only when given the tag, not its file)


def load_run(run: Path, checkpoint: Path | None) -> Loaded:
    """A lit-train run (run.json checked already): ``checkpoint``, or the run's latest when None."""
    name = json.loads((run / "run.json").read_text())["model"]
    if (run / f"{name}.json").is_file():
        open_clip.add_model_config(run / f"{name}.json")
    if checkpoint is None:
        found = epoch_checkpoints(run)
        if not found:
            raise VLConvertError(f"--checkpoint {run}: the run has no checkpoints yet")
        checkpoint = found[-1]
    model, preprocess = _create(name, str(checkpoint), f"--checkpoint {checkpoint}")
    return Loaded(f"{run.name}/{checkpoint.stem}", model, preprocess, open_clip.get_tokenizer(name),
                  lit_model.fingerprint(str(checkpoint)))


def find_weights(name: str, pretrained: str | None) -> Wanted:
    """Where ``--model name --pretrained pretrained`` comes from.  A tag's weights must already be on this
    machine: looked up in the local caches, never downloaded (offline, open_clip would retry for a minute)."""
    name = lit_model.register_config(name, None)
    if not pretrained:
        return Wanted(name, None, None, {})
    if Path(pretrained).is_file():
        lit_model.read_checkpoint(pretrained, "--pretrained")  # a bad file gets a one-line error
        return Wanted(name, pretrained, pretrained, {})
    config = open_clip.get_pretrained_cfg(name, pretrained)
    if not config:
        raise VLConvertError(f"--pretrained {pretrained}: neither a file nor an open_clip tag of {name}")
    path = lit_model.check_weights_available(name, pretrained, f"--pretrained {pretrained}")
    preprocess = {f"image_{k}": config[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in config}
    return Wanted(name, pretrained, path, preprocess)


def load_model(wanted: Wanted) -> Loaded:
    torch.manual_seed(0)  # a random-init model (no --pretrained) is the same one every time
    model, preprocess = _create(wanted.name, wanted.weights, f"--pretrained {wanted.pretrained}", **wanted.preprocess)
    return Loaded(f"{wanted.name}:{wanted.pretrained or 'random'}", model, preprocess, open_clip.get_tokenizer(wanted.name),
                  f"{wanted.name}:{lit_model.fingerprint(wanted.pretrained) if wanted.pretrained else 'random'}")


def _create(name: str, weights: str | None, given: str, **preprocess):
    try:
        model, _, transform = lit_model.create_model_and_transforms(name, pretrained=weights, **preprocess)
    except Exception as exc:  # noqa: BLE001 - open_clip asserts, raises RuntimeError or unpickling errors on a wrong file
        why = textwrap.shorten(str(exc).splitlines()[0], 200, placeholder=" …") if str(exc).strip() else ""
        raise VLConvertError(f"{given}: cannot be loaded as {name} ({type(exc).__name__}{': ' if why else ''}{why})") from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), transform


def classifier(loaded: Loaded, names: list[str], templates: list[str], cache_dir: Path | None, batch_size: int) -> torch.Tensor:
    """One normalized mean text embedding per class; kept in ``cache_dir`` (when given) for the next evaluation."""
    key = hashlib.sha256(json.dumps([loaded.fingerprint, names, templates]).encode()).hexdigest()[:24]
    path = cache_dir / f"classifier-{key}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    rows = []
    with torch.no_grad():
        for start in range(0, len(names), max(1, batch_size // len(templates))):
            chunk = names[start:start + max(1, batch_size // len(templates))]
            texts = loaded.tokenizer([t.format(c=n) for n in chunk for t in templates]).to(_device(loaded))
            features = lit_model.encode_text(loaded.model, texts).view(len(chunk), len(templates), -1).mean(dim=1)
            rows.append(torch.nn.functional.normalize(features, dim=-1))
    weights = torch.cat(rows).cpu()
    if path is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.save(weights, path)
    return weights


def predict(loaded: Loaded, weights: torch.Tensor, data: str, split: str, batch_size: int,
            progress: Callable[[int, int], None] | None = None):
    """(top-5 predictions, labels) over the whole split, in shard order; ``progress(images done, images total)``
    after each batch."""
    urls, total = split_shards(data, split)
    top5, labels, pending, pending_labels = [], [], [], []

    def flush():
        with torch.no_grad():
            images = loaded.model.encode_image(torch.stack(pending).to(_device(loaded)), normalize=True).float().cpu()
            top5.append((images @ weights.T).topk(min(5, weights.shape[0]), dim=1).indices)
        labels.extend(pending_labels)
        pending.clear()
        pending_labels.clear()
        if progress:
            progress(len(labels), max(total, len(labels)))

    if progress:
        progress(0, total)  # the bar shows before the first batch, which can take a while on a large model
    for sample in read_samples(urls):
        pending.append(loaded.preprocess(sample_image(sample)))
        pending_labels.append(int(sample[LABEL_MEMBER]))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return torch.cat(top5), torch.tensor(labels)


def _device(loaded: Loaded) -> torch.device:
    return next(loaded.model.parameters()).device


def metrics(top5: torch.Tensor, labels: torch.Tensor, taxonomy: dict, train_counts: list[int] | None,
            held_out: list[int] | None = None) -> dict:
    result = _core(top5, labels, taxonomy, train_counts)
    if held_out:
        unseen = torch.isin(labels, torch.tensor(held_out))
        for name, mask in (("seen", ~unseen), ("unseen", unseen)):
            if mask.any():
                part = _core(top5[mask], labels[mask], taxonomy, None)
                result[name] = {k: part[k] for k in ("samples", "classes", "acc1", "acc5", "mean_per_class_recall", "per_rank")}
    return result


def _core(top5: torch.Tensor, labels: torch.Tensor, taxonomy: dict, train_counts: list[int] | None) -> dict:
    top1 = top5[:, 0]
    correct = top1 == labels
    classes = sorted(set(labels.tolist()))
    recall = {c: correct[labels == c].double().mean().item() for c in classes}
    result = {
        "samples": len(labels),
        "classes": len(classes),
        "acc1": correct.double().mean().item(),
        "acc5": (top5 == labels[:, None]).any(dim=1).double().mean().item(),
        "mean_per_class_recall": sum(recall.values()) / len(recall),
        "per_rank": {},
        "per_class_acc1": {str(c): v for c, v in recall.items()},
    }
    for rank in RANKS:
        pairs = [(taxonomy.get(p, {}).get(rank), taxonomy.get(t, {}).get(rank)) for p, t in zip(top1.tolist(), labels.tolist())]
        known = [(p, t) for p, t in pairs if t]
        if known:
            result["per_rank"][rank] = sum(p == t for p, t in known) / len(known)
    if train_counts:
        result["by_frequency"] = _by_frequency(recall, correct, labels, train_counts)
    return result


def _by_frequency(recall: dict, correct, labels, train_counts: list[int]) -> dict:
    """Accuracy over head, medium and tail classes, cut at the thirds of the training-count distribution.

    Classes with no training image (held out) belong to none; classes with equal counts share a group."""
    cutoffs = frequency_cutoffs(train_counts[c] for c in recall)
    if cutoffs is None:
        return {}
    groups = {"head": [], "medium": [], "tail": []}
    for c in recall:
        if train_counts[c] > 0:
            groups[frequency_group(train_counts[c], cutoffs)].append(c)
    out = {}
    for name, members in groups.items():
        mask = torch.isin(labels, torch.tensor(members, dtype=labels.dtype))
        out[name] = {"classes": len(members), "acc1": correct[mask].double().mean().item() if mask.any() else None,
                     "train_images_min": min((train_counts[c] for c in members), default=None)}
    return out


def chance(labels: torch.Tensor, num_classes: int) -> dict:
    counts = Counter(labels.tolist())
    return {"acc1": 1 / num_classes, "acc5": min(1.0, 5 / num_classes), "most_frequent_class": max(counts.values()) / len(labels)}
