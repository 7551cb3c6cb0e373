"""The LiT training loop: AdamW, warmup + cosine, learnable temperature, checkpoints, resume, DDP.

Run as ``vlconvert lit-train`` in one process, or under ``torchrun`` for many
(gloo on CPU, nccl on GPU).  Rank 0 writes the log, the cache and the
checkpoints; every rank reads its own shards.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import open_clip
import torch
import torch.distributed as dist
from open_clip import ClipLoss
from torch import nn

import vlconvert.lit.caption_keys as caption_keys
import vlconvert.lit.features as features
import vlconvert.lit.model as lit_model
from vlconvert.errors import VLConvertError
from vlconvert.format import CAPTION_MEMBER
from vlconvert.lit.data import Batches, rank_shards, shard_hashes, split_shards
from vlconvert.version import __version__


@dataclass(frozen=True)
class LitOptions:
    data: str
    out: str
    image_weights: str | None = None  # required (a checkpoint, openclip:TAG, timm:NAME, or "none"), unless a preset gives it
    split: str = "train"
    model: str | None = None
    model_config: str | None = None
    text_weights: str | None = None
    caption_member: str = CAPTION_MEMBER
    json_text_key: str | None = None  # as open_clip's: top-level keys of KEY.json, ';'-separated; overrides caption_member
    json_text_key_probs: tuple[float, ...] | None = None  # one weight per key (missing trailing ones 0): mix per sample
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 100
    wd: float = 0.1
    seed: int = 0
    cache_image_features: bool = False
    unlocked_groups: int = 0
    grad_clip: float = 1.0

    def check(self) -> None:
        """VLConvertError for a missing option :func:`train` cannot guess; :func:`train` checks before anything runs."""
        if self.image_weights is None:
            raise VLConvertError("--image-weights is required: a checkpoint, openclip:TAG, timm:NAME, or none (random init)")
        if not (self.model or self.model_config):
            raise VLConvertError("give --model or --model-config (or --preset demo)")
        self.captions()

    def captions(self) -> caption_keys.CaptionChoice:
        """Where each sample's caption comes from (the member, or the JSON keys and their weights); checks them."""
        return caption_keys.caption_choice(self.caption_member, self.json_text_key, self.json_text_key_probs)


PRESETS = {
    # The embedded example on a laptop CPU: a tiny random-init model, cached features.
    "demo": {"model": "lit-tiny", "image_weights": "none", "epochs": 30, "batch_size": 24, "lr": 2e-3, "warmup": 5,
             "wd": 0.05, "cache_image_features": True},
}


class _Step(nn.Module):
    """What DDP wraps: image features (computed, or from the cache) and text features."""

    def __init__(self, model, locked: bool):
        super().__init__()
        self.model, self.locked = model, locked

    def forward(self, images, texts, image_features=None):
        if image_features is None:
            with torch.no_grad() if self.locked else torch.enable_grad():
                image_features = self.model.encode_image(images, normalize=True)
        return image_features, lit_model.encode_text(self.model, texts), self.model.logit_scale.exp()


def train(options: LitOptions, say=print, progress=None) -> dict:
    """Train; ``say(line)`` gets the run's messages and ``progress(steps_done, steps_total)`` its steps (rank 0)."""
    options.check()
    captions = options.captions()
    caption_keys.check_keys(options.data, options.split, captions)  # before anything is loaded or written
    rank, world, device = _distributed()
    torch.manual_seed(options.seed)
    name = lit_model.register_config(options.model, options.model_config)
    model, preprocess, tokenizer = lit_model.create(name, options.image_weights, options.text_weights, options.unlocked_groups,
                                                    warn=say if rank == 0 else (lambda _: None))
    model.to(device)
    urls, total = split_shards(options.data, options.split)
    steps = total // (options.batch_size * world)
    if steps == 0:
        raise VLConvertError(f"{total} samples make no full batch of {options.batch_size} × {world} processes; lower --batch-size")
    run = Path(options.out)
    mine = rank_shards(urls, rank, world)
    optimizer = torch.optim.AdamW(_param_groups(model, options.wd), lr=options.lr)
    first_epoch = _resume(run, name, options, model, optimizer, say if rank == 0 else (lambda _: None))
    if rank == 0:
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        _write_run_file(run, options, name)  # only once the run is known to fit this folder
    cached = _image_features(model, preprocess, mine, options, name, run, device, say if rank == 0 else (lambda _: None))
    step_module = _Step(model, locked=options.unlocked_groups == 0)
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = ClipLoss(gather_with_grad=True, rank=rank, world_size=world)
    batches = Batches(mine, rank, options.seed, options.batch_size, captions, preprocess, tokenizer)
    total_steps = steps * options.epochs
    log = (run / "log.jsonl").open("a", encoding="utf-8") if rank == 0 else None
    last = {}
    for epoch in range(first_epoch, options.epochs + 1):
        model.train()
        if options.unlocked_groups == 0:
            model.visual.eval()  # a locked tower keeps its BatchNorm statistics and runs without dropout
        started = time.perf_counter()
        for step, (keys, images, texts, sources) in enumerate(batches.epoch(epoch, steps, with_images=cached is None)):
            global_step = (epoch - 1) * steps + step
            lr = _learning_rate(options.lr, options.warmup, total_steps, global_step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            image_features = cached[1][[cached[0][k] for k in keys]].to(device) if cached else None
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                image_out, text_out, scale = step_module(images.to(device) if images is not None else None, texts.to(device),
                                                         image_features)
                loss = loss_fn(image_out.float(), text_out.float(), scale.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], options.grad_clip)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the learnable temperature
            last = {"epoch": epoch, "step": global_step + 1, "loss": round(loss.item(), 6), "lr": lr,
                    "logit_scale": round(model.logit_scale.exp().item(), 4),
                    "samples_per_second": round((step + 1) * options.batch_size * world / (time.perf_counter() - started), 2)}
            if captions.keys:  # which JSON key gave this rank's captions: the mix as drawn
                last["captions"] = {key: sources.count(key) for key in captions.keys}
            if log:
                log.write(json.dumps(last) + "\n")
                log.flush()
                if progress:
                    progress(global_step + 1, total_steps)
        if rank == 0:
            torch.save({"epoch": epoch, "name": name, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()},
                       run / "checkpoints" / f"epoch_{epoch}.pt")
            say(f"epoch {epoch}/{options.epochs}: loss {last.get('loss')}, {last.get('samples_per_second')} samples/s")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"run": str(run), "model": name, "epochs": options.epochs, "last": last, "cached_features": cached is not None}


def with_preset(options: LitOptions, preset: str | None, given: set[str]) -> LitOptions:
    """The preset's values for every option the user did not give."""
    if not preset:
        return options
    if preset not in PRESETS:
        raise VLConvertError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    chosen = {k: v for k, v in PRESETS[preset].items() if k not in given}
    if given & {"unlocked_groups"} and "cache_image_features" not in given:
        chosen["cache_image_features"] = False  # an unlocked tower changes, so its features cannot be cached
    return replace(options, **chosen)


def _distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _image_features(model, preprocess, urls, options, name, run, device, say):
    """This rank's cached features: (key → row, features), building the shards' files that are missing or stale."""
    if not options.cache_image_features:
        return None
    if options.unlocked_groups:
        raise VLConvertError("--cache-image-features needs a fully locked image tower; drop --unlocked-groups")
    hashes = shard_hashes(options.data)
    base = {"model": name, "image_weights": lit_model.fingerprint(options.image_weights),
            "model_config": open_clip.get_model_config(name)}
    index, parts, built, seconds = {}, [], 0, 0.0
    for url in urls:
        shard = url.rsplit("/", 1)[-1]
        identity = {**base, "shard": shard, "shard_sha256": hashes.get(shard)}
        path = features.cache_file(run, options.split, shard)
        cached = features.load(path, identity)
        if cached is None:
            seconds += features.build(model, preprocess, [url], identity, path, options.batch_size, device)
            built += 1
            cached = features.load(path, identity)
        keys, values = cached
        offset = sum(len(p) for p in parts)
        index.update({key: offset + row for key, row in keys.items()})
        parts.append(values)
    if built:
        say(f"cached image features of {built} shards of {options.split} in {seconds:.1f} s: {path.parent}")
    return index, torch.cat(parts)


def _param_groups(model, wd: float) -> list[dict]:
    # As open_clip: no weight decay on gains, biases, embeddings' norms and the temperature.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": wd}]


def _learning_rate(base: float, warmup: int, total: int, step: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) * base


def epoch_checkpoints(run: Path) -> list[Path]:
    """RUN/checkpoints/epoch_N.pt, oldest first (by N, so epoch_10 follows epoch_9)."""
    return sorted((run / "checkpoints").glob("epoch_*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))


def _resume(run: Path, name: str, options: LitOptions, model, optimizer, say) -> int:
    """The first epoch to train: one past the latest checkpoint in RUN, if any."""
    checkpoints = epoch_checkpoints(run)
    if not checkpoints:
        return 1
    recorded = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    if recorded.get("model") not in (None, name):
        raise VLConvertError(f"--out {run}: holds a run of {recorded['model']}, not {name}; choose another --out")
    started_with = recorded.get("options", {}).get("epochs")
    if started_with not in (None, options.epochs):
        raise VLConvertError(f"--out {run}: this run was started with --epochs {started_with} (its learning-rate schedule "
                             "depends on it); resume with the same --epochs, or start a new run")
    try:
        state = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign checkpoint fails in many ways
        raise VLConvertError(f"{checkpoints[-1]}: cannot resume from it ({type(exc).__name__}); "
                             "remove it or choose another --out") from None
    say(f"resuming after epoch {state['epoch']} from {checkpoints[-1]}")
    if state["epoch"] >= options.epochs:
        say(f"the run already finished its {options.epochs} epochs")
    return state["epoch"] + 1


def _write_run_file(run: Path, options: LitOptions, name: str) -> None:
    # open_clip knows the config of every model it can build (stock, built-in or --model-config);
    # kept beside the checkpoints, zero-shot and open_clip can register the model from here.
    (run / f"{name}.json").write_text(json.dumps(open_clip.get_model_config(name), indent=2) + "\n")
    (run / "run.json").write_text(json.dumps({"vlconvert_version": __version__, "model": name, "options": asdict(options)},
                                             indent=2) + "\n")
