"""Property-based tests (hypothesis): sample keys, captions of arbitrary Unicode names, build accounting.

* keys: ``imagefolder.path_key`` turns any relative path into a valid, stable,
  collision-free key; ``is_valid_key`` accepts exactly the documented alphabet.
* captions: every built-in template renders any class with a name (names full of
  newlines, quotes, braces, Jinja-looking text, RTL text, combining marks) into
  one whitespace-collapsed line, shows the name literally, and never evaluates it.
* accounting: a real build over a small iNat-layout dataset with random broken
  images and annotations puts every image in exactly one place, and the
  manifest, ``sizes.json``, ``errors.jsonl`` and the shards agree.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from inat_layout import example_categories, make_inat_root, read_json, write_json
from PIL import Image
from vlconvert.adapters._coco import _key_text
from vlconvert.adapters.imagefolder import path_key

import vlconvert
from vlconvert.captions.render import CaptionError, CaptionRenderer, builtin_template_names, load_template
from vlconvert.records import KEY_PATTERN, ClassInfo, Record, is_valid_key

KEY_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Surrogate-free text: what a str holding a real file name or JSON field can be.
UNICODE = st.characters(codec="utf-8")


def collapse(text: str) -> str:
    return " ".join(text.split())


def assert_key(key: str) -> None:
    assert re.fullmatch(KEY_PATTERN, key), key
    assert key and set(key) <= KEY_ALPHABET, key  # checked char by char too: `$` in KEY_PATTERN also matches before a final "\n"
    assert is_valid_key(key), key


# --------------------------------------------------------------------------- keys

# Path segments as a file system hands them over: no "/" or NUL inside, not "." or "..".
SEGMENT = st.one_of(
    st.text(UNICODE, min_size=1, max_size=30),
    st.sampled_from(["...", ".hidden", "a.b.c", " ", "  lead", "trail  ", "ñ", "n\u0303", "🦜🐝", "שלום", "a\tb", "a\nb",
                     "x.jpg", "x.JPG", "x.tar.gz", "_", "-", "__", "ÅÄÖ", "ﬁ", "Ⅻ", "\u200b", "\ufeff", "%2F", "\\"]),
).map(lambda s: s.replace("/", "_").replace("\x00", "_")).filter(lambda s: s not in (".", ".."))
RELATIVE_PATH = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
# Paths whose readable stems collide after sanitising, so only the hash can keep their keys apart.
LOOKALIKE_PATH = st.builds(
    "{}/{}{}".format,
    st.sampled_from(["a", "a b", "a.b", "A", "🦜", "train/x", "train/x "]),
    st.sampled_from(["img 1", "img.1", "img_1", "img__1", "img🦜1", "img\t1", "_img_1_", "", "🦜", "."]),
    st.sampled_from([".jpg", ".JPG", ".jpeg", ".png", "", ".tar.gz", ". jpg"]),
)


@given(RELATIVE_PATH)
@example("train/Pica hudsonia/IMG_0001.JPG")
@example("...")
@example("🦜/🦜.jpg")
@example("a.b.c/.jpg")
@example("x/" + "é" * 300 + ".png")
def test_path_key_is_a_valid_key_and_stable(relative):
    key = path_key(relative)
    assert_key(key)
    assert path_key(relative) == key  # a pure function of the path
    assert path_key(str(relative)) == key  # ... not of the object's identity
    Record(key=key, image=b"", label=0, split="train")  # the record accepts it


@given(st.lists(st.one_of(RELATIVE_PATH, LOOKALIKE_PATH), min_size=2, max_size=40, unique=True))
@example(["a/b.jpg", "a_b.jpg", "a b.jpg", "a.b.jpg", "a/b.png", "a/b.jpeg", "A/b.jpg", "a/b.jpg "])
@example(["🦜.jpg", "🐝.jpg", "_.jpg", "-.jpg", ".jpg"])  # stems that all sanitise to the same text
@example(["n\u0303.jpg", "ñ.jpg"])  # the same on screen, different code points
def test_path_keys_of_distinct_paths_are_distinct(paths):
    keys = [path_key(p) for p in paths]
    assert len(set(keys)) == len(keys)


@given(st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b not in (b".", b"..")), min_size=1, max_size=4))
def test_path_key_of_undecodable_file_names(parts):
    """A Linux file name need not be UTF-8; Python hands it over with surrogate escapes."""
    relative = "/".join(os.fsdecode(p.replace(b"/", b"_").replace(b"\x00", b"_")) for p in parts)
    assert_key(path_key(relative))


@given(st.lists(st.binary(min_size=1, max_size=12), min_size=2, max_size=20, unique=True))
def test_path_keys_of_distinct_undecodable_names_are_distinct(names):
    names = [n.replace(b"/", b"_").replace(b"\x00", b"_") for n in names]
    decoded = list(dict.fromkeys(os.fsdecode(n) for n in names))
    keys = [path_key(d) for d in decoded]
    assert len(set(keys)) == len(keys)


def test_path_key_keeps_a_readable_stem():
    assert re.fullmatch(r"IMG_0001_[0-9a-f]{16}", path_key("train/Pica hudsonia/IMG_0001.JPG"))
    assert re.fullmatch(r"[0-9a-f]{16}", path_key("🦜/🦜.jpg"))  # nothing readable left: the digest alone


@given(st.text(st.characters(codec="utf-8"), max_size=12))
@example("")
@example("abc")
@example("a.jpg")
@example("abc\n")
def test_is_valid_key_accepts_exactly_letters_digits_underscore_dash(text):
    def documented(t: str) -> bool:
        return bool(t) and all(c in KEY_ALPHABET for c in t)

    assert is_valid_key(text) == documented(text)


def test_a_key_with_a_trailing_newline_is_refused():
    assert not is_valid_key("abc\n")
    with pytest.raises(ValueError):
        Record(key="abc\n", image=b"", label=0, split="train")


@given(st.one_of(st.integers(min_value=0, max_value=2**63 - 1), st.text(UNICODE, max_size=20), st.none()), st.integers(0, 10**6))
def test_coco_rejection_key_text(image_id, position):
    """The key an adapter-level rejection is reported under: the id as text, or its position without one."""
    text = _key_text(image_id, position)
    assert text == _key_text(image_id, position)
    if image_id is None:
        assert text == f"images[{position}]"
    else:
        assert text == str(image_id)
        if isinstance(image_id, int):
            assert_key(text)  # an integer id is always a valid key: _invalid_keys relies on it


# --------------------------------------------------------------------------- captions

TEMPLATES = builtin_template_names()
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
TRICKY = [
    "{{ 7*7 }}", "{{ name }}", "{% if true %}x{% endif %}", "{# hidden #}", "{{", "}}", "{%", "%}", "{#", "#}", "${x}", "{0}", "%s",
    "'", '"', "\\", "/", "\n", "\t", "\r\n", "\u2028", "\x85", "\x0b", "\u00a0", "\u3000", "\u200b",
    "שלום", "العربية", "\u202e", "\u200f", "n\u0303", "e\u0301\u0301", "\u0301", "🦜", "👨‍👩‍👧", "Ōhiʻa", "Jorō", "ǅ", "ß", "İ",
    "<b>", "&amp;", "None", "undefined", "Pica hudsonia", "Anna's Hummingbird",
]
FIELD = st.one_of(
    st.text(UNICODE, max_size=40),
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(UNICODE, max_size=8)), max_size=5).map("".join),
)
NAME = FIELD.filter(lambda s: s.strip())  # a class without a name is refused before any template runs (validate_classes)


@st.composite
def classes(draw):
    name = draw(NAME)
    common = draw(st.one_of(st.just(""), FIELD, st.just(name), st.just(f"  {name.upper()} ")))
    ranks = draw(st.lists(st.sampled_from(RANKS), unique=True, max_size=len(RANKS)))
    taxonomy = tuple((rank, draw(FIELD)) for rank in RANKS if rank in ranks)
    extra = draw(st.fixed_dictionaries({}, optional={"supercategory": FIELD, "id": st.integers(0, 10**6)}))
    return ClassInfo(0, name, common, taxonomy, extra)


METADATA = st.fixed_dictionaries({}, optional={
    "date": st.one_of(st.none(), FIELD, st.dates().map(lambda d: f"{d.isoformat()} 10:00:00+00:00")),
    "latitude": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-1000, 1000)),
    "longitude": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-1000, 1000)),
    "attributes": st.one_of(st.none(), st.lists(st.one_of(FIELD, st.none()), max_size=8), FIELD),
    "rights_holder": FIELD,
})


def render_all(cls: ClassInfo, metadata) -> dict[str, str]:
    renderer = CaptionRenderer([load_template(t) for t in TEMPLATES], [cls])
    return {t: renderer.render_class(t, 0, metadata) for t in TEMPLATES}


def has_common_name(cls: ClassInfo) -> bool:
    common = cls.common_name.strip()
    return bool(common) and common.casefold() != cls.name.strip().casefold()


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(classes(), METADATA)
def test_every_builtin_template_renders_any_named_class_into_one_clean_line(cls, metadata):
    captions = render_all(cls, metadata)  # no exception: built-ins guard every optional field
    for template, caption in captions.items():
        assert caption, template
        assert caption == collapse(caption), (template, caption)  # no tab, newline, double or edge space
        assert not any(c.isspace() and c != " " for c in caption), (template, caption)
        assert caption.startswith("a photo of "), (template, caption)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(classes(), METADATA)
def test_names_are_shown_literally(cls, metadata):
    captions = render_all(cls, metadata)
    name, common = collapse(cls.name), collapse(cls.common_name)
    assert captions["scientific"] == collapse(f"a photo of {cls.name.strip()}.")
    shown = cls.name.strip()
    expected = f"a photo of {shown} with common name {cls.common_name.strip()}." if has_common_name(cls) else f"a photo of {shown}."
    assert captions["scientific_common"] == collapse(expected)
    assert captions["common"] == collapse(f"a photo of {cls.common_name.strip() if has_common_name(cls) else cls.name.strip()}.")
    assert name in captions["observation"]
    if has_common_name(cls):
        assert common in captions["common"] and common in captions["taxonomic_common"]
    else:
        for template in ("metadata_concat", "with_attributes"):
            assert name in captions[template], template
    ranks = [value for _, value in cls.taxonomy if value.strip()]
    if any(value.strip() for value in ranks):
        assert captions["taxonomic"] == collapse(f"a photo of {' '.join(ranks)}.")
        tagged = " ".join(f"{rank} {value}" for rank, value in cls.taxonomy if value.strip())
        assert captions["taxonomic_tagged"] == collapse(f"a photo of {tagged}.")
        with_common = f" with common name {cls.common_name.strip()}" if has_common_name(cls) else ""
        assert captions["taxonomic_common"] == collapse(f"a photo of {' '.join(ranks)}{with_common}.")
    else:  # no (non-blank) taxonomy: the taxonomic templates fall back to the name
        for template in ("taxonomic", "taxonomic_common", "taxonomic_tagged"):
            assert name in captions[template], template


JINJA = st.sampled_from(["{{ 7*7 }}", "{{ name }}", "{{ meta }}", "{% for i in range(3) %}{{ i }}{% endfor %}", "{# gone? #}",
                         "{{ ''.__class__ }}", "{% raw %}", "{{ lipsum() }}", "{%- set x = 1 -%}", "{{ 'a' * 3000 }}"])


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(st.text(UNICODE, max_size=10), JINJA, st.text(UNICODE, max_size=10),
       st.sampled_from(["name", "common_name", "genus", "supercategory"]))
def test_jinja_looking_field_text_is_not_evaluated(before, payload, after, field):
    value = f"{before}{payload}{after}"
    cls = ClassInfo(0, value if field == "name" else "Pica hudsonia", value if field == "common_name" else "Black-billed Magpie",
                    (("genus", value if field == "genus" else "Pica"), ("species", "hudsonia")),
                    {"supercategory": value if field == "supercategory" else "Aves"})
    captions = render_all(cls, {})
    shown = {"name": ["scientific", "scientific_common", "observation"], "common_name": ["common", "taxonomic_common", "metadata_concat"],
             "genus": ["taxonomic", "taxonomic_tagged", "metadata_concat"], "supercategory": ["metadata_concat"]}[field]
    for template in shown:
        assert collapse(payload) in captions[template], (template, captions[template])


def test_a_null_field_printed_by_a_template_is_a_caption_error():
    """The documented failure: a class whose field the template prints is null."""
    cls = ClassInfo(0, "Pica hudsonia", "Black-billed Magpie", (("genus", "Pica"),), {"supercategory": None})
    renderer = CaptionRenderer([load_template("metadata_concat")], [cls])
    with pytest.raises(CaptionError, match="null"):
        renderer.render_class("metadata_concat", 0, {})


@pytest.mark.parametrize("template", ["taxonomic", "taxonomic_common", "taxonomic_tagged"])
def test_blank_ranks_fall_back_to_the_name(template):
    cls = ClassInfo(0, "Pica hudsonia", "", (("kingdom", " "), ("genus", "\t")))
    caption = CaptionRenderer([load_template(template)], [cls]).render_class(template, 0, {})
    assert "Pica hudsonia" in caption, caption


def test_a_common_name_equal_to_the_name_up_to_edge_whitespace_is_not_repeated():
    cls = ClassInfo(0, "Pica hudsonia ", "Pica hudsonia")
    caption = CaptionRenderer([load_template("scientific_common")], [cls]).render_class("scientific_common", 0, {})
    assert caption == "a photo of Pica hudsonia."


# --------------------------------------------------------------------------- build accounting

CATEGORIES = example_categories()
GOOD, TRUNCATED, EMPTY, TEXT, DELETED, PNG = "good", "truncated", "empty", "text", "deleted", "png_named_jpg"
BAD_FILES = {TRUNCATED, EMPTY, TEXT, DELETED}
# What happens to an image's annotation; the first three make the adapter reject the image.
UNKNOWN_CATEGORY, CONFLICTING, NO_ANNOTATION, KEEP, SAME_TWICE = "unknown_category", "conflicting", "no_annotation", "keep", "same_twice"
ADAPTER_REJECTS = {UNKNOWN_CATEGORY, CONFLICTING, NO_ANNOTATION}


@st.composite
def datasets(draw):
    n_classes = draw(st.integers(1, 3))
    cats = draw(st.lists(st.integers(0, len(CATEGORIES) - 1), min_size=n_classes, max_size=n_classes, unique=True))
    per_class = {"train": draw(st.integers(1, 3)), "val": draw(st.integers(0, 2))}
    n_images = n_classes * sum(per_class.values())
    files = draw(st.lists(st.sampled_from([GOOD, GOOD, GOOD, PNG, TRUNCATED, EMPTY, TEXT, DELETED]), min_size=n_images, max_size=n_images))
    annotations = draw(st.lists(st.sampled_from([KEEP, KEEP, KEEP, SAME_TWICE, UNKNOWN_CATEGORY, CONFLICTING, NO_ANNOTATION]),
                                min_size=n_images, max_size=n_images))
    return {
        "categories": [CATEGORIES[i] for i in cats], "per_class": per_class, "files": files, "annotations": annotations,
        "cut": draw(st.floats(0, 1, exclude_max=True)), "text": draw(st.text(UNICODE, max_size=40)),
        "orphans": draw(st.integers(0, 2)), "shard_size": draw(st.integers(1, 5)), "seed": draw(st.integers(0, 3)),
    }


def corrupt(path: Path, how: str, cut: float, text: str) -> None:
    if how == TRUNCATED:
        data = path.read_bytes()
        path.write_bytes(data[: 1 + int(cut * (len(data) - 1))])  # 1 .. len-1 bytes: every strict prefix counts
    elif how == EMPTY:
        path.write_bytes(b"")
    elif how == TEXT:
        path.write_bytes(f"not an image: {text}".encode())
    elif how == DELETED:
        path.unlink()
    elif how == PNG:  # a good image in another format than its name says: converted, not rejected
        buffer = io.BytesIO()
        Image.new("RGBA", (10, 7), (1, 2, 3, 128)).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())


def make_dataset(root: Path, spec: dict) -> dict[str, dict[str, str]]:
    """Writes the dataset; returns split → {key: "written" | "adapter" | "image"}, where each image must end up."""
    make_inat_root(root, spec["categories"], spec["per_class"], seed=spec["seed"])
    expected: dict[str, dict[str, str]] = {}
    position = 0
    for split in spec["per_class"]:
        document = read_json(root / f"{split}.json")
        annotations = []
        by_image = {a["image_id"]: a for a in document["annotations"]}
        expected[split] = {}
        for image in document["images"]:
            how_file, how_ann = spec["files"][position], spec["annotations"][position]
            position += 1
            corrupt(root / image["file_name"], how_file, spec["cut"], spec["text"])
            annotation = dict(by_image[image["id"]])
            if how_ann == UNKNOWN_CATEGORY:
                annotation["category_id"] = 10**9 + image["id"]
            if how_ann != NO_ANNOTATION:
                annotations.append(annotation)
            if how_ann == CONFLICTING:
                annotations.append({**annotation, "id": annotation["id"] + 10**6, "category_id": 10**9 + image["id"]})
            if how_ann == SAME_TWICE:
                annotations.append({**annotation, "id": annotation["id"] + 10**6})
            outcome = "adapter" if how_ann in ADAPTER_REJECTS else "image" if how_file in BAD_FILES else "written"
            expected[split][str(image["id"])] = outcome
        for n in range(spec["orphans"]):  # annotations of images that do not exist: no row, so in no count
            annotations.append({"id": 5 * 10**6 + n, "image_id": 7 * 10**6 + n, "category_id": 10**9 + n})
        random.Random(spec["seed"]).shuffle(annotations)
        write_json(root / f"{split}.json", {**document, "annotations": annotations})
    return expected


def shard_keys(tar_path: Path) -> tuple[Counter, list[str]]:
    """Samples of one shard, as key → number of members, read with the stdlib tar reader."""
    with tarfile.open(tar_path) as tar:
        members = [m.name for m in tar.getmembers()]
    return Counter(name.partition(".")[0] for name in members), members


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_a_build_accounts_for_every_input_image(spec):
    with tempfile.TemporaryDirectory(prefix="vlconvert-prop-") as tmp:
        root, out = Path(tmp) / "inat", Path(tmp) / "out"
        expected = make_dataset(root, spec)
        summary = vlconvert.build("inat2021", str(root), str(out), shard_size=spec["shard_size"], seed=spec["seed"])

        manifest = read_json(out / "manifest.json")
        assert manifest["status"] == "complete"
        errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
        assert manifest["errors"]["count"] == len(errors) == summary.errored
        assert manifest["errors"]["by_stage"] == dict(Counter(e["stage"] for e in errors))
        assert set(manifest["splits"]) == set(expected) == set(summary.splits)

        for split, outcome in expected.items():
            m = manifest["splits"][split]
            assert m["read"] == m["written"] + m["errored"] + m.get("held_out", 0) == len(outcome)
            assert (m["written"], m["errored"]) == (summary.splits[split].written, summary.splits[split].errored)

            sizes = read_json(out / split / "sizes.json")
            tars = sorted(p.name for p in (out / split).glob("*.tar"))
            assert sorted(sizes) == tars == sorted(s["name"].split("/")[-1] for s in m["shards"])
            assert m["written"] == sum(sizes.values())

            written = Counter()
            for shard in m["shards"]:
                path = out / shard["name"]
                samples, members = shard_keys(path)
                assert sizes[path.name] == shard["samples"] == len(samples)
                assert 1 <= shard["samples"] <= spec["shard_size"]
                assert shard["bytes"] == path.stat().st_size
                assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
                assert all(count == 4 for count in samples.values()), members  # jpg, txt, json, cls: each once
                written.update(samples.keys())
            assert sum(m["class_counts"]) == m["written"]

            split_errors = [e for e in errors if e["split"] == split]
            assert len(split_errors) == m["errored"]
            rejected = Counter(e["key"] for e in split_errors)
            # every key exactly once across the split's shards and its errors
            assert all(n == 1 for n in (written + rejected).values()), written + rejected
            assert set(written) | set(rejected) == set(outcome)
            assert not set(written) & set(rejected)
            # ... and in the place its input sends it
            assert {k for k, o in outcome.items() if o == "written"} == set(written)
            assert {e["key"]: e["stage"] for e in split_errors} == {k: o for k, o in outcome.items() if o != "written"}
