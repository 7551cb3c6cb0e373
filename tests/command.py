"""The installed ``vlconvert`` command, for tests that run it as a user does."""

import shutil
import subprocess
import sys
from pathlib import Path

VLCONVERT = shutil.which("vlconvert", path=str(Path(sys.executable).parent)) or "vlconvert"


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([VLCONVERT, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
