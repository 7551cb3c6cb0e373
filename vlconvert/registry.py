"""Finds adapters by name: the built-in ones, then the ``vlconvert.adapters`` entry points.

A third-party package registers an adapter in its own ``pyproject.toml``::

    [project.entry-points."vlconvert.adapters"]
    my_dataset = "my_package.adapter:MyDatasetAdapter"

The class is constructed as ``MyDatasetAdapter(root, **options)``.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from vlconvert.errors import VLConvertError
from vlconvert.records import Adapter

ENTRY_POINT_GROUP = "vlconvert.adapters"

# Imported lazily, so listing adapters costs nothing until one is used.
BUILTIN_ADAPTERS: dict[str, str] = {
    "inat2021": "vlconvert.adapters.inat2021:INat2021Adapter",
    "inat2017": "vlconvert.adapters.inat_earlier:INat2017Adapter",
    "inat2018": "vlconvert.adapters.inat_earlier:INat2018Adapter",
    "inat2019": "vlconvert.adapters.inat_earlier:INat2019Adapter",
    "cub200": "vlconvert.adapters.cub200:CUB200Adapter",
    "nabirds": "vlconvert.adapters.nabirds:NABirdsAdapter",
    "fgvc_aircraft": "vlconvert.adapters.fgvc_aircraft:FGVCAircraftAdapter",
    "imagefolder": "vlconvert.adapters.imagefolder:ImageFolderAdapter",
    "table": "vlconvert.adapters.table:TableAdapter",
}


@dataclass(frozen=True)
class AdapterEntry:
    name: str
    target: str
    origin: str  # "built-in" or the distribution that registered it

    def load(self) -> type:
        module_name, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise VLConvertError(
                f"adapter {self.name!r} ({self.origin}) could not be loaded from {self.target}: {exc}"
            ) from exc


def available_adapters() -> dict[str, AdapterEntry]:
    found = {name: AdapterEntry(name, target, "built-in") for name, target in BUILTIN_ADAPTERS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue  # a plugin cannot shadow a built-in or an earlier plugin
        origin = ep.dist.name if ep.dist is not None else "entry point"
        found[ep.name] = AdapterEntry(ep.name, ep.value, origin)
    return dict(sorted(found.items()))


def describe(entry: AdapterEntry) -> str:
    try:
        return getattr(entry.load(), "description", "").strip().splitlines()[0]
    except VLConvertError as exc:
        return f"(unavailable: {exc})"
    except IndexError:
        return ""


def create_adapter(name: str, root: str, options: dict[str, Any] | None = None) -> Adapter:
    adapters = available_adapters()
    if name not in adapters:
        raise VLConvertError(
            f"unknown adapter {name!r}; available: {', '.join(adapters)} (see `vlconvert adapters`)"
        )
    cls = adapters[name].load()
    try:
        inspect.signature(cls).bind(root, **(options or {}))
    except TypeError as exc:
        raise VLConvertError(f"adapter {name!r} does not accept the options {options or {}}: {exc}") from exc
    return cls(root, **(options or {}))
