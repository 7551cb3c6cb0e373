"""Builds the LiT model from open_clip: a locked image tower, a text tower to train.

Image weights come only from what is already on this machine: a checkpoint
file, an open_clip pretrained tag in the local cache, or a timm model in the
local cache.  ``none`` (random init) must be asked for, and is warned about.
:func:`check_weights_available` is that cache check on its own, for commands
that must fail before any model loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import resources
from pathlib import Path

import open_clip
import torch
from open_clip.transformer import text_global_pool

from vlconvert.errors import VLConvertError

BUILTIN_CONFIGS = {"lit-tiny": "lit-tiny.json"}


def register_config(model: str | None, model_config: str | None) -> str:
    """The open_clip model name to create, registering a config file (or a built-in one) first."""
    if model_config:
        path = Path(model_config)
        if not path.is_file():
            raise VLConvertError(f"--model-config {model_config}: no such file")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VLConvertError(f"--model-config {model_config}: not a JSON model config ({exc})") from None
        missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in config]
        if missing:
            raise VLConvertError(f"--model-config {model_config}: an open_clip model config needs {', '.join(missing)}")
        open_clip.add_model_config(path)
        return path.stem
    if model in BUILTIN_CONFIGS:
        with resources.as_file(resources.files("vlconvert.lit").joinpath("configs", BUILTIN_CONFIGS[model])) as path:
            open_clip.add_model_config(path)
        return model
    if model not in open_clip.list_models():
        raise VLConvertError(f"--model {model!r} is not an open_clip model (see open_clip.list_models()) "
                             f"nor one of {', '.join(BUILTIN_CONFIGS)}")
    return model


class _RandomInitNotice(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" warning: here a random start is asked for (lit-train
    loads its own weights after creating the model; zeroshot without --pretrained means random init)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


def create_model_and_transforms(name: str, pretrained: str | None = None, **kwargs):
    """open_clip's ``create_model_and_transforms``, without its warning about the random init we asked for."""
    notice = _RandomInitNotice()
    # open_clip 3.3 logs it on the root logger; a logger's own filters do not see its children's records.
    loggers = [logging.getLogger(), logging.getLogger("open_clip"), logging.getLogger("open_clip.factory")]
    for logger in loggers:
        logger.addFilter(notice)
    try:
        return open_clip.create_model_and_transforms(name, pretrained=pretrained, **kwargs)
    finally:
        for logger in loggers:
            logger.removeFilter(notice)


def create(name: str, image_weights: str, text_weights: str | None, unlocked_groups: int, warn=print):
    try:
        model, _, preprocess = create_model_and_transforms(name, pretrained=None)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise VLConvertError(f"open_clip cannot build {name} from its config: {str(exc).splitlines()[0][:200]}") from None
    tokenizer = open_clip.get_tokenizer(name)
    if image_weights == "none":
        warn("warning: --image-weights none: the image tower is randomly initialised and stays locked; "
             "use it only for tests and demos")
    else:
        _load_part(model, name, image_weights, image=True)
    if text_weights:
        _load_part(model, name, text_weights, image=False)
    # LiT's "Lu" setting: every image parameter frozen and its BatchNorm statistics fixed.
    model.lock_image_tower(unlocked_groups=unlocked_groups, freeze_bn_stats=True)
    return model, preprocess, tokenizer


def _load_part(model, name: str, spec: str, image: bool) -> None:
    what = "--image-weights" if image else "--text-weights"
    if spec.startswith("openclip:"):
        state = _cached_openclip(name, spec.split(":", 1)[1], what)
    elif spec.startswith("timm:"):
        if not image:
            raise VLConvertError(f"{what} {spec}: timm models are image towers")
        _load_timm(model, spec.split(":", 1)[1])
        return
    else:
        state = read_checkpoint(spec, what)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if image:
        part = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")} or state
        target = model.visual
    else:
        part = {k: v for k, v in state.items() if not k.startswith("visual.")}
        target = model
    try:
        missing, unexpected = target.load_state_dict(part, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise VLConvertError(f"{what} {spec}: does not fit {name}'s {'image' if image else 'text'} tower: "
                             f"{str(exc).splitlines()[-1].strip()}") from None
    if image and (missing or unexpected):
        raise VLConvertError(f"{what} {spec}: does not fit {name}'s image tower "
                             f"(missing {len(missing)} tensors, e.g. {missing[:2]}; unexpected {len(unexpected)})")
    if not image and len(missing) == len(target.state_dict()):
        raise VLConvertError(f"{what} {spec}: holds no tensor of {name}'s text tower")


def read_checkpoint(path: str, what: str) -> dict:
    """A checkpoint's state dict (open_clip's own, lit-train's, or a bare one), or a one-line error."""
    if not Path(path).is_file():
        raise VLConvertError(f"{what} {path}: no such checkpoint file (or use openclip:TAG, timm:NAME, none)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises pickle, zip and value errors for a bad file
        raise VLConvertError(f"{what} {path}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VLConvertError(f"{what} {path}: holds no state dict of tensors")
    return state


def fingerprint(spec: str) -> str:
    """What identifies weights for a cache: a file's content hash, else the spec itself."""
    path = Path(spec)
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return f"sha256:{digest.hexdigest()}"
    return spec


def _cached_openclip(name: str, tag: str, what: str) -> dict:
    """The tag's weights if this machine already has them; never a download."""
    path = check_weights_available(name, tag, f"{what} openclip:{tag}")
    from open_clip.factory import load_state_dict  # open_clip 3.3 does not export it at the top level

    return load_state_dict(path)


def check_weights_available(name: str, tag: str, what: str) -> str:
    """The local file holding open_clip's pretrained ``tag`` of model ``name``, found without any network access
    (the Hugging Face cache, open_clip's ~/.cache/clip, or the tag's own file); else a one-line VLConvertError
    that starts with ``what`` (the option as given, e.g. ``--pretrained openai``)."""
    config = open_clip.get_pretrained_cfg(name, tag)
    if not config:
        raise VLConvertError(f"{what}: open_clip has no pretrained tag {tag!r} for {name}")
    path = _cached_file(config)
    if path is None:
        raise VLConvertError(f"{what}: the weights for {name}/{tag} are not in the local cache (nothing is downloaded); "
                             "download them where there is internet (open_clip caches them), or pass a local checkpoint file")
    return path


def _cached_file(config: dict) -> str | None:
    if config.get("file"):
        return config["file"] if Path(config["file"]).is_file() else None
    hub = config.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        # The names open_clip would download, its .safetensors twin first, as it prefers that one.
        names = [filename[:-4] + ".safetensors", filename] if filename.endswith((".bin", ".pth")) else [filename]
        for candidate in (names if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
            found = try_to_load_from_cache(repo, candidate)
            if isinstance(found, str):
                return found
    url = config.get("url", "")
    if url:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        return str(local) if local.is_file() else None
    return None


def _load_timm(model, timm_name: str) -> None:
    trunk = getattr(model.visual, "trunk", None)
    if trunk is None:
        raise VLConvertError(f"--image-weights timm:{timm_name}: the model's image tower is not a timm model; "
                             "choose a model config whose vision_cfg names timm_model_name")
    import timm
    from huggingface_hub import try_to_load_from_cache

    source = timm.create_model(timm_name, pretrained=False, num_classes=0)
    hub = getattr(source, "pretrained_cfg", {}).get("hf_hub_id")
    cached = next((f for f in (try_to_load_from_cache(hub, n) for n in ("model.safetensors", "pytorch_model.bin"))
                   if isinstance(f, str)), None) if hub else None
    if cached is None:
        raise VLConvertError(f"--image-weights timm:{timm_name}: not in the local Hugging Face cache; "
                             "download it where there is internet, or pass a checkpoint file")
    timm.models.load_checkpoint(source, cached, strict=False)
    trunk.load_state_dict(source.state_dict(), strict=False)


def encode_text(model, texts: torch.Tensor) -> torch.Tensor:
    """Normalized text features, computed only over the batch's longest caption.

    Captions of 15-40 tokens padded to CLIP's 77 waste half the text tower's work.
    With causal attention and pooling at the end-of-text token, the positions past
    the longest caption change nothing, so they are cut; models that pool
    otherwise (or are not plain CLIP) go through open_clip unchanged."""
    if not isinstance(model, open_clip.CLIP) or model.text_pool_type != "argmax" or getattr(model, "attn_mask", None) is None:
        return model.encode_text(texts, normalize=True)
    length = int(texts.argmax(dim=1).max()) + 1  # through the last end-of-text token (the largest id)
    texts = texts[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(texts).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = text_global_pool(x, texts, model.text_pool_type)
    x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)
