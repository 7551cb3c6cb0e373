"""Kept so ``vlconvert.validate.validate(out)`` (docs/python-api.md) works; the code is in :mod:`vlconvert.readback.validate`."""

from vlconvert.readback.validate import Problem, ValidationReport, validate

__all__ = ["Problem", "ValidationReport", "validate"]
