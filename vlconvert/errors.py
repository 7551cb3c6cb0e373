"""The exceptions of vlconvert, one per exit code of the command (docs/errors.md)."""

from __future__ import annotations


class VLConvertError(Exception):
    """A problem with the user's input or options: reported without a traceback."""


class BuildFailed(RuntimeError):
    """A failure while running that is not the input's fault (a worker died): one line, exit 1, rerun to resume."""


class TooManyRejected(Exception):
    """More records were rejected than ``--strict`` / ``--max-error-rate`` allow (exit 3).

    Raised before any image is read when the adapter's rejections alone pass the limit
    (``summary`` is None), otherwise after a complete build (``summary`` describes it)."""

    def __init__(self, message: str, summary=None):
        super().__init__(message)
        self.summary = summary
