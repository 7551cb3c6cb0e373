"""What the install puts where, and what the converter does not need."""

import subprocess
import sys
from importlib import resources

from inat_layout import EXAMPLE


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_no_top_level_adapters_module(tmp_path):
    # Run outside the repo, so only the installed package is importable.
    code = "import importlib.util as u; print(u.find_spec('adapters'), u.find_spec('vlconvert.adapters.inat2021') is not None)"
    result = run_python(code, tmp_path)
    assert result.stdout.split() == ["None", "True"], result.stderr


def test_templates_ship_as_package_data():
    folder = resources.files("vlconvert.templates")
    assert {"scientific.j2", "taxonomic_common.j2"} <= {p.name for p in folder.iterdir()}
    assert len(folder.joinpath("zeroshot", "openai_imagenet.txt").read_text().splitlines()) == 80


def test_building_never_imports_torch(tmp_path):
    code = (
        "import sys, vlconvert\n"
        f"vlconvert.build('inat2021', {str(EXAMPLE)!r}, {str(tmp_path / 'out')!r}, splits=['val'], workers=2)\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'torchvision', 'webdataset') if m in sys.modules))"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
