"""The fast readers of COCO-style files give exactly what the careful ones give.

``_json_lists`` (msgspec blocks) against ijson behind the nesting guard, and the
sorted join (``_sorted_join``) against Arrow's hash kernels, on generated files
and columns that include the traps each fast path must not fall into.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vlconvert.adapters import _coco, _json_lists
from vlconvert.adapters._json_tables import read_list, read_lists
from vlconvert.adapters._sorted_join import sorted_lookups

from vlconvert.errors import VLConvertError

# Strings that look like cuts between items, or like the end of a list, to a reader that does not parse.
_TRAPS = ["}, {", "},{", "}]", '"}, {"', "\\", '\\"}, {\\"', "]}", "\u00e9}, {\u4e2d"]
_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(_TRAPS), st.text(max_size=8),
)
_items = st.fixed_dictionaries(
    {"id": st.integers(0, 50), "file_name": st.sampled_from(["a.jpg", "b}, {c.jpg", "d.jpg"])},
    optional={"note": st.sampled_from(_TRAPS), "nested": st.lists(st.fixed_dictionaries({"x": _values}), max_size=2),
              "score": st.floats(0, 1, width=32)},
)
_documents = st.fixed_dictionaries(
    {"images": st.lists(_items, max_size=60), "annotations": st.lists(_items, max_size=5)},
    optional={"info": st.dictionaries(st.sampled_from(["a", "}, {", "]"]), _values), "licenses": st.lists(_values, max_size=3)},
)
_layouts = st.sampled_from([{}, {"indent": 2}, {"separators": (",", ":")}, {"ensure_ascii": False}])


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_documents, layout=_layouts, block=st.sampled_from([1, 40, 300, 1 << 20]))
def test_one_pass_reads_the_lists_as_the_careful_reader_does(tmp_path, monkeypatch, document, layout, block):
    monkeypatch.setattr(_json_lists, "BLOCK_BYTES", block)  # many cuts in small files
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document, **layout), encoding="utf-8")
    sections = {"images": {"chunk_rows": 7}, "annotations": {"chunk_rows": 7}}
    try:
        careful = {name: read_list(None, str(path), name, open_file=_open, **options) for name, options in sections.items()}
    except VLConvertError as exc:  # the generated document mixes kinds in one field: the same error, word for word
        with pytest.raises(VLConvertError) as raised:
            read_lists(None, str(path), sections, open_file=_open)
        assert str(raised.value) == str(exc)
        return
    fast = read_lists(None, str(path), sections, open_file=_open)
    for name in sections:
        assert fast[name].to_pylist() == careful[name].to_pylist()
        assert fast[name].schema == careful[name].schema


def _open(path):
    return open(path, "rb")


def _fast(text: str) -> dict:
    got: dict[str, list] = {"images": []}
    lists = _json_lists.read_lists(io.BytesIO(text.encode()), {"images": got["images"].extend})
    return {"lists": lists, **got}


@pytest.mark.parametrize("text", [
    '{"images": [1, 2]}',  # not objects
    '{"images": [{"a": 1}] x',  # text after the list
    '{"images": [{"a": 1}], "images": []}',  # a key twice: ijson would yield both lists' items
    '[{"a": 1}]',  # not an object at the top
    '{"images": [{"a": 1},]}',  # a trailing comma
    '{"images": [{"a": 1}\f, {"b": 2}]}',  # whitespace JSON does not allow, between items
    '{"images": [{"a": 1}, {"b": NaN}]}',
    '{"images": [{"a": 1}]} {}',
    '{"images": [{"a": 1}], "info": [[[' + "[" * 5000 + "]" * 5003 + "}",  # deeper than msgspec recurses
])
def test_the_one_pass_reader_leaves_what_it_is_unsure_of_to_the_careful_one(text):
    with pytest.raises(_json_lists.NotPlain):
        _fast(text)


def test_a_file_the_one_pass_reader_gives_up_on_is_still_read(tmp_path, monkeypatch):
    monkeypatch.setattr(_json_lists, "BLOCK_BYTES", 10)
    monkeypatch.setattr(_json_lists, "MAX_FALSE_CUTS", 1)
    images = [{"id": i, "note": "}, {" * 3} for i in range(40)]  # a false cut in every item
    path = tmp_path / "doc.json"
    path.write_text(json.dumps({"images": images, "annotations": []}))
    with pytest.raises(_json_lists.NotPlain):
        _json_lists.read_lists(open(path, "rb"), {"images": lambda items: None})
    tables = read_lists(None, str(path), {"images": {}, "annotations": {}}, open_file=_open)
    assert tables["images"].to_pylist() == images and tables["annotations"].num_rows == 0


def test_errors_are_the_careful_readers_own(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"images": [{"id": 1, "w": 2}, {"id": 2, "w": "x"}], "annotations": []}')
    with pytest.raises(VLConvertError, match=r"images\[1\]\.w is 'x', but earlier entries hold number values"):
        read_lists(None, str(path), {"images": {}, "annotations": {}}, open_file=_open)


_ids = st.lists(st.integers(-3, 40), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ids=_ids, ann_ids=_ids, cats=st.lists(st.integers(0, 3), max_size=80))
def test_the_sorted_join_answers_as_the_hash_kernels_do(ids, ann_ids, cats):
    ann_ids = ann_ids[:len(cats)]
    cats = cats[:len(ann_ids)]
    columns = (pa.chunked_array([pa.array(ids[:5], pa.int64()), pa.array(ids[5:], pa.int64())]),
               pa.array(ann_ids, pa.int32()), pa.array(cats, pa.int64()))
    fast = sorted_lookups(*columns)
    careful = _coco._hashed_lookups(*columns)
    for got, expected in zip(fast, careful):
        assert pa.chunked_array([got]).to_pylist() == pa.chunked_array([expected]).to_pylist()


def test_ids_with_gaps_or_of_other_kinds_take_the_hash_kernels():
    assert sorted_lookups(pa.array([1, None]), pa.array([1]), pa.array([0])) is None
    assert sorted_lookups(pa.array(["a"]), pa.array(["a"]), pa.array([0])) is None
    assert sorted_lookups(pa.array([2**63], pa.uint64()), pa.array([1]), pa.array([0])) is None


@pytest.mark.parametrize("layout", [{}, {"indent": 2}, {"separators": (",", ":")}])
def test_the_one_pass_reader_cuts_past_look_alike_text(monkeypatch, layout):
    monkeypatch.setattr(_json_lists, "BLOCK_BYTES", 1000)
    images = [{"id": i, "s": "x}, {y]" if i % 300 == 0 else "", "n": [{"q": "}]"}, {"r": 2}] if i % 400 == 0 else None}
              for i in range(5000)]
    document = {"info": {"a": [1, {"b": "}, {"}]}, "images": images, "annotations": [], "categories": [{"id": 1, "name": "a]}"}]}
    got: dict[str, list] = {"images": [], "annotations": [], "categories": []}
    text = json.dumps(document, **layout).encode()
    lists = _json_lists.read_lists(io.BytesIO(text), {name: got[name].extend for name in got})
    assert lists == set(got)
    assert got == {name: document[name] for name in got}


@pytest.mark.parametrize("text", [
    '{"images": [{"id": 1}, {"id": 2}',  # cut off mid-list, as by a kill during a copy
    '{"images": [{"id": 1, "deep": ' + "[" * 5000 + "]" * 5000 + "}]}",  # deeper than msgspec recurses, inside an item
    '\ufeff{"images": [{"id": 1}]}',  # a byte-order mark
])
def test_damaged_files_go_to_the_careful_reader(tmp_path, text):
    with pytest.raises(_json_lists.NotPlain):
        _fast(text)
    path = tmp_path / "doc.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VLConvertError) as fast:
        read_lists(None, str(path), {"images": {}}, open_file=_open)
    with pytest.raises(VLConvertError) as careful:
        read_list(None, str(path), "images", open_file=_open)
    assert str(fast.value) == str(careful.value)


def test_a_value_over_the_block_limit_goes_to_the_careful_reader(monkeypatch):
    monkeypatch.setattr(_json_lists, "MAX_BLOCK_BYTES", 1 << 12)
    monkeypatch.setattr(_json_lists, "BLOCK_BYTES", 1 << 10)
    with pytest.raises(_json_lists.NotPlain):
        _fast('{"images": [{"id": 1, "note": "' + "x" * 10_000 + '"}]}')
    with pytest.raises(_json_lists.NotPlain):
        _fast('{"info": "' + "x" * 300_000 + '", "images": []}')


# Found by a red team: each case once made the one-pass reader and the careful one disagree.
_DEEP = "[" * 70 + "]" * 70
_RED_TEAM = [
    '{"images": [{"id": 1}], "images.item": {"id": 2}, "annotations": []}',  # ijson reads a dotted key as the list's
    '{"images": [{"id": 1}], "images.item": [1, 2], "annotations": []}',
    '{"images": [{"a": 1}], "annotations": [], "annotations.item": {"b": 2}}',
    '{"images": [{"id": 1}], "info": ' + _DEEP + ', "annotations": []}',  # past the guard's 64 levels, outside a list
    '{"images": [{"id": 1, "d": ' + _DEEP + '}], "annotations": []}',  # and inside an item
    '{"info": 1e400, "images": [{"a": 1}], "annotations": []}',  # skipped values yajl refuses
    '{"info": {"big": 9223372036854775808}, "images": [{"a": 1}], "annotations": []}',
    '{"": 1, "images": [{"a": 1}], "annotations": []}',  # the empty key shares the document's prefix
    '{"": [], "images": [{"a": 1}], "annotations": []}',
]


@pytest.mark.parametrize("text", _RED_TEAM)
def test_the_red_teams_files_read_as_the_careful_reader_reads_them(tmp_path, text):
    path = tmp_path / "doc.json"
    path.write_text(text, encoding="utf-8")
    _same_as_careful(path)


@pytest.mark.parametrize("raw", [
    b'{"info": "\xff", "images": [{"a": 1}], "annotations": []}',  # invalid UTF-8 in a skipped value
    b'{"info": {"\xff": 1}, "images": [{"a": 1}], "annotations": []}',
    b'{"info": "\xc0\xaf", "images": [{"a": 1}], "annotations": []}',  # overlong UTF-8
    b'{"images": [{"s": "\xed\xa0\x80"}], "annotations": []}',  # an encoded surrogate, inside an item
])
def test_invalid_utf8_anywhere_is_a_one_line_error_on_both_paths(tmp_path, raw):
    path = tmp_path / "doc.json"
    path.write_bytes(raw)
    assert "not valid JSON" in _same_as_careful(path)


def _same_as_careful(path) -> str:
    """Both readers give the same lists, or the same error (whose message is returned)."""
    sections = {"images": {}, "annotations": {}}
    try:
        careful = {name: read_list(None, str(path), name, open_file=_open).to_pylist() for name in sections}
    except VLConvertError as exc:
        with pytest.raises(VLConvertError) as raised:
            read_lists(None, str(path), sections, open_file=_open)
        assert str(raised.value) == str(exc)
        return str(exc)
    assert {name: table.to_pylist() for name, table in read_lists(None, str(path), sections, open_file=_open).items()} == careful
    return ""


def test_items_with_nested_lists_of_objects_stay_on_the_one_pass_reader(monkeypatch):
    monkeypatch.setattr(_json_lists, "BLOCK_BYTES", 1 << 10)
    images = [{"id": i, "attrs": [{"k": i}, {"k": -i}]} for i in range(3000)]  # a "}]" and a "}, {" in every item
    got: dict[str, list] = {"images": [], "annotations": []}
    text = json.dumps({"images": images, "annotations": [{"id": 1, "attrs": [{"k": 1}]}]}).encode()
    assert _json_lists.read_lists(io.BytesIO(text), {name: got[name].extend for name in got}) == set(got)
    assert got["images"] == images and got["annotations"] == [{"id": 1, "attrs": [{"k": 1}]}]
