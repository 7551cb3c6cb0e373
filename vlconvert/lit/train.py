"""The LiT training loop: AdamW, warmup + cosine, learnable temperature, checkpoints, resume, DDP.

Run as ``vlconvert lit-train`` in one process, or under ``torchrun`` for many
(gloo on CPU, nccl on GPU).  Rank 0 writes the log, the cache and the
checkpoints; every rank reads its own shards.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import open_clip
import torch
import torch.distributed as dist
from open_clip import ClipLoss
from torch import nn

import vlconvert.lit.caption_keys as caption_keys
import vlconvert.lit.checkpoints as checkpoints
import vlconvert.lit.features as features
import vlconvert.lit.model as lit_model
import vlconvert.lit.run_folder as run_folder
from vlconvert.lit.checkpoints import epoch_checkpoints
from vlconvert.lit.data import Batches, rank_shards, shard_hashes, split_shards
from vlconvert.lit.options import PRESETS, LitOptions, with_preset

__all__ = ["PRESETS", "LitOptions", "epoch_checkpoints", "train", "with_preset"]

# Below this many trained parameters a CPU step is too small to share between threads: on 2 busy cores
# the demo's epoch takes 0.6 s with one thread and 6.5 s with torch's default (benchmarks/lit_demo.py).
_ONE_THREAD_BELOW = 20_000_000


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
    run_folder.check(options, run_folder.world_size())  # every rank refuses a folder that holds another run, before loading
    rank, world, device = _distributed()
    held = run_folder.lock(Path(options.out)) if rank == 0 else None
    try:
        return _train(options, captions, rank, world, device, say if rank == 0 else (lambda _: None), progress)
    finally:
        if held is not None:
            held.close()


def _train(options: LitOptions, captions, rank: int, world: int, device, say, progress) -> dict:
    torch.manual_seed(options.seed)
    name = lit_model.register_config(options.model, options.model_config)
    model, preprocess, tokenizer = lit_model.create(name, options.image_weights, options.text_weights, options.unlocked_groups,
                                                    warn=say)
    model.to(device)
    _choose_threads(options, model, device, say)
    urls, total = split_shards(options.data, options.split)
    steps = total // (options.batch_size * world)  # at least 1: run_folder.check refused a batch larger than the split
    run = Path(options.out)
    mine = rank_shards(urls, rank, world)
    optimizer = torch.optim.AdamW(_param_groups(model, options.wd), lr=options.lr)
    if rank == 0 and run_folder.prepare(options, world) == "new":  # clears an --overwrite'n run; records this one
        _keep_model_config(run, name, options)
    if world > 1:
        dist.barrier()  # the others resume only once rank 0 has cleared or recorded the folder
    first_epoch = _resume(run, options, model, optimizer, say, trim_log=rank == 0)
    finished = first_epoch > options.epochs
    cached = None if finished else _image_features(model, preprocess, mine, options, name, run, device, say)
    step_module = _Step(model, locked=options.unlocked_groups == 0)
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = ClipLoss(gather_with_grad=True, rank=rank, world_size=world)
    batches = Batches(mine, rank, options.seed, options.batch_size, captions, preprocess, tokenizer)
    log = (run / "log.jsonl").open("a", encoding="utf-8") if rank == 0 else contextlib.nullcontext()
    with log:
        last = _loop(options, captions, (rank, world, device), run, name, model, optimizer, (step_module, loss_fn, batches, cached),
                     (first_epoch, steps), log, say, progress)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"run": str(run), "model": name, "epochs": options.epochs, "trained_epochs": options.epochs - first_epoch + 1,
            "last": last, "cached_features": cached is not None}


def _loop(options, captions, where, run, name, model, optimizer, parts, span, log, say, progress) -> dict:
    """The epochs from ``span``'s first on; returns the last step's log record.  Rank 0 logs and checkpoints."""
    (rank, world, device), (step_module, loss_fn, batches, cached), (first_epoch, steps) = where, parts, span
    total_steps = steps * options.epochs
    last = {}
    for epoch in range(first_epoch, options.epochs + 1):
        model.train()
        if options.unlocked_groups == 0:
            model.visual.eval()  # a locked tower keeps its BatchNorm statistics and runs without dropout
        started, epoch_loss = time.perf_counter(), []
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
            epoch_loss.append(loss.item())
            last = {"epoch": epoch, "step": global_step + 1, "loss": round(epoch_loss[-1], 6), "lr": lr,
                    "logit_scale": round(model.logit_scale.exp().item(), 4),
                    "samples_per_second": round((step + 1) * options.batch_size * world / (time.perf_counter() - started), 2)}
            if captions.keys:  # which JSON key gave this rank's captions: the mix as drawn
                last["captions"] = {key: sources.count(key) for key in captions.keys}
            if rank == 0:
                log.write(json.dumps(last) + "\n")
                log.flush()
                if progress:
                    progress(global_step + 1, total_steps)
        if rank == 0:
            mean = round(sum(epoch_loss) / len(epoch_loss), 6) if epoch_loss else None
            checkpoints.save(run, epoch, name, model, optimizer, mean, options.keep_checkpoints)
            say(f"epoch {epoch}/{options.epochs}: loss {last.get('loss')}, {last.get('samples_per_second')} samples/s")
    return last


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


def _choose_threads(options: LitOptions, model, device, say) -> None:
    if device.type != "cpu":
        return
    if options.threads:
        torch.set_num_threads(options.threads)
        why = "--threads"
    elif "OMP_NUM_THREADS" in os.environ:
        why = "OMP_NUM_THREADS"
    else:
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if trained < _ONE_THREAD_BELOW:
            torch.set_num_threads(1)
        why = f"auto: {trained / 1e6:.1f}M parameters to train"
    say(f"torch threads: {torch.get_num_threads()} ({why})")


def _resume(run: Path, options: LitOptions, model, optimizer, say, trim_log: bool) -> int:
    """The first epoch to train: one past the latest checkpoint in RUN, if any.  The log keeps the steps of the
    epochs checkpointed, so a run killed mid-epoch and resumed logs each step once."""
    done = checkpoints.load_latest(run, model, optimizer)
    if trim_log:
        _trim_log(run / "log.jsonl", done)
    if done:
        say(f"resuming after epoch {done} from {epoch_checkpoints(run)[-1]}")
        if done >= options.epochs:
            say(f"the run already finished its {options.epochs} epochs")
    return done + 1


def _trim_log(log: Path, done: int) -> None:
    if not log.is_file():
        return
    kept = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            epoch = json.loads(line).get("epoch")
        except (ValueError, AttributeError):  # a line cut short by a kill
            continue
        if isinstance(epoch, int) and epoch <= done:
            kept.append(line + "\n")
    partial = log.with_name(f".{log.name}.partial")
    partial.write_text("".join(kept), encoding="utf-8")
    partial.replace(log)


def _keep_model_config(run: Path, name: str, options: LitOptions) -> None:
    # open_clip knows the config of every model it can build (stock, built-in or --model-config); kept beside the
    # checkpoints, zero-shot and open_clip can register the model from here.  A --model-config file already there stays.
    target = run / f"{name}.json"
    if options.model_config and target.resolve() == Path(options.model_config).resolve():
        return
    target.write_text(json.dumps(open_clip.get_model_config(name), indent=2) + "\n")
