"""A run's checkpoints: which are kept, where the optimizer's state goes, and what a resumed run loads.

``RUN/checkpoints/epoch_N.pt`` holds the model alone (what open_clip and
``vlconvert zeroshot`` load).  AdamW's state, twice the text tower's size, is
only needed to resume, so it is kept for the last epoch alone, in
``optimizer_N.pt``, written before ``epoch_N.pt``: an epoch checkpoint on disk
always has its optimizer state beside it.  ``epochs.json`` records each
epoch's mean loss; ``--keep-checkpoints K`` keeps the last K epochs and the
best by that loss (0 keeps every epoch).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from vlconvert.errors import VLConvertError

EPOCH_LOSSES = "epochs.json"


def folder(run: Path) -> Path:
    return run / "checkpoints"


def epoch_checkpoints(run: Path) -> list[Path]:
    """RUN/checkpoints/epoch_N.pt, oldest first (by N, so epoch_10 follows epoch_9)."""
    return sorted((p for p in folder(run).glob("epoch_*.pt") if _NUMBERED.fullmatch(p.name)), key=_epoch_of)


_NUMBERED = re.compile(r"(?:epoch|optimizer)_(\d+)\.pt")


def _epoch_of(path: Path) -> int:
    return int(_NUMBERED.fullmatch(path.name).group(1))


def save(run: Path, epoch: int, name: str, model, optimizer, mean_loss: float | None, keep: int) -> Path:
    """Writes epoch ``epoch``'s optimizer state, its loss and its checkpoint, in that order, then prunes; returns the
    checkpoint.  Whatever a kill interrupts, the epoch on disk can resume, and no loss of a kept epoch is lost."""
    where = folder(run)
    where.mkdir(parents=True, exist_ok=True)
    _save_atomic({"epoch": epoch, "optimizer": optimizer.state_dict()}, where / f"optimizer_{epoch}.pt")
    losses = epoch_losses(run)
    losses[str(epoch)] = mean_loss
    partial = where / f".{EPOCH_LOSSES}.partial"
    partial.write_text(json.dumps(losses, indent=1) + "\n", encoding="utf-8")
    partial.replace(where / EPOCH_LOSSES)
    checkpoint = where / f"epoch_{epoch}.pt"
    _save_atomic({"epoch": epoch, "name": name, "state_dict": model.state_dict()}, checkpoint)
    _prune(run, epoch, losses, keep)
    return checkpoint


def epoch_losses(run: Path) -> dict[str, float | None]:
    """{epoch: mean training loss} of the epochs trained so far; {} when none was recorded (or the file is damaged)."""
    try:
        losses = json.loads((folder(run) / EPOCH_LOSSES).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return {k: v for k, v in losses.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} \
        if isinstance(losses, dict) else {}


def best_epoch(losses: dict[str, float | None], among: set[int]) -> int | None:
    """The epoch of ``among`` with the lowest mean loss, if any has one."""
    scored = [(loss, int(epoch)) for epoch, loss in losses.items()
              if isinstance(loss, (int, float)) and epoch.isdigit() and int(epoch) in among]
    return min(scored)[1] if scored else None


def _prune(run: Path, last: int, losses: dict, keep: int) -> None:
    checkpoints = epoch_checkpoints(run)
    epochs = {_epoch_of(path) for path in checkpoints}
    kept = {_epoch_of(path) for path in checkpoints[-keep:]} if keep else set(epochs)
    # An epoch whose loss is unknown (epochs.json damaged or edited) cannot be judged, so it is not deleted.
    kept |= {last, best_epoch(losses, epochs)} | {e for e in epochs if str(e) not in losses}
    for path in checkpoints:
        if _epoch_of(path) not in kept:
            path.unlink(missing_ok=True)
    for path in folder(run).glob("optimizer_*.pt"):
        if _NUMBERED.fullmatch(path.name) and _epoch_of(path) != last:
            path.unlink(missing_ok=True)


def load_latest(run: Path, model, optimizer) -> int:
    """Loads the latest epoch's model and optimizer state into ``model`` and ``optimizer``; returns that epoch (0: none)."""
    checkpoints = epoch_checkpoints(run)
    if not checkpoints:
        return 0
    latest = checkpoints[-1]
    state = _load(latest)
    model_state = state.get("state_dict") if isinstance(state, dict) else None
    epoch = state.get("epoch") if isinstance(state, dict) else None
    # The optimizer's own file; checkpoints of vlconvert 0.3 and earlier kept the state inside the epoch's file.
    separate = latest.with_name(f"optimizer_{_epoch_of(latest)}.pt")
    optimizer_state = _load(separate).get("optimizer") if separate.exists() else state.get("optimizer")
    if model_state is None or not isinstance(epoch, int):
        raise VLConvertError(f"{latest}: not a lit-train checkpoint; remove it or give --overwrite")
    if optimizer_state is None:
        raise VLConvertError(f"{latest}: its optimizer state ({separate.name}) is missing, so the run cannot resume exactly; "
                             "give --overwrite to start again")
    try:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
    except Exception as exc:  # noqa: BLE001 - a foreign or mismatched state fails in many ways
        raise VLConvertError(f"{latest}: cannot resume from it ({type(exc).__name__}); give --overwrite to start again") from None
    return epoch


def _load(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated file fails in many ways
        raise VLConvertError(f"{path}: cannot resume from it ({type(exc).__name__}); give --overwrite to start again") from None
    return state if isinstance(state, dict) else {}


def _save_atomic(state: dict, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    torch.save(state, partial)
    partial.replace(path)  # a checkpoint is either whole or absent, even under kill -9
