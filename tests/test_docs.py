"""docs/templates.md shows what the built-in templates really render."""

import re

from inat_layout import REPO, category
from vlconvert.adapters.inat2021 import INat2021Adapter

from vlconvert.captions.render import CaptionRenderer, Template, builtin_template_names, load_template
from vlconvert.records import ClassInfo

DOC = (REPO / "docs" / "templates.md").read_text(encoding="utf-8")
OBSERVED = {"date": "2019-07-15 10:00:00+00:00", "latitude": 53.55, "longitude": -113.49}
ATTRIBUTES = {"attributes": ["a cone-shaped bill", "black wings", "a red shoulder patch"]}


def test_the_template_table_matches_the_templates():
    pica = INat2021Adapter.class_info(0, dict(category("Pica hudsonia")))
    cub = ClassInfo(1, "Red-winged Blackbird", "", (), {"raw_name": "010.Red_winged_Blackbird"})
    names = builtin_template_names()
    renderer = CaptionRenderer([load_template(n) for n in names], [pica, cub])
    table = DOC.split("## Built-in templates")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `(\w+)`(?: \(default\))? \| (.+) \|$", table, re.MULTILINE))
    assert sorted(rows) == names
    for name in names:
        inat_text, cub_text = (cell.strip() for cell in rows[name].split(" | "))
        assert inat_text == renderer.render_class(name, 0, OBSERVED), name
        assert cub_text == renderer.render_class(name, 1, ATTRIBUTES), name


def test_the_example_template_renders_as_its_comment_says():
    source = DOC.split("```jinja\n")[1].split("```")[0]
    renderer = CaptionRenderer([Template("family_first", source, "docs")], [INat2021Adapter.class_info(0, dict(category("Pica hudsonia")))])
    assert renderer.render_class("family_first", 0, {}) == "a photo of a member of Corvidae, Pica hudsonia."
    assert '"a photo of a member of Corvidae, Pica hudsonia."' in source


def test_the_tutorial_preview_is_what_the_command_prints():
    import subprocess
    import sys
    from pathlib import Path

    tutorial = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    block = tutorial.split("```console\n$ vlconvert captions preview ")[1].split("```")[0]
    args, shown = block.split("\n", 1)
    exe = Path(sys.executable).parent / "vlconvert"
    result = subprocess.run([str(exe), "captions", "preview", *args.split()], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown
