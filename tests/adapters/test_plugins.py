"""A third-party adapter, registered through a real entry point, used by the real CLI."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

PLUGIN = '''
import io
from PIL import Image
from vlconvert import ClassInfo, Record, Rejected


class TinyAdapter:
    """Two classes of flat colour, built in memory.

    Exists to test the plugin API.
    """

    name = "tiny"
    description = __doc__

    def __init__(self, root, count="3"):
        self.count = int(count)

    def classes(self):
        return [ClassInfo(0, "Rubus ruber", "red bramble", (("genus", "Rubus"), ("species", "ruber"))),
                ClassInfo(1, "Caerulea", "", ())]

    def splits(self):
        return ["train"]

    def records(self, split):  # a generator, not a sequence
        for i in range(self.count):
            buf = io.BytesIO()
            Image.new("RGB", (20, 10), (200 * (i % 2), 0, 200)).save(buf, format="PNG")
            yield Record(key=f"tiny-{i}", image=buf.getvalue(), label=i % 2, split=split, metadata={"i": i})

    def rejected(self, split):
        yield Rejected(split, "tiny-x", "row 99", "no colour given")
'''


@pytest.fixture
def plugin_path(tmp_path):
    (tmp_path / "tiny_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "tiny_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vlconvert.adapters]\ntiny = tiny_plugin:TinyAdapter\n")
    return tmp_path


def run(plugin_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    return subprocess.run([sys.executable, "-m", "vlconvert", *args], capture_output=True, text=True, env=env, timeout=120)


def test_plugin_is_listed_with_its_origin(plugin_path):
    listing = run(plugin_path, "adapters").stdout.splitlines()
    expected = "Two classes of flat colour, built in memory.  [tiny-plugin]"
    assert any(line.startswith("tiny ") and line.endswith(expected) for line in listing)


def test_plugin_builds_with_options_and_rejections(plugin_path, tmp_path):
    out = tmp_path / "out"
    result = run(plugin_path, "build", "-a", "tiny", "-r", "unused", "-o", str(out), "--option", "count=5", "-t", "scientific_common")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["adapter"] == {"name": "tiny", "root": "unused", "options": {"count": "5"}}
    assert manifest["splits"]["train"]["read"] == 6 and manifest["splits"]["train"]["written"] == 5
    with tarfile.open(out / "train" / "train-000000.tar") as tar:
        names = tar.getnames()
        texts = {n: tar.extractfile(n).read().decode() for n in names if n.endswith(".txt")}
    assert sum(n.endswith(".png") for n in names) == 5  # in-memory PNG bytes pass through as png
    assert set(texts.values()) == {"a photo of Rubus ruber with common name red bramble.", "a photo of Caerulea."}
    assert json.loads((out / "errors.jsonl").read_text()) == {
        "split": "train", "key": "tiny-x", "source": "row 99", "stage": "adapter", "reason": "no colour given"}


def test_plugin_rejects_unknown_options(plugin_path, tmp_path):
    result = run(plugin_path, "build", "-a", "tiny", "-r", "x", "-o", str(tmp_path / "o"), "--option", "colour=red")
    assert result.returncode == 2
    assert "error: adapter 'tiny' does not accept the options {'colour': 'red'}" in result.stderr


@pytest.mark.slow
def test_the_example_plugin_package_installs_and_builds(tmp_path):
    import shutil

    from inat_layout import REPO, write_image

    source = tmp_path / "custom_adapter"
    shutil.copytree(REPO / "examples" / "custom_adapter", source)
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--target", str(site), str(source)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    survey = tmp_path / "survey"
    rows = [("a.jpg", "Calanus", "finmarchicus", 12.0), ("b.jpg", "Calanus", "glacialis", 3.5), ("c.jpg", "Oithona", "similis", 8.0)]
    for image, *_ in rows:
        write_image(survey / image, (30, 60, 200))
    (survey / "survey.csv").write_text("image,genus,species,depth_m\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows))

    listing = run(site, "adapters").stdout
    assert "plankton" in listing and "[vlconvert-plankton]" in listing
    out = tmp_path / "out"
    result = run(site, "build", "-a", "plankton", "-r", str(survey), "-o", str(out), "--option", "min_depth=5", "-t", "taxonomic")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["splits"]["train"]["read"], manifest["splits"]["train"]["written"]) == (3, 2)
    with tarfile.open(out / "train" / "train-000000.tar") as tar:
        texts = sorted(tar.extractfile(n).read().decode() for n in tar.getnames() if n.endswith(".txt"))
    assert texts == ["a photo of Calanus finmarchicus.", "a photo of Oithona similis."]
    assert json.loads((out / "errors.jsonl").read_text())["reason"] == "shallower than min_depth=5.0"
