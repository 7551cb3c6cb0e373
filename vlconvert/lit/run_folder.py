"""A LiT run folder: what it was trained on, and whether a new command may resume in it.

A run folder resumes only the run it holds: the same build (the sha256 of its
manifest.json, so a rebuilt or deduplicated build is other data), split,
model, weights, captions, schedule, seed and number of processes.  Anything
else is refused in one line, unless ``--overwrite``, which removes only the
files a run writes.  Torch-free: the command checks the folder before torch
loads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import posixpath
import shutil
from dataclasses import asdict
from pathlib import Path

from vlconvert.errors import VLConvertError
from vlconvert.format import MANIFEST, MAX_MANIFEST_BYTES, SIZES, read_sizes
from vlconvert.lit.options import LitOptions
from vlconvert.readback.build_folder import build_manifest, require_split
from vlconvert.storage import read_bounded
from vlconvert.version import __version__

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# What a run writes (besides RUN/<model>.json); --overwrite removes these and nothing else.
RUN_ENTRIES = ("run.json", "log.jsonl", "checkpoints", "image_features")

# (identity field, how the command spells it) in the order a refusal names them.
_FIELDS = (
    ("data_manifest_sha256", "BUILD (its manifest.json)"), ("split", "--split"), ("model", "--model"),
    ("image_weights", "--image-weights"), ("text_weights", "--text-weights"), ("caption_member", "--caption-member"),
    ("json_text_key", "--json-text-key"), ("json_text_key_probs", "--json-text-key-probs"), ("epochs", "--epochs"),
    ("batch_size", "--batch-size"), ("lr", "--lr"), ("warmup", "--warmup"), ("wd", "--wd"), ("seed", "--seed"),
    ("unlocked_groups", "--unlocked-groups"), ("grad_clip", "grad_clip"), ("world_size", "the number of processes"),
)
# Options a run.json of vlconvert 0.3 recorded (without an identity) that the identity holds too.
_RECORDED_BY_0_3 = ("split", "image_weights", "text_weights", "caption_member", "json_text_key", "epochs", "batch_size",
                    "lr", "warmup", "wd", "seed", "unlocked_groups", "grad_clip")


def model_name(options: LitOptions) -> str:
    """The name open_clip registers the model under (a --model-config file's stem), without loading open_clip."""
    return Path(options.model_config).stem if options.model_config else str(options.model)


def read_build(data: str, split: str) -> tuple[str, int]:
    """(sha256 of BUILD's manifest.json, samples in ``split``); a missing build or split is a one-line error."""
    fs, path, manifest = build_manifest(data)
    require_split(manifest, split, data)
    try:
        raw = read_bounded(fs, posixpath.join(path, MANIFEST), MAX_MANIFEST_BYTES)  # as read_manifest read it, for its hash
        samples = sum(read_sizes(fs, posixpath.join(path, split)).values())
    except (OSError, ValueError):
        raise VLConvertError(f"{data}: no readable {split}/{SIZES}; BUILD is the --out folder of `vlconvert build`") from None
    return hashlib.sha256(raw).hexdigest(), samples


def identity(options: LitOptions, world_size: int, manifest_sha256: str) -> dict:
    """What makes a run the run it is: a resumed run must match it field for field."""
    chosen = asdict(options)
    probs = chosen["json_text_key_probs"]
    return {"data_manifest_sha256": manifest_sha256, "split": options.split, "model": model_name(options),
            **{key: chosen[key] for key in _RECORDED_BY_0_3 if key != "split"},
            "json_text_key_probs": list(probs) if probs is not None else None, "world_size": world_size}


def check(options: LitOptions, world_size: int) -> str:
    """Everything about BUILD and RUN that can be checked before torch loads: "new", "resume" or "overwrite" (start
    again in a run folder that holds a run); a VLConvertError for a folder that holds something else."""
    return _verdict(options, world_size, *read_build(options.data, options.split))


def _verdict(options: LitOptions, world_size: int, sha256: str, samples: int) -> str:
    if not options.out:
        raise VLConvertError("--run-dir: give the run a folder")
    if samples // (options.batch_size * world_size) == 0:
        raise VLConvertError(f"--batch-size {options.batch_size}: the {samples} samples of {options.split} make no full batch "
                             f"of {options.batch_size} × {world_size} processes; lower --batch-size")
    run = Path(options.out)
    _check_writable(run)
    entries = [name for name in sorted(p.name for p in run.iterdir()) if name != LOCK_FILE] if run.is_dir() else []
    if MANIFEST in entries:
        raise VLConvertError(f"--run-dir {run}: a build folder (it holds {MANIFEST}), not a run; give the run a folder of its own")
    if entries and RUN_FILE not in entries:
        raise VLConvertError(f"--run-dir {run}: holds {entries[0]!r} but no {RUN_FILE}, so it is not a lit-train run "
                             "(--overwrite removes only a run's own files); choose a new or empty folder")
    if not entries:
        return "new"
    if options.overwrite:
        return "overwrite"
    difference = _difference(_read_run_file(run), identity(options, world_size, sha256), run, options.data)
    if difference is not None:
        raise VLConvertError(f"{difference}; give --overwrite to start it again, or choose another --run-dir")
    return "resume"


def prepare(options: LitOptions, world_size: int) -> str:
    """For rank 0, holding the run's lock: checks again, clears an overwritten run, and records a new one in run.json.
    Returns "new" or "resume"."""
    sha256, samples = read_build(options.data, options.split)
    verdict = _verdict(options, world_size, sha256, samples)
    run = Path(options.out)
    if verdict == "resume":
        return verdict
    if verdict == "overwrite":
        _clear(run, options)
    wanted = identity(options, world_size, sha256)
    run.mkdir(parents=True, exist_ok=True)
    record = {"vlconvert_version": __version__, "model": wanted["model"], "data_manifest_sha256": sha256, "identity": wanted,
              "options": asdict(options)}
    partial = run / f".{RUN_FILE}.partial"
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial.replace(run / RUN_FILE)
    return "new"


def lock(run: Path):
    """Creates RUN and takes its lock for this process's life (the open file is returned: keep it); a second lit-train
    in the same folder is refused in one line.  The kernel drops the lock when the process ends, even by kill -9."""
    run.mkdir(parents=True, exist_ok=True)
    handle = open(run / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise VLConvertError(f"--run-dir {run}: another lit-train is running in this folder; wait for it, or choose "
                             "another --run-dir") from None
    return handle


def _check_writable(run: Path) -> None:
    if run.is_symlink() and not run.exists():
        raise VLConvertError(f"--run-dir {run}: a symbolic link to nothing ({os.readlink(run)})")
    if run.exists():
        if not run.is_dir():
            raise VLConvertError(f"--run-dir {run}: not a folder")
        existing = run
    else:
        existing = run.absolute().parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise VLConvertError(f"--run-dir {run}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VLConvertError(f"--run-dir {run}: {existing} is not writable")


def _read_run_file(run: Path) -> dict:
    try:
        recorded = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, or a 5000-digit number
        raise VLConvertError(f"--run-dir {run}: its {RUN_FILE} is unreadable ({type(exc).__name__}); give --overwrite to "
                             "start again") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("identity", {}), dict) \
            or not isinstance(recorded.get("options", {}), dict):
        raise VLConvertError(f"--run-dir {run}: its {RUN_FILE} is not a run record; give --overwrite to start again")
    return recorded


def _difference(recorded: dict, wanted: dict, run: Path, data: str) -> str | None:
    """The first way the recorded run differs from the one asked for, as a sentence; None when they agree."""
    if recorded.get("model") != wanted["model"]:
        return f"--run-dir {run}: holds a run of {_shown(recorded.get('model'))}, not {wanted['model']}"
    options = recorded.get("options", {})
    was = recorded.get("identity")
    if was is None:  # vlconvert 0.3 recorded the options alone: compare what it recorded, and the build's path
        was = {key: options[key] for key in _RECORDED_BY_0_3 if key in options}
        if "data" in options and options["data"] != data:
            return f"--run-dir {run}: this run trained on {_shown(options['data'])}, not {data}"
    for field, spelling in _FIELDS:
        if field in was and was[field] != wanted[field]:
            if field == "data_manifest_sha256":
                return (f"--run-dir {run}: this run trained on another build ({_shown(options.get('data'))}, manifest.json "
                        f"sha256 {str(was[field])[:12]}…; this one's is {wanted[field][:12]}…)")
            if field == "epochs":  # the learning-rate schedule depends on it
                return f"--run-dir {run}: this run was started with --epochs {_shown(was[field])}, not {wanted[field]}"
            return f"--run-dir {run}: this run was started with {spelling} {_shown(was[field])}, not {_shown(wanted[field])}"
    return None


def _shown(value) -> str:
    text = "(none)" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _clear(run: Path, options: LitOptions) -> None:
    """Removes what a run writes, and nothing else: not the --model-config file it was given, not what a link points to."""
    recorded = _read_run_file_or_none(run)
    configs = {f"{model_name(options)}.json", f"{recorded.get('model')}.json" if recorded else None}
    given = Path(options.model_config).resolve() if options.model_config else None
    for name in [*RUN_ENTRIES, *sorted(c for c in configs if c)]:
        path = run / name
        if given is not None and path.resolve() == given:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _read_run_file_or_none(run: Path) -> dict | None:
    try:
        return _read_run_file(run)
    except VLConvertError:
        return None


def world_size() -> int:
    """The number of processes torchrun started (1 without torchrun), read before torch loads."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(value)
    except ValueError:
        world = 0
    if world < 1:
        raise VLConvertError(f"WORLD_SIZE={value!r}: not a number of processes (torchrun sets it)")
    return world
