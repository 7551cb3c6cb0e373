import importlib
import os

import pytest


def require(module: str):
    """Import an optional dependency; skip without it, except in CI, where a skip would hide a failure."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)
