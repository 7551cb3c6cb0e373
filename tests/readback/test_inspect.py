"""`vlconvert inspect` on real builds of the embedded example: the terminal summary and the HTML report."""

import json
import re
import sys
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from inat_layout import EXAMPLE, example_categories, make_inat_root
from optional import require

import vlconvert
from vlconvert.captions.lengths import percentiles
from vlconvert.cli.inspect import human_bytes
from vlconvert.cli.root import cli, main
from vlconvert.readback.inspect import inspect
from vlconvert.readback.stats import FREQUENCY_PERCENTILES

SCRIPT_NAME = "<script>alert('owned')</script> Worm"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The embedded example as README builds it: train 120 samples in 1 shard, val 36 in 1."""
    out = tmp_path_factory.mktemp("inspect") / "out"
    vlconvert.build("inat2021", root=str(EXAMPLE), out=str(out))
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """A build whose class names carry markup, with one record rejected (its image is gone)."""
    base = tmp_path_factory.mktemp("hostile")
    categories = example_categories()[:3]
    categories[0] = {**categories[0], "common_name": SCRIPT_NAME}
    root = make_inat_root(base / "inat", categories=categories, per_class={"train": 4, "val": 1})
    next((root / "train").rglob("*.jpg")).unlink()
    vlconvert.build("inat2021", root=str(root), out=str(base / "out"))
    return base / "out"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, ["inspect", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def shard_captions(out: Path) -> dict[str, str]:
    """split/key → KEY.txt, read straight from the tars."""
    captions = {}
    for shard in out.glob("*/*.tar"):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".txt"):
                    captions[f"{shard.parent.name}/{member.name[:-4]}"] = tar.extractfile(member).read().decode()
    return captions


def test_the_summary_matches_the_manifest(built):
    output = invoke(str(built))
    m = manifest(built)
    assert output.startswith(f"{built}: complete build of inat2021 ({EXAMPLE}), 12 classes\n")
    for split, info in m["splits"].items():
        row = next(line.split() for line in output.splitlines() if line.startswith(split + " "))
        shard_bytes = sum(s["bytes"] for s in info["shards"])
        assert row[:4] == [split, str(len(info["shards"])), str(info["written"]), str(sum(c > 0 for c in info["class_counts"]))]
        assert " ".join(row[4:6]) == human_bytes(shard_bytes) and row[6] == str(info["errored"])
    total = next(line.split() for line in output.splitlines() if line.startswith("total "))
    assert total[:4] == ["total", "2", "156", "12"]
    assert "templates: taxonomic_common (KEY.txt)" in output

    counts = m["splits"]["train"]["class_counts"]
    assert "images per class in train (12 classes, from the manifest):" in output
    assert "  " + "  ".join(f"{k} {v}" for k, v in percentiles(counts, FREQUENCY_PERCENTILES).items()) in output
    assert "  min 10  p1 10  p5 10  p25 10  median 10  p75 10  p95 10  p99 10  max 10" in output
    assert "head 12 classes (>= 10 images), medium 0, tail 0 (< 10)" in output
    assert "captions (KEY.txt) of 156 samples read from 2 of 2 shards:" in output
    lengths = [len(c) for c in shard_captions(built).values()]
    assert f"characters:  min {min(lengths)}  p50 " in output and f"max {max(lengths)}\n" in output
    try:
        import open_clip  # noqa: F401
        assert re.search(r"CLIP tokens: min \d+ .* max \d+; 0 exceed 77 \(truncated in training\)", output)
    except ImportError:
        assert "CLIP tokens: token counts need open_clip" in output
    assert output.rstrip().endswith("errors: 0")


def test_samples_show_their_real_captions_and_classes(built):
    output = invoke(str(built))
    captions = shard_captions(built)
    classes = [json.loads(line) for line in (built / "classes.jsonl").read_text().splitlines()]
    headers = re.findall(r"^\[(\w+/\d+)\] label (\d+): (.+)$", output, re.MULTILINE)
    assert len(headers) == 5 and "5 random samples (--seed 0):" in output
    for where, label, name in headers:
        cls = classes[int(label)]
        assert name.startswith(cls["name"])
        assert " > ".join(cls["taxonomy"].values()) in output
        key = where.split("/")[1]
        assert f"    {key}.txt: {captions[where]}\n" in output


def test_the_seed_decides_the_samples(built):
    def shown(*args):
        return re.findall(r"^\[(\S+)\]", invoke(str(built), *args), re.MULTILINE)

    assert shown("--seed", "3") == shown("--seed", "3")
    assert shown("--seed", "3") != shown("--seed", "4")
    assert shown("-n", "2", "--seed", "3") == shown("--seed", "3")[:2]


def test_max_shards_bounds_what_is_read(built, tmp_path):
    out = tmp_path / "small-shards"
    vlconvert.build("inat2021", root=str(EXAMPLE), out=str(out), shard_size=10)
    total = sum(len(i["shards"]) for i in manifest(out)["splits"].values())
    output = invoke(str(out), "--max-shards", "3")
    assert f"read from 3 of {total} shards (a seeded sample; --max-shards 3 to read more):" in output
    report = inspect(str(out), max_shards=3)
    assert {s.split for s in report.samples} == {"train", "val"}  # every split is represented
    listed = {s["name"]: s["samples"] for info in manifest(out)["splits"].values() for s in info["shards"]}
    assert report.shards_read == 3 and report.samples_read == sum(listed[name] for name in report.read_shards)


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.links = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        if tag == "a":
            self.links.append(dict(attrs)["href"])


def parsed(index: Path) -> Images:
    parser = Images()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def test_the_html_report(built, tmp_path):
    require("matplotlib")
    report = tmp_path / "report"
    output = invoke(str(built), "--report", str(report))
    index = report / "index.html"
    assert output.rstrip().endswith(f"report: {index}")
    page = index.read_text(encoding="utf-8")
    images = parsed(index).sources
    assert images.count("long_tail.png") == 1 and images.count("caption_lengths.png") == 1
    thumbs = [s for s in images if s.startswith("thumbs/")]
    assert len(thumbs) == 24 and sorted(p.name for p in (report / "thumbs").iterdir()) == sorted(Path(s).name for s in thumbs)
    for source in images:
        assert (report / source).stat().st_size > 500, source
    assert "http" not in re.sub(r"<h1>.*?</h1>", "", page)  # offline: no CDN, no remote fonts or scripts
    for split, info in manifest(built)["splits"].items():
        assert f"<td>{split}</td><td>{len(info['shards'])}</td><td>{info['written']}</td>" in page
        assert f"<td>{sum(s['bytes'] for s in info['shards']):,}</td>" in page
    assert "No record was rejected." in page
    from PIL import Image

    with Image.open(report / thumbs[0]) as im:
        assert max(im.size) <= 192


def test_names_captions_and_errors_are_escaped(hostile, tmp_path):
    require("matplotlib")
    output = invoke(str(hostile), "--report", str(tmp_path / "report"), "--grid", "100")
    assert SCRIPT_NAME in output  # the terminal shows names as they are
    assert "errors: 1 (image 1); first 1 from errors.jsonl:" in output
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; Worm" in page  # names and captions
    samples = sum(info["class_counts"][0] for info in manifest(hostile)["splits"].values())
    assert page.count("&lt;script&gt;") == 2 * samples  # each sample of the class: its name and its caption
    assert "<td>image</td><td>1</td>" in page and "The first 1 of 1 in errors.jsonl" in page


def test_a_zero_shot_report_beside_the_build_is_linked(built, tmp_path):
    require("matplotlib")
    zs = tmp_path / "zs-report"
    zs.mkdir()
    (zs / "metrics.json").write_text(json.dumps({"acc1": 0.5833, "data": str(built)}))
    (zs / "report.md").write_text("# Zero-shot\n")
    explicit = invoke(str(built), "--zeroshot-report", str(zs), "--report", str(tmp_path / "report"))
    assert f"zero-shot report: {zs / 'report.md'} (top-1 58.33%)" in explicit
    links = parsed(tmp_path / "report" / "index.html").links
    assert links == ["../zs-report/report.md"] and (tmp_path / "report" / links[0]).resolve() == zs / "report.md"

    inside = built / "zeroshot"  # OUT/zeroshot*/ is found without being named
    inside.mkdir()
    try:
        (inside / "metrics.json").write_text(json.dumps({"acc1": 0.25}))
        assert f"zero-shot report: {inside / 'metrics.json'} (top-1 25.00%)" in invoke(str(built))
    finally:
        (inside / "metrics.json").unlink()
        inside.rmdir()


def test_a_sibling_zero_shot_report_of_this_build_is_found(tmp_path):
    out = tmp_path / "out"
    vlconvert.build("inat2021", root=str(EXAMPLE), out=str(out), splits=["val"])
    for name, data in (("mine", out), ("other", tmp_path / "elsewhere")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"acc1": 0.5, "data": str(data)}))
    lines = [line for line in invoke(str(out)).splitlines() if line.startswith("zero-shot report")]
    assert lines == [f"zero-shot report: {tmp_path / 'mine' / 'metrics.json'} (top-1 50.00%)"]


def run_main(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["vlconvert", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_not_a_build_exits_2(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, "inspect", str(tmp_path))
    assert code == 2 and err == f"error: {tmp_path}: holds no manifest.json, so it is not a vlconvert build\n"


def test_html_without_matplotlib_says_what_to_install(built, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code, err = run_main(monkeypatch, capsys, "inspect", str(built), "--report", str(tmp_path / "r"))
    assert code == 2 and err == "error: --report needs matplotlib: pip install 'vlconvert[report]'\n"
    assert not (tmp_path / "r").exists()


def test_a_remote_build_is_read_through_fsspec(built):
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in built.rglob("*"):
        if path.is_file():
            memory.pipe_file(f"/inspect-test/{path.relative_to(built)}", path.read_bytes())
    try:
        output = invoke("memory://inspect-test", "-n", "1")
        assert "captions (KEY.txt) of 156 samples read from 2 of 2 shards:" in output
        assert output == invoke(str(built), "-n", "1").replace(str(built), "memory://inspect-test")
    finally:
        memory.rm("/inspect-test", recursive=True)


def test_the_doc_example_is_what_the_command_prints(tmp_path, monkeypatch):
    doc = (EXAMPLE.parent.parent / "docs" / "inspect.md").read_text(encoding="utf-8")
    args, shown = doc.split("```console\n$ vlconvert inspect ")[1].split("```")[0].split("\n", 1)
    (tmp_path / "examples").symlink_to(EXAMPLE.parent)  # the build records its --root as given: keep it relative
    monkeypatch.chdir(tmp_path)
    vlconvert.build("inat2021", root="examples/inat2021_mini", out="out/inat2021_mini")
    output = invoke(*args.split())
    if "CLIP tokens: token counts need open_clip" in output:
        pytest.skip("the doc shows token counts, which need open_clip")
    assert output == shown


def test_without_open_clip_it_says_tokens_need_it(built, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    monkeypatch.setitem(sys.modules, "open_clip.tokenizer", None)
    output = invoke(str(built), "-n", "0")
    assert "  CLIP tokens: token counts need open_clip: pip install 'vlconvert[lit]'\n" in output
