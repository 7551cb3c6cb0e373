"""Local paths and fsspec URLs (s3://, gs://, file://, …) behind one call."""

from __future__ import annotations

import fsspec

from .records import VLConvertError


def filesystem(url: str, role: str):
    """``(fs, path)`` for ``url``; a missing fsspec backend is the user's to install, so say which."""
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise VLConvertError(f"{role} {url}: this URL needs an extra package: {exc}") from exc
    except ValueError as exc:
        raise VLConvertError(f"{role} {url}: not a usable path or URL: {exc}") from exc
