"""Reads the top-level lists of a COCO-style JSON file in one pass, in blocks decoded by msgspec.

ijson parses the 1.1 GB iNat-2021 train.json at about 30 MB/s, a token at a
time; msgspec decodes a whole block of list items at several hundred MB/s.
This reader walks the top-level object itself (keys, colons, commas), and cuts
each list into blocks of about ``BLOCK_BYTES`` at a ``}, {`` between two
items.  A cut is never trusted: the block is decoded as a JSON list of
objects, which succeeds only when the cut lies between two items of this list
(a cut inside a string leaves the string open; one inside a nested list leaves
a bracket open), so a wrong cut just moves on to the next candidate.

It reads every list the caller wants, and checks the rest of the document, in
one pass.  Whatever it is not sure of (anything that is not plain, valid JSON
of the expected shape, a value too big for one block, a key given twice) makes
it give up with :class:`NotPlain`; the caller then reads the file the careful
way (``_coco.read_list``: ijson behind the nesting guard), whose result, or
error message, is the one that counts.  So the two readers never disagree:
this one only ever answers for files both read the same.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import ijson
import msgspec

BLOCK_BYTES = 4 << 20
# A single value (or a stretch of a list with no cut between items) larger than this is not read here.
MAX_BLOCK_BYTES = 64 << 20
_READ_BYTES = 16 << 20
MAX_FALSE_CUTS = 8
_NOT_WHITESPACE = re.compile(rb"[^ \t\n\r]")
_ITEM_GAP = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")
_KEY = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\.){0,4096}"')
_decode_objects = msgspec.json.Decoder(list[dict]).decode  # every item must be an object
_decode_raw = msgspec.json.Decoder(msgspec.Raw).decode


class NotPlain(Exception):
    """This reader is not sure of the file; the careful reader decides."""


class _Stream:
    """A sequential window over a binary file: bytes are read once, forwards, and dropped once used."""

    def __init__(self, raw):
        self.raw, self.buf, self.pos, self.eof = raw, b"", 0, False

    def fill(self, needed: int) -> bool:
        """Make ``needed`` bytes past ``pos`` available if the file has them (``pos`` may move to 0)."""
        while len(self.buf) - self.pos < needed and not self.eof:
            more = self.raw.read(max(_READ_BYTES, needed))
            self.eof = not more
            self.buf = self.buf[self.pos:] + more
            self.pos = 0
        return len(self.buf) - self.pos >= needed

    def skip_whitespace(self) -> None:
        while self.fill(1):
            found = _NOT_WHITESPACE.search(self.buf, self.pos)
            if found:
                self.pos = found.start()
                return
            self.pos = len(self.buf)

    def peek(self) -> bytes:
        self.fill(1)
        return self.buf[self.pos:self.pos + 1]

    def expect(self, char: bytes) -> None:
        self.skip_whitespace()
        if self.peek() != char:
            raise NotPlain(f"expected {char!r}")
        self.pos += 1


def read_lists(raw, wanted: dict[str, Callable[[list[dict]], None]]) -> set[str]:
    """Feed the items of each wanted top-level list to its callback, in blocks of decoded objects.

    Returns the wanted keys whose values were lists; raises NotPlain when the careful reader must decide.
    """
    stream = _Stream(raw)
    stream.expect(b"{")
    keys: set[str] = set()
    lists: set[str] = set()
    stream.skip_whitespace()
    if stream.peek() == b"}":
        stream.pos += 1
    else:
        while True:
            key = _key(stream)
            if key in keys:
                raise NotPlain(f"key {key!r} given twice")
            if not key or "." in key:  # ijson's prefixes: "images.item" or "" would read as part of a list, or the file
                raise NotPlain(f"key {key!r} reads differently under ijson's prefixes")
            keys.add(key)
            stream.expect(b":")
            stream.skip_whitespace()
            if key in wanted and stream.peek() == b"[":
                _read_list(stream, wanted[key])
                lists.add(key)
            else:
                _skip_value(stream)
            stream.skip_whitespace()
            char = stream.peek()
            stream.pos += 1
            if char == b"}":
                break
            if char != b",":
                raise NotPlain("expected ',' or '}'")
    stream.skip_whitespace()
    if stream.pos < len(stream.buf):
        raise NotPlain("text after the document")
    return lists


def _key(stream: _Stream) -> str:
    stream.skip_whitespace()
    stream.fill(4 << 10)
    match = _KEY.match(stream.buf, stream.pos)
    if not match:
        raise NotPlain("expected a key")
    stream.pos = match.end()
    try:
        return msgspec.json.decode(match.group(), type=str)
    except msgspec.DecodeError as exc:
        raise NotPlain(str(exc)) from exc


def _skip_value(stream: _Stream) -> None:
    """Check one value of any kind and step over it; it must fit in ``MAX_BLOCK_BYTES``."""
    size = 1 << 16
    while True:
        stream.fill(size)
        window = stream.buf[stream.pos:stream.pos + size]
        try:
            _decode_raw(window)
            _check_as_ijson(window)
            stream.pos += len(window)
            return
        except msgspec.DecodeError as exc:
            after = _trailing_at(exc)
            if after is not None:
                _check_as_ijson(window[:after])
                stream.pos += after
                return
            if "truncated" not in str(exc) or len(window) < size or size >= MAX_BLOCK_BYTES:
                raise NotPlain(str(exc)) from exc
            size *= 4
        except RecursionError as exc:
            raise NotPlain("nested too deep") from exc


def _check_as_ijson(value: bytes) -> None:
    """A value this reader only steps over is still held to what the careful reader's parser accepts (UTF-8,
    numbers within 64 bits): msgspec's skip checks only the structure."""
    try:
        for _ in ijson.basic_parse(io.BytesIO(value), use_float=True):
            pass
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise NotPlain(str(exc)) from exc


def _read_list(stream: _Stream, feed: Callable[[list[dict]], None]) -> None:
    stream.pos += 1  # the '['
    stream.skip_whitespace()
    if stream.peek() == b"]":
        stream.pos += 1
        return
    while True:
        items, length, last = _next_block(stream)
        feed(items)
        stream.pos += length
        stream.skip_whitespace()
        stream.pos += 1  # the ',' or ']' the cut's match proved is there
        if last:
            return
        stream.skip_whitespace()


def _next_block(stream: _Stream) -> tuple[list[dict], int, bool]:
    """The next block of whole items, its length in bytes, and whether the list ends right after it.

    The cut tried first is a gap between items (``}, {``) from ``BLOCK_BYTES`` on.  When there is none,
    or it was not one, the list may end in the window: msgspec, reading the window as a list, says
    where that list closes (its "trailing characters"), so nested ``}]`` are never taken for the end.
    Text that only looks like a gap is rare; a file full of it is left to the careful reader rather
    than decoded again and again."""
    tried, failures, window = 0, 0, 2 * BLOCK_BYTES
    while failures < MAX_FALSE_CUTS and window <= MAX_BLOCK_BYTES:
        stream.fill(window)
        limit = min(stream.pos + window, len(stream.buf))
        gap = _ITEM_GAP.search(stream.buf, stream.pos + max(tried, BLOCK_BYTES), limit)
        if gap:
            length = gap.start() + 1 - stream.pos
            try:
                return _decode_objects(b"[" + stream.buf[stream.pos:stream.pos + length] + b"]"), length, False
            except (msgspec.DecodeError, RecursionError):
                tried, failures = length, failures + 1
        end = _list_end(stream.buf[stream.pos:limit])
        if end is not None:
            return _decode(stream.buf[stream.pos:stream.pos + end] + b"]"), end, True
        if gap:
            window = max(window, tried + BLOCK_BYTES)
        elif limit == len(stream.buf) and stream.eof:
            break
        else:
            window *= 2
    raise NotPlain("no cut between whole items found")


def _list_end(window: bytes) -> int | None:
    """Where in ``window`` (the inside of a list, from an item on) the list's closing bracket is; None when
    the list goes on past the window."""
    try:
        _decode_raw(b"[" + window)
    except msgspec.DecodeError as exc:
        if "truncated" in str(exc):
            return None
        after = _trailing_at(exc)
        if after is None:
            raise NotPlain(str(exc)) from exc
        return window.rindex(b"]", 0, after - 1)  # the bracket before the next token (after - 1: the "[" put in front)
    except RecursionError as exc:
        raise NotPlain("nested too deep") from exc
    return window.rindex(b"]")  # the window ends with the list


def _trailing_at(exc: msgspec.DecodeError) -> int | None:
    """Where the text after a whole value (and its whitespace) starts, from msgspec's "trailing characters (byte N)",
    N counted from 1; None for any other error."""
    trailing = re.search(r"trailing characters \(byte (\d+)\)", str(exc))
    return int(trailing.group(1)) - 1 if trailing else None


def _decode(block: bytes) -> list[dict]:
    try:
        return _decode_objects(b"[" + block)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise NotPlain(str(exc)) from exc
