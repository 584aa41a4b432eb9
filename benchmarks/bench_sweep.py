"""A checkout with the data and weights pulled -> wall time of the offline main job, then of a head change and a
learning-rate change (`dvc exp run -S ...`), each as a share of the first: what the embed stage's cache saves.

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


def main() -> None:
    first = None
    for name, overrides in RUNS.items():
        start = time.perf_counter()
        done = subprocess.run(["dvc", "exp", "run", *overrides], capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        first = first or seconds
        stages = re.findall(r"Running stage '([^']+)'", done.stdout)
        embedded = [s for s in stages if s.startswith("embed@")]
        print(
            f"{name:28s} {seconds:7.1f} s  {seconds / first:6.1%} of the first run  "
            f"(embed stages run: {len(embedded)}, load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
