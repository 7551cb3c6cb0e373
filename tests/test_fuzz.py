"""Fuzzing (hypothesis): mutated bytes of valid JPEG, PNG and annotation JSON never crash a build, lose a
record or slip a broken image into the shards, and the JSON nesting guard agrees with a reference parser.

Each example is a real build over a small dataset whose files hypothesis damaged: bit flips, zeroed
runs, cuts, inserted marker bytes.  The build must either stop with a VLConvertError (a whole-file
problem, exit 2) or finish with every record in a shard or in errors.jsonl, and `validate` must then
find nothing wrong: whatever went in decodes.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
import simplejpeg
from hostile import jpeg, photo, png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inat_layout import make_inat_root, read_json
from vlconvert.adapters._json_guard import MAX_DEPTH, NestingGuard

import vlconvert
from vlconvert.readback.validate import validate

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        at = where % max(1, len(out))
        if kind == "flip":
            out[at] ^= 1 << (value % 8)
        elif kind == "zero":
            out[at:at + value % 4096] = b"\0" * len(out[at:at + value % 4096])
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([0xFF, value % 256])
        if not out:
            break
    return bytes(out)


EDITS = st.lists(st.tuples(st.sampled_from(["flip", "zero", "cut", "insert"]), st.integers(0, 1 << 20), st.integers(0, 1 << 16)),
                 min_size=1, max_size=4)


def build_and_check(root: Path, out: Path, adapter: str, **options) -> None:
    try:
        summary = vlconvert.build(adapter, str(root), str(out), **options)
    except vlconvert.VLConvertError:
        return  # a whole-file problem, reported in one line (exit 2)
    manifest = read_json(out / "manifest.json")
    errors = (out / "errors.jsonl").read_text().splitlines()
    for split in manifest["splits"].values():
        assert split["read"] == split["written"] + split["errored"] + split.get("held_out", 0)
    assert summary.errored == len(errors) == manifest["errors"]["count"]
    report = validate(str(out))
    assert report.ok, [str(p) for p in report.problems]
    for shard in out.rglob("*.tar"):  # validate decodes with Pillow, which conceals damage; libjpeg strictly must not see any
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".jpg"):
                    simplejpeg.decode_jpeg(tar.extractfile(member).read(), strict=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jpeg", "progressive", "png"])
@FUZZ
@given(edits=EDITS, resize=st.sampled_from([None, 24]))
def test_damaged_images_are_rejected_or_written_whole(kind, edits, resize):
    original = {"jpeg": lambda: jpeg(), "progressive": lambda: jpeg(progressive=True), "png": lambda: png(photo((40, 30)))}[kind]()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        for name, data in (("A/damaged", mutate(original, edits)), ("A/whole", original), ("B/whole", original)):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / f"{name}.{'png' if kind == 'png' else 'jpg'}").write_bytes(data)
        build_and_check(root, Path(folder) / "out", "imagefolder", resize=resize)


@pytest.mark.slow
@FUZZ
@given(edits=EDITS)
def test_damaged_annotation_json_is_an_error_or_a_fully_accounted_build(edits, tmp_path_factory):
    base = tmp_path_factory.mktemp("json-fuzz")
    root = make_inat_root(base / "inat", per_class={"val": 1})
    text = (root / "val.json").read_bytes()
    (root / "val.json").write_bytes(mutate(text, edits))
    build_and_check(root, base / "out", "inat2021")
    shutil.rmtree(base)


# ---------------------------------------------------------------------- the nesting guard against a reference


def reference_depth(text: str) -> int:
    """Deepest nesting of brackets outside strings, walked character by character."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


# Strings full of what could fool a depth count: brackets, quotes and backslashes (json.dumps escapes them).
TEXT = st.lists(st.sampled_from(list('ab[]{}"\\/') + ["\n", "\t"]), max_size=8).map("".join)
JSON = st.recursive(
    st.one_of(st.integers(), st.none(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=200,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON, wrap=st.integers(0, MAX_DEPTH + 5), chunk=st.integers(1, 64))
def test_the_nesting_guard_agrees_with_a_reference_depth(value, wrap, chunk):
    text = "[" * wrap + json.dumps(value) + "]" * wrap
    guard = NestingGuard(io.BytesIO(text.encode()), "x.json")
    try:
        while guard.read(chunk):
            pass
        refused = False
    except vlconvert.VLConvertError:
        refused = True
    assert refused == (reference_depth(text) > MAX_DEPTH)
