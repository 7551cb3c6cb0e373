"""Peak memory and time of `vlconvert build --dry-run` on a full-size iNat-2021 train.json.

Generates the 2,686,843-image train.json from the real 10,000 categories when
it is missing (about a minute, 1.1 GB), then runs the real command under
``/usr/bin/time -v`` and reads its wall time and "Maximum resident set size".
The goal (issue 15) is at most 20 s and 500 MB peak RSS (issue 7's was 60 s and 1 GB).

    python benchmarks/dry_run_full_scale.py --root /tmp/inat-full
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATEGORIES = HERE.parent.parent / "shared" / "data" / "inat2021_categories.json"
RSS_GOAL_MB, SECONDS_GOAL = 500, 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/inat-full", help="folder holding (or to hold) the full-size train.json")
    parser.add_argument("--categories", default=str(CATEGORIES))
    args = parser.parse_args()
    root = Path(args.root)
    if not (root / "train.json").exists():
        subprocess.run([sys.executable, str(HERE / "make_inat2021_train_json.py"), "--categories", args.categories, "--out", str(root)],
                       check=True)
    vlconvert = shutil.which("vlconvert", path=str(Path(sys.executable).parent)) or "vlconvert"
    with tempfile.TemporaryDirectory() as out:
        command = ["/usr/bin/time", "-v", vlconvert, "build", "--adapter", "inat2021", "--root", str(root), "--split", "train",
                   "--out", str(Path(out) / "never-written"), "--dry-run"]
        result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout.strip())
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return result.returncode
    rss_mb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", result.stderr).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(clock.split(":"))))
    verdict = "PASS" if rss_mb <= RSS_GOAL_MB and seconds <= SECONDS_GOAL else "FAIL"
    print(f"dry run: {seconds:.1f} s wall, peak RSS {rss_mb:.0f} MB (goal: <= {SECONDS_GOAL} s, <= {RSS_GOAL_MB} MB): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
