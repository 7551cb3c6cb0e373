"""The package's shape: layers import downwards only, modules stay readable, shard bytes stay put.

The layers (docs/architecture.md): the base modules every stage shares, then
captions, the build pipeline, the read-back tools, the LiT recipe and the command
line, each importing only from its own layer or those below it.  Adapters see only
the data model, the errors and storage, so a third party's adapter needs nothing else.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import PIL
import pytest

import vlconvert

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "vlconvert"
EXAMPLE = REPO / "examples" / "inat2021_mini"

BASE = {"errors", "records", "storage", "terminal", "version", "shuffle", "format", "option_kinds", "options", "config", "registry"}
LAYERS = {"base": 0, "captions": 1, "pipeline": 2, "readback": 3, "lit": 4, "cli": 5, "top": 6}
ADAPTERS_MAY_IMPORT = {"vlconvert.records", "vlconvert.errors", "vlconvert.storage"}
MAX_LINES = 300
# The LiT recipe reads builds as any reader would, through the format and the read-back tools, not the writer's code.
NOT_BELOW = {"lit": {"pipeline"}}


def layer_of(module: str) -> str:
    """``vlconvert.pipeline.build`` → pipeline; the package itself, ``__main__`` and the API shims are the top."""
    parts = module.split(".")
    if parts[0] != "vlconvert" or len(parts) == 1 or parts[1] in {"__init__", "__main__", "validate"}:
        return "top"
    if parts[1] in BASE:
        return "base"
    assert parts[1] in LAYERS, f"{module}: not in any layer; add it to tests/test_layout.py and docs/architecture.md"
    return parts[1]


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def imported(path: Path) -> list[tuple[int, str]]:
    """Every vlconvert module this file imports, at any depth (imports inside functions count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            # Only adapters import each other relatively (they install as vlconvert.adapters).
            assert path.parent.name == "adapters", f"{path}:{node.lineno}: relative import; the package imports absolutely"
            found.append((node.lineno, "vlconvert.adapters" + (f".{node.module}" if node.module else "")))
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if (PACKAGE / Path(*node.module.split(".")[1:]) / f"{alias.name}.py").exists()]
    return [(line, name) for line, name in found if name == "vlconvert" or name.startswith("vlconvert.")]


def package_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "configs" not in p.parts)


def test_no_module_imports_from_a_higher_layer():
    wrong = []
    for path in package_files():
        here = module_name(path, PACKAGE, "vlconvert")
        for line, name in imported(path):
            if name.startswith("vlconvert.adapters"):
                target = "base"  # adapters are reached through the registry only
                if layer_of(here) != "base":
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports {name}; adapters are reached through vlconvert.registry")
                continue
            target = "top" if name == "vlconvert" else layer_of(name)
            if LAYERS[target] > LAYERS[layer_of(here)] or target in NOT_BELOW.get(layer_of(here), ()):
                wrong.append(f"{path.relative_to(REPO)}:{line} ({layer_of(here)}) imports {name} ({target})")
    assert not wrong, "\n".join(wrong)


def test_adapters_import_only_the_data_model_errors_and_storage():
    wrong = []
    for path in sorted((REPO / "adapters").glob("*.py")):
        for line, name in imported(path):
            if not name.startswith("vlconvert.adapters") and name not in ADAPTERS_MAY_IMPORT:
                wrong.append(f"adapters/{path.name}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_layering_test_catches_an_upward_import(tmp_path):
    upward = tmp_path / "bad.py"
    upward.write_text("from vlconvert.cli.root import main\nimport vlconvert.readback.validate\n")
    names = [name for _, name in imported(upward)]
    assert "vlconvert.cli.root" in names and "vlconvert.readback.validate" in names
    assert LAYERS[layer_of("vlconvert.cli.root")] > LAYERS[layer_of("vlconvert.pipeline.build")]
    assert layer_of("vlconvert.format") == "base" and layer_of("vlconvert.captions.render") == "captions"


def test_no_private_name_is_imported_from_another_module():
    wrong = []
    for path in [*package_files(), *sorted((REPO / "adapters").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vlconvert"):
                wrong += [f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not wrong, "\n".join(wrong)


def test_every_module_fits_in_one_sitting():
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in [*package_files(), *sorted((REPO / "adapters").glob("*.py"))]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)


def test_no_module_is_shadowed_by_a_name_of_its_package():
    """``vlconvert.build`` is the function; no module of that name hides behind it (or any other such pair)."""
    import importlib
    import pkgutil

    for package in ("vlconvert", "vlconvert.captions", "vlconvert.pipeline", "vlconvert.readback", "vlconvert.cli", "vlconvert.lit"):
        mod = importlib.import_module(package)
        for info in pkgutil.iter_modules(mod.__path__):
            attribute = getattr(mod, info.name, None)
            assert attribute is None or getattr(attribute, "__name__", "") == f"{package}.{info.name}", (
                f"{package}.{info.name} is a module, but {package}.{info.name} is also {attribute!r}")


# The embedded example's shards: the flat layout's bytes before the redesign (0.2.0, commit ab6fdfb), with each
# sample's JSON carrying every caption as caption_<template> since issue 16 (images and other members unchanged).
PASSTHROUGH_SHARDS = {
    "train/train-000000.tar": "904b7cc213f044359b171a02ab1736a8b04dd956ab26fe32e34d6021ae76690b",
    "val/val-000000.tar": "21e620a2f82543971389f296fdfa52de2b562d699981f6d056d4eeebb4d579af",
}
# Re-encoded JPEGs are libjpeg-turbo's output, which a Pillow release may change: pinned for the Pillow they were made with.
REENCODED_PILLOW = "13.0.0"
REENCODED_SHARDS = {
    "train/train-000000.tar": "d0124717693f54833a69fe34afaac1017252a3c8451a93fb961fc83954b2a226",
    "train/train-000001.tar": "f32e9cd2589144f56b3eed41e630bd0f15e7897f34f0f5f8dd097781bed75596",
    "train/train-000002.tar": "d31ca7c931d37cfce17b41f93573bcc78e36bfc1b1b71185a9a4edef72d47576",
    "val/val-000000.tar": "9b9d90bd8352e3ac2a08805204f178c3846a71d7790f51fad3da42da3aa846bd",
}


def shard_digests(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*/*.tar"))}


def test_the_embedded_example_builds_the_same_bytes_as_before_the_redesign(tmp_path):
    vlconvert.build("inat2021", str(EXAMPLE), str(tmp_path / "out"))
    assert shard_digests(tmp_path / "out") == PASSTHROUGH_SHARDS


def test_re_encoded_shards_are_the_same_bytes_as_before_the_redesign(tmp_path):
    if PIL.__version__ != REENCODED_PILLOW:
        pytest.skip(f"pinned for Pillow {REENCODED_PILLOW}; this is {PIL.__version__}, whose libjpeg-turbo may encode differently")
    vlconvert.build("inat2021", str(EXAMPLE), str(tmp_path / "out"), resize=96, resize_mode="center_crop",
                    template_mix={"scientific": 1, "common": 2}, templates=["taxonomic"], shard_size=50, seed=7,
                    image_codec="pillow")  # the codec path of those bytes (OpenCV's, when installed, is the default now)
    assert shard_digests(tmp_path / "out") == REENCODED_SHARDS
