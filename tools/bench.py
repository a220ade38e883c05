"""`make bench`: how long the offline render takes, against importing pulumi_kubernetes alone.

Both commands run as whole processes, alternately, several times; the medians and their ratio are
printed (target: the render at most 3x the bare import). Figures from one run on one machine, so
quote the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tools.offline import ROOT


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    render = ["make", "--no-print-directory", "render", f"STACK={args.stack}"]
    baseline = [sys.executable, "-c", "import pulumi_kubernetes"]
    wall(render), wall(baseline)  # warm-up: file cache, pyc files
    renders, baselines = [], []
    for _ in range(args.runs):
        renders.append(wall(render))
        baselines.append(wall(baseline))
    r, b = statistics.median(renders), statistics.median(baselines)
    print(f"make render STACK={args.stack}: median {r:.2f}s over {args.runs} runs (min {min(renders):.2f}s, max {max(renders):.2f}s)")
    print(f"python -c 'import pulumi_kubernetes': median {b:.2f}s over {args.runs} runs (min {min(baselines):.2f}s, max {max(baselines):.2f}s)")
    print(f"ratio render/baseline: {r / b:.2f} (target <= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
