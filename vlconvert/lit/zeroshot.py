"""Zero-shot classification of a converted split: classifier from class names × prompts, then metrics.

The classifier is one normalized mean text embedding per class; it is cached on
disk, keyed by the model's weights, the prompts and the class names.  Metrics
follow CLIP_benchmark's definitions (top-1, top-5, mean per-class recall) and
add accuracy at every taxonomic rank and by training frequency.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from PIL import Image

from vlconvert.records import VLConvertError
from vlconvert.storage import filesystem

from . import model as lit_model
from .data import IMAGE_MEMBERS, read_samples, split_shards

RANKS = ("species", "genus", "family", "order", "class", "phylum", "kingdom")


@dataclass
class Loaded:
    label: str  # how the report names this model
    model: object
    preprocess: object
    tokenizer: object
    fingerprint: str  # identifies the weights, for the classifier cache


def load_run(path: str) -> Loaded:
    """A lit-train run folder (its latest checkpoint), or one checkpoint file inside a run."""
    target = Path(path)
    run = target.parent.parent if target.is_file() else target
    if not (run / "run.json").is_file():
        raise VLConvertError(f"--checkpoint {path}: not a lit-train run folder or a checkpoint inside one (no run.json)")
    name = json.loads((run / "run.json").read_text())["model"]
    if (run / f"{name}.json").is_file():
        open_clip.add_model_config(run / f"{name}.json")
    if target.is_file():
        checkpoint = target
    else:
        found = sorted((run / "checkpoints").glob("epoch_*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
        if not found:
            raise VLConvertError(f"--checkpoint {path}: the run has no checkpoints yet")
        checkpoint = found[-1]
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(checkpoint))
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    return Loaded(f"{run.name}/{checkpoint.stem}", model.eval(), preprocess, open_clip.get_tokenizer(name), digest)


def load_model(name: str, pretrained: str | None) -> Loaded:
    name = lit_model.register_config(name, None)
    if pretrained and not Path(pretrained).is_file() and not open_clip.get_pretrained_cfg(name, pretrained):
        raise VLConvertError(f"--pretrained {pretrained}: neither a file nor an open_clip tag of {name}")
    torch.manual_seed(0)  # a random-init model (no --pretrained) is the same one every time
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    except RuntimeError as exc:
        raise VLConvertError(f"--model {name} --pretrained {pretrained}: {exc}") from None
    return Loaded(f"{name}:{pretrained or 'random'}", model.eval(), preprocess, open_clip.get_tokenizer(name),
                  f"{name}:{pretrained}")


def prompt_texts(data: str, prompts: str) -> tuple[list[str], list[str]]:
    """(class names, templates): the build's own files, a built-in set, or a file of templates."""
    fs, out = filesystem(data, "--data")

    def read(name: str) -> list[str]:
        with fs.open(posixpath.join(out, name), "rb") as f:
            return [line for line in f.read().decode("utf-8").splitlines() if line.strip()]

    names = read("classnames.txt")
    if prompts == "build":
        return names, read("zeroshot_classification_templates.txt")
    if prompts == "same_as_training":
        templates = read("zeroshot_classification_templates.txt")
        if templates != ["{c}"]:
            raise VLConvertError(f"{data}: --prompts same_as_training needs a build made with --zeroshot-prompts same_as_training")
        return names, templates
    from vlconvert.captions import builtin_resource, read_utf8
    from vlconvert.prompts import BUILTIN_PROMPT_SETS, _templates

    if prompts in BUILTIN_PROMPT_SETS:
        return names, _templates(builtin_resource(f"zeroshot/{prompts}.txt"), prompts)
    if not Path(prompts).is_file():
        raise VLConvertError(f"--prompts {prompts!r}: build, simple, openai_imagenet, same_as_training, or a file of {{c}} templates")
    return names, _templates(read_utf8(Path(prompts), "prompt file"), prompts)


def classifier(loaded: Loaded, names: list[str], templates: list[str], cache_dir: Path, batch_size: int) -> torch.Tensor:
    key = hashlib.sha256(json.dumps([loaded.fingerprint, names, templates]).encode()).hexdigest()[:24]
    path = cache_dir / f"classifier-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    rows = []
    with torch.no_grad():
        for start in range(0, len(names), max(1, batch_size // len(templates))):
            chunk = names[start:start + max(1, batch_size // len(templates))]
            texts = loaded.tokenizer([t.format(c=n) for n in chunk for t in templates])
            features = lit_model.encode_text(loaded.model, texts).view(len(chunk), len(templates), -1).mean(dim=1)
            rows.append(torch.nn.functional.normalize(features, dim=-1))
    weights = torch.cat(rows)
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(weights, path)
    return weights


def predict(loaded: Loaded, weights: torch.Tensor, data: str, split: str, batch_size: int):
    """(top-5 predictions, labels, taxonomy per label seen) over the whole split, in shard order."""
    urls, _ = split_shards(data, split)
    top5, labels, taxonomy, pending, pending_labels = [], [], {}, [], []

    def flush():
        with torch.no_grad():
            images = loaded.model.encode_image(torch.stack(pending), normalize=True)
            top5.append((images @ weights.T).topk(min(5, weights.shape[0]), dim=1).indices)
        labels.extend(pending_labels)
        pending.clear()
        pending_labels.clear()

    for sample in read_samples(urls):
        member = next(m for m in IMAGE_MEMBERS if m in sample)
        with Image.open(io.BytesIO(sample[member])) as img:
            pending.append(loaded.preprocess(img.convert("RGB")))
        label = int(sample["cls"])
        pending_labels.append(label)
        meta = json.loads(sample["json"])
        taxonomy.setdefault(label, {**meta.get("taxonomy", {}), "species": meta.get("class_name")})
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return torch.cat(top5), torch.tensor(labels), taxonomy


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
    recall = {c: correct[labels == c].float().mean().item() for c in classes}
    result = {
        "samples": len(labels),
        "classes": len(classes),
        "acc1": correct.float().mean().item(),
        "acc5": (top5 == labels[:, None]).any(dim=1).float().mean().item(),
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
    """Accuracy over the classes in the top, middle and bottom third by training-split count."""
    ordered = sorted(recall, key=lambda c: (-train_counts[c], c))
    third = max(1, len(ordered) // 3)
    groups = {"head": ordered[:third], "medium": ordered[third:len(ordered) - third], "tail": ordered[len(ordered) - third:]}
    out = {}
    for name, members in groups.items():
        mask = torch.isin(labels, torch.tensor(members)) if members else torch.zeros_like(labels, dtype=torch.bool)
        out[name] = {"classes": len(members), "acc1": correct[mask].float().mean().item() if mask.any() else None,
                     "train_images_min": min((train_counts[c] for c in members), default=None)}
    return out


def build_facts(data: str) -> tuple[list[int] | None, list[int]]:
    """From the build's manifest: per-class training counts, and the held-out classes."""
    fs, out = filesystem(data, "--data")
    with fs.open(posixpath.join(out, "manifest.json"), "rb") as f:
        manifest = json.load(f)
    counts = manifest.get("splits", {}).get("train", {}).get("class_counts")
    return counts, (manifest.get("holdout") or {}).get("classes", [])


def chance(labels: torch.Tensor, num_classes: int) -> dict:
    counts = Counter(labels.tolist())
    return {"acc1": 1 / num_classes, "acc5": min(1.0, 5 / num_classes), "most_frequent_class": max(counts.values()) / len(labels)}
