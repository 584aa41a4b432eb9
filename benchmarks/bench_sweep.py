"""A checkout with the data and weights pulled -> wall time of the offline main job, then of a head change and a
learning-rate change (`dvc exp run -S ...`), each as a share of the first, and each stage's wall time: what the
embed stage's cache saves, and where the rest goes.

Run by hand from the project root, on an otherwise idle machine: python benchmarks/bench_sweep.py
"""

import os
import re
import subprocess
import time

RUNS = {
    "offline main job": ["-S", "preset=offline"],
    "head=flatten_dense": ["-S", "preset=offline", "-S", "head=flatten_dense"],
    "train.learning_rate=0.0005": ["-S", "preset=offline", "-S", "train.learning_rate=0.0005"],
}


def timed_stages(overrides: list[str]) -> tuple[float, dict[str, float]]:
    """One `dvc exp run` -> (its wall time, each stage's wall time: from its "Running stage" line to the next)."""
    stages, current, mark = {}, None, None
    start = time.perf_counter()
    with subprocess.Popen(["dvc", "exp", "run", *overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as dvc:
        for line in dvc.stdout:
            found = re.search(r"Running stage '([^']+)'", line)
            if found:
                now = time.perf_counter()
                if current:
                    stages[current] = now - mark
                current, mark = found.group(1), now
    seconds = time.perf_counter() - start
    if current:
        stages[current] = start + seconds - mark
    if dvc.returncode:
        raise SystemExit(f"dvc exp run {' '.join(overrides)} failed (exit {dvc.returncode})")
    return seconds, stages


def main() -> None:
    first = None
    for name, overrides in RUNS.items():
        seconds, stages = timed_stages(overrides)
        first = first or seconds
        embedded = [s for s in stages if s.startswith("embed@")]
        print(
            f"{name:28s} {seconds:7.1f} s  {seconds / first:6.1%} of the first run  "
            f"(embed stages run: {len(embedded)}, load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )
        print("    " + ", ".join(f"{stage} {s:.1f} s" for stage, s in stages.items()), flush=True)


if __name__ == "__main__":
    main()
