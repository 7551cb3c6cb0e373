"""Red team, caption templates: a template from someone else gets a deterministic budget of operations
and bounded values, enforced inside the sandbox, and a template that passes a limit fails the build
before any image is read (issue 13; docs/templates.md and docs/security.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hostile import jpeg, run_confined
from inat_layout import make_inat_root, read_json

import vlconvert

# Each attack: a template, and the error that stops it.  The last few do a lot of work in one call on values
# within the size limits, which the sandbox charges by the size of their operands.
ATTACKS = {name: (case["template"], case["error"])
           for name, case in json.loads((Path(__file__).parent.parent / "data" / "template_attacks.json").read_text()).items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_runaway_template_fails_the_build_before_any_image_is_read(tmp_path, name):
    source, message = ATTACKS[name]
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    for image in root.rglob("*.jpg"):
        image.unlink()  # a build that read an image would reject it, not stop
    (tmp_path / "attack.j2").write_text(source)
    started = time.monotonic()
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), "-t", str(tmp_path / "attack.j2"),
                          timeout=60)
    assert result.returncode == 2, result.stderr
    # Refused by the size check named, or sooner by the operation budget, which charges big operands by their size.
    assert "was refused by the sandbox" in result.stderr, result.stderr
    assert message in result.stderr or "the template took more than 50,000 operations" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_template_near_the_budget_fails_the_same_records_on_every_run(tmp_path):
    """The cost of this template depends on each record's metadata; whether a record passes the budget
    is a count, so two builds (one process, then two) reject exactly the same records and write the same bytes."""
    for n in range(6):
        (tmp_path / "data" / f"{n}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "data" / f"{n}.jpg").write_bytes(jpeg())
    rows = "".join(f"{n}.jpg,Pica pica,{loops}\n" for n, loops in enumerate((10, 49_990, 10, 50_001, 49_999, 60_000)))
    (tmp_path / "data" / "metadata.csv").write_text("file_name,label,loops\n" + rows)
    (tmp_path / "near.j2").write_text("{% for i in range(meta.loops) %}{% endfor %}a photo of {{ name }}")
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        result = run_confined("build", "-a", "table", "-r", str(tmp_path / "data"), "-o", str(out), "-t", str(tmp_path / "near.j2"),
                              "--workers", str(workers), "--shard-size", "2")
        assert result.returncode == 0, result.stderr
        outs.append(out)
    errors = [(out / "errors.jsonl").read_text() for out in outs]
    assert errors[0] == errors[1] and errors[0].count("\n") == 3
    assert all("more than 50,000 operations" in line for line in errors[0].splitlines())
    first, second = ({p.relative_to(o): p.read_bytes() for p in o.rglob("*") if p.is_file()} for o in outs)
    assert first == second
    assert read_json(outs[0] / "manifest.json")["splits"]["train"]["written"] == 3


def test_random_is_not_a_caption_filter(tmp_path):
    (tmp_path / "dice.j2").write_text("a photo of {{ [name, common_name] | random }}")
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), "-t", str(tmp_path / "dice.j2"))
    assert result.returncode == 2 and "No filter named 'random'" in result.stderr


def test_a_template_file_name_ending_in_a_newline_is_no_member_name(tmp_path):
    path = tmp_path / "caption\n.j2"
    path.write_text("a photo of {{ name }}")
    with pytest.raises(vlconvert.VLConvertError, match="becomes the tar member"):
        vlconvert.build("inat2021", str(make_inat_root(tmp_path / "inat", per_class={"val": 1})), str(tmp_path / "out"),
                        templates=["taxonomic", str(path)])


def test_a_template_nested_past_the_parser_is_an_error(tmp_path):
    (tmp_path / "deep.j2").write_text("{{ " + "(" * 5000 + "name" + ")" * 5000 + " }}")
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), "-t", str(tmp_path / "deep.j2"))
    assert result.returncode == 2 and "nested too deeply to compile" in result.stderr and "Traceback" not in result.stderr
