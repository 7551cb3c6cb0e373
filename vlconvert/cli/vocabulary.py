"""One vocabulary for every command (docs/cli.md's preface), and the old spellings it replaced.

A build folder a command reads is its first argument, BUILD; ``-o/--out`` is
only ever a build folder a command writes; other outputs are named for what
they hold (``--run-dir``, ``--report``, ``--dataset-root``); a short flag means the
same option everywhere.  Old spellings keep working for one release, each with
a one-line deprecation warning on stderr.
"""

from __future__ import annotations

import functools

import click

# Short flags, one meaning each; the reference test holds every command to this table.
SHORT_FLAGS = {"-a": "--adapter", "-r": "--root", "-o": "--out", "-t": "--template", "-s": "--split", "-w": "--workers",
               "-n": "--samples", "-h": "--help"}


def build_argument(command):
    """BUILD, the first argument, with ``--data BUILD`` (the old spelling) still accepted."""
    return renamed("--data", "build", "BUILD (the first argument)", required=True, argument=True)(command)


def renamed(old: str, new_param: str, new_spelling: str, required: bool = False, argument: bool = False,
            multiple: bool = False, **option):
    """Accepts the retired option ``old`` for ``new_param`` (spelled ``new_spelling`` now), with a deprecation line.

    A ``required`` new option must be declared optional to click: it is required here, one spelling or the other.
    With ``argument``, the new spelling is a positional argument this adds; a ``multiple`` option adds the retired
    spelling's values to the new one's; ``option`` goes to click (a type, is_flag)."""
    hidden_name = f"retired_{old.lstrip('-').replace('-', '_')}"

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            retired = kwargs.pop(hidden_name)
            if not (retired is None or retired is False or retired == ()):  # a retired value of 0 is given
                click.echo(f"warning: {old} is deprecated and goes in the next release; give {new_spelling}", err=True)
                if multiple:
                    kwargs[new_param] = (*kwargs.get(new_param, ()), *retired)
                elif _given(new_param) and kwargs.get(new_param) != retired:
                    raise click.UsageError(f"{old} and {new_spelling} both given; give only {new_spelling}")
                else:
                    kwargs[new_param] = retired
            elif required and kwargs.get(new_param) is None:
                raise click.UsageError(f"missing {new_spelling}")
            return command(*args, **kwargs)

        wrapper = click.option(old, hidden_name, hidden=True, default=() if multiple else None, multiple=multiple,
                               **option)(wrapper)
        if argument:
            wrapper = click.argument(new_param, required=False, metavar=new_param.upper())(wrapper)
        return wrapper

    return decorate


def _given(param: str) -> bool:
    source = click.get_current_context().get_parameter_source(param)
    return source not in (None, click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)
