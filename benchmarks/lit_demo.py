"""The README's LiT demo as a new user runs it, timed: `vlconvert lit-train BUILD --run-dir RUN --preset demo`.

Runs the real command (a new process: torch's import and the model's start-up
count, as they do for the user) on the embedded example, once with the
automatic thread choice (one thread for lit-tiny on CPU) and once with
torch's default threads (``--threads`` = the machine's cores), in alternation,
and reports wall times, their ratio, and the run folder's size on disk.  The
target is under 30 s on a 2-core machine.  Run from the repository root:

    python benchmarks/lit_demo.py [--repeats 2]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VLCONVERT = shutil.which("vlconvert", path=str(Path(sys.executable).parent)) or "vlconvert"


def timed_run(build: Path, run: Path, *more: str) -> float:
    shutil.rmtree(run, ignore_errors=True)
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    started = time.perf_counter()
    result = subprocess.run([VLCONVERT, "lit-train", str(build), "--run-dir", str(run), "--preset", "demo", *more],
                            capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"lit-train failed:\n{result.stderr[-2000:]}")
    return seconds


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlconvert-lit-demo-"))
    build = work / "mini"
    subprocess.run([VLCONVERT, "build", "-a", "inat2021", "-r", "examples/inat2021_mini", "-o", str(build)],
                   check=True, capture_output=True)
    cores = os.cpu_count() or 1
    auto, default = [], []
    for _ in range(args.repeats):  # alternated, so a change in the machine's load hits both alike
        auto.append(timed_run(build, work / "auto"))
        default.append(timed_run(build, work / "default", "--threads", str(cores)))
    kept = size_mb(work / "auto")
    everything = timed_run(build, work / "all", "--keep-checkpoints", "0")
    print(f"lit-train --preset demo (lit-tiny, 30 epochs, 120 images, cached features), {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"auto threads (1):        {min(auto):.1f} s (runs: {', '.join(f'{s:.1f}' for s in auto)})")
    print(f"torch's default ({cores}):     {min(default):.1f} s (runs: {', '.join(f'{s:.1f}' for s in default)})")
    print(f"ratio default / auto:    {min(default) / min(auto):.2f}x")
    print(f"run folder on disk: {kept:.0f} MB with --keep-checkpoints 1 (default), "
          f"{size_mb(work / 'all'):.0f} MB with --keep-checkpoints 0 ({everything:.1f} s)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
