"""Text from a dataset, made safe to print on a terminal.

Class names, captions, file names and error reasons come from files someone
else wrote.  An ANSI or OSC escape sequence in one of them would reach the
terminal raw: recolour or hide text, move the cursor over earlier lines, set
the window title, or (on some terminals) write to the clipboard.  Every line
vlconvert prints from such data goes through :func:`printable`, which spells
control characters (C0, DEL, C1) and the Unicode bidirectional overrides as
escapes instead.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` as one line a terminal shows as it is: control characters (newlines too) escaped."""
    return _UNSAFE.sub(_escape, str(text))


def printable_lines(text: str) -> str:
    """Like :func:`printable`, keeping the line breaks of a multi-line block."""
    return "\n".join(printable(line) for line in str(text).split("\n"))
