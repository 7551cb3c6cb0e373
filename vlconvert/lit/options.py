"""What a LiT run is asked to do, and the presets; torch-free, so the command checks its arguments before torch loads."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

import vlconvert.lit.caption_keys as caption_keys
from vlconvert.errors import VLConvertError
from vlconvert.format import CAPTION_MEMBER


@dataclass(frozen=True)
class LitOptions:
    data: str
    out: str  # the run folder (the command's --run-dir)
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
    threads: int | None = None  # torch's CPU threads; None: chosen by the model's size (vlconvert.lit.threads)
    keep_checkpoints: int = 1  # the last N epochs' checkpoints (0: all), plus the best by mean loss
    overwrite: bool = False  # start again in a run folder that holds another run

    def check(self) -> None:
        """VLConvertError for a missing option :func:`train` cannot guess; :func:`train` checks before anything runs."""
        if self.image_weights is None:
            raise VLConvertError("--image-weights is required: a checkpoint, openclip:TAG, timm:NAME, or none (random init)")
        if not (self.model or self.model_config):
            raise VLConvertError("give --model or --model-config (or --preset demo)")
        if self.cache_image_features and self.unlocked_groups:
            raise VLConvertError("--cache-image-features needs a fully locked image tower; drop --unlocked-groups")
        if self.threads is not None and self.threads < 1:
            raise VLConvertError(f"--threads {self.threads}: give 1 or more")
        if self.keep_checkpoints < 0:
            raise VLConvertError(f"--keep-checkpoints {self.keep_checkpoints}: give 0 (all) or more")
        if not self.data:
            raise VLConvertError("BUILD: give the --out folder of `vlconvert build`")
        self._check_files()
        self.captions()

    def _check_files(self) -> None:
        """A named file that is not there, found before torch and the model load rather than after."""
        if self.model_config and not Path(self.model_config).is_file():
            raise VLConvertError(f"--model-config {self.model_config}: no such file")
        for flag, spec, forms, prefixes in (
                ("--image-weights", self.image_weights, "a checkpoint file, openclip:TAG, timm:NAME or none", ("openclip:", "timm:")),
                ("--text-weights", self.text_weights, "a checkpoint file or openclip:TAG", ("openclip:",))):
            if spec and spec != "none" and not spec.startswith(prefixes) and not Path(spec).is_file():
                raise VLConvertError(f"{flag} {spec}: no such file (give {forms})")

    def captions(self) -> caption_keys.CaptionChoice:
        """Where each sample's caption comes from (the member, or the JSON keys and their weights); checks them."""
        return caption_keys.caption_choice(self.caption_member, self.json_text_key, self.json_text_key_probs)


PRESETS = {
    # The embedded example on a laptop CPU: a tiny random-init model, cached features.
    "demo": {"model": "lit-tiny", "image_weights": "none", "epochs": 30, "batch_size": 24, "lr": 2e-3, "warmup": 5,
             "wd": 0.05, "cache_image_features": True},
}


def with_preset(options: LitOptions, preset: str | None, given: set[str]) -> LitOptions:
    """The preset's values for every option the user did not give (``given``: the names of those given)."""
    if not preset:
        return options
    if preset not in PRESETS:
        raise VLConvertError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    chosen = {k: v for k, v in PRESETS[preset].items() if k not in given}
    if options.unlocked_groups and "unlocked_groups" in given and "cache_image_features" not in given:
        chosen["cache_image_features"] = False  # an unlocked tower changes, so its features cannot be cached
    return replace(options, **chosen)


BUILTIN_MODELS = ("lit-tiny",)  # configs shipped in vlconvert/lit/configs


def check_model_name(model: str | None, model_config: str | None) -> None:
    """A --model open_clip has no config for is refused from open_clip's config folder, without importing open_clip
    (which loads torch); with open_clip missing, the command's own import error says what to install."""
    if model_config or not model or model in BUILTIN_MODELS or model.startswith(("hf-hub:", "local-dir:")):
        return
    spec = importlib.util.find_spec("open_clip")
    folders = [Path(p) / "model_configs" for p in (spec.submodule_search_locations or [])] if spec else []
    known = {path.stem for folder in folders if folder.is_dir() for path in folder.glob("*.json")}
    if known and model not in known:
        close = difflib.get_close_matches(model, sorted(known), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise VLConvertError(f"--model {model!r} is not an open_clip model{hint} nor one of {', '.join(BUILTIN_MODELS)}; "
                             "or give --model-config FILE")
