"""JSON from someone else, read with bounds: nesting depth and the length of a single value.

ijson keeps a prefix string per nesting level, so a 100 KB file of ``[[[[…``
costs gigabytes; pyarrow's JSON reader crashes the process on one; and a
single multi-gigabyte string would be held whole.  :class:`NestingGuard` sits
between the file and the parser and stops the read, with one line naming the
file and the byte, before the parser sees such bytes.  It adds about 2 s to
the 1 GB iNat-2021 train.json.
"""

from __future__ import annotations

import re

from vlconvert.errors import VLConvertError

# COCO-style files nest 4 deep (document, list, entry, a bbox or segmentation list); a real file never nears these.
MAX_DEPTH = 64
MAX_TOKEN_BYTES = 64 << 20


class NestingGuard:
    """A binary stream that refuses JSON nested deeper than ``MAX_DEPTH``, or holding a run of more
    than ``MAX_TOKEN_BYTES`` without a quote (one giant string or number list), as its bytes are read.

    Exact for valid JSON, at C speed: escapes are dropped, every byte but quotes, brackets and control
    characters is deleted, empty quote pairs go (an empty string, or two strings with no bracket
    between), the brackets outside strings are kept, and adjacent open-close pairs are cancelled level
    by level; a chunk whose depth could pass the limit is then walked bracket by bracket.  Invalid JSON
    could make this count and the parser's disagree (a stray quote, and what follows is "inside a
    string"), so a control character inside a string, which valid JSON never has, stops the read."""

    _CONTROL = bytes(range(32))
    _NOT_MARKS = bytes(range(256)).translate(None, b'"[]{}' + _CONTROL)
    _PAIR = re.compile(rb"[\[{][\]}]")

    def __init__(self, raw, path: str):
        self.raw, self.path = raw, path
        self.depth, self.read_so_far, self.quoteless = 0, 0, 0
        self.in_string = self.escaped = False

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self._check(chunk)
        self.read_so_far += len(chunk)
        return chunk

    def _check(self, chunk: bytes) -> None:
        raw_length = len(chunk)
        if self.escaped and chunk:
            chunk, self.escaped = chunk[1:], False
        if b"\\" in chunk:  # escapes go first, so every quote left delimits a string
            body = chunk.rstrip(b"\\")
            run = len(chunk) - len(body)
            self.escaped = bool(run % 2)  # the next chunk's first byte is escaped
            chunk = (body + b"\\" * (run - run % 2)).replace(b"\\\\", b"").replace(b'\\"', b"")
        # Reads are 1 MB, far below the cap, so only a run across reads can pass it; a read with no
        # unescaped quote counts whole (raw bytes: "a\\"a\\"..." is one long string).
        first_quote = chunk.find(b'"')
        run = self.quoteless + (raw_length if first_quote < 0 else first_quote)
        self.quoteless = run if first_quote < 0 else len(chunk) - 1 - chunk.rfind(b'"')
        if run > MAX_TOKEN_BYTES:
            raise VLConvertError(f"{self.path}: a single value near byte {self.read_so_far:,} is longer than "
                                 f"{MAX_TOKEN_BYTES >> 20} MB; this is not an annotation file vlconvert can read")
        marks = chunk.translate(None, self._NOT_MARKS)
        while b'""' in marks:
            marks = marks.replace(b'""', b"")
        parts = marks.split(b'"')
        inside = b"".join(parts[0::2] if self.in_string else parts[1::2])
        if inside.translate(None, b"[]{}"):
            # A raw control character (a line break) is never inside a valid string: a stray quote came first,
            # after which this count and the parser's would disagree.  Stop here rather than trust either.
            raise VLConvertError(f"{self.path}: not valid JSON (a string holds a line break or control character, "
                                 f"near byte {self.read_so_far:,})")
        brackets = b"".join(parts[1::2] if self.in_string else parts[0::2]).translate(None, self._CONTROL)
        self.in_string ^= len(parts) % 2 == 0
        rest, levels = brackets, 0
        while levels <= MAX_DEPTH and (shorter := self._PAIR.sub(b"", rest)) != rest:
            rest, levels = shorter, levels + 1
        openers = rest.count(b"[") + rest.count(b"{")
        if self.depth + openers + levels > MAX_DEPTH:  # an upper bound; walk the chunk for the exact depth
            depth = self.depth
            for mark in brackets:
                depth += 1 if mark in (0x5B, 0x7B) else -1
                if depth > MAX_DEPTH:
                    raise VLConvertError(f"{self.path}: nested more than {MAX_DEPTH} levels deep near byte "
                                         f"{self.read_so_far:,}; this is not an annotation file vlconvert can read")
        self.depth += 2 * openers - len(rest)


def check_json_file(opener, path: str, shown: str) -> None:
    """Read ``path`` (opened by ``opener``) through the guard once, for parsers that cannot read through it (pyarrow)."""
    with opener(path) as raw:
        guard = NestingGuard(raw, shown)
        while guard.read(1 << 20):
            pass
