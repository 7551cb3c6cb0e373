"""The ``vlconvert`` command: one module per command group over the Python API."""

from vlconvert.cli.root import cli, main, run_command

__all__ = ["cli", "main", "run_command"]
