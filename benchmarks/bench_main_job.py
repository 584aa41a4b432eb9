"""A checkout with the data and weights pulled -> what the default main job costs at the backbones' real input
sizes: each stage's wall time at two data sizes, extrapolated to the whole team dataset, and what a head
change costs with the embed stage's cache (the backbones skipped) and without it (the backbones run again).

Random weights stand in for the ImageNet weights this machine cannot download (the same compute);
MobileNetV2 uses its real weights. Cross-validation is off, as it is on the full data. Each stage is
assumed to cost a fixed start-up plus a share per image, fitted through the two sizes (never less
per image than nothing: see extrapolate).

Run by hand from the project root, in a checkout you can spare (it runs `dvc exp run`), on an
otherwise idle machine: python benchmarks/bench_main_job.py [--per-class 60 120]
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
from bench_sweep import timed_stages

REAL_SIZES = ["-S", "preset=offline", "-S", "backbones.vgg16.input_size=224", "-S", "backbones.resnet50.input_size=224",
              "-S", "backbones.inception_v3.input_size=299", "-S", "cross_validation.max_images=0"]
HEAD_CHANGE = ["-S", "head=flatten_dense"]


def images_at(per_class: int | None) -> int:
    """Images the split stage keeps with data.max_per_class = per_class (None: all of them)."""
    counts = pd.read_csv("artifacts/ingest/manifest.csv").label.value_counts()
    return int(counts.clip(upper=per_class).sum()) if per_class else int(counts.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", nargs=2, type=int, default=[60, 120], help="two data.max_per_class caps")
    args = parser.parse_args()

    print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}", flush=True)
    measured = {}
    for per_class in args.per_class:
        sizes = [*REAL_SIZES, "-S", f"data.max_per_class={per_class}"]
        first_s, first = timed_stages(sizes)
        head_s, head = timed_stages([*sizes, *HEAD_CHANGE])
        images = images_at(per_class)
        measured[images] = {"first": first, "head": head}
        print(f"\n{images} images (max_per_class {per_class}): main job {first_s:.1f} s, then head=flatten_dense {head_s:.1f} s "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        print("    main job:  " + ", ".join(f"{stage} {s:.1f} s" for stage, s in first.items()))
        print("    head change, cached: " + ", ".join(f"{stage} {s:.1f} s" for stage, s in head.items()), flush=True)

    (small, at_small), (large, at_large) = sorted(measured.items())
    full = images_at(None)

    def extrapolate(run: str, stage: str) -> float:
        """Through both sizes; a stage that got no slower with more images (its per-image cost within
        the noise) costs what it did at the larger size; one DVC skipped at one size (ingest reads all
        of data/ whatever the cap) costs what it did at the other."""
        a, b = at_small[run].get(stage), at_large[run].get(stage)
        if a is None or b is None:
            return a if b is None else b
        return b + max(b - a, 0.0) * (full - large) / (large - small)

    print(f"\nExtrapolated to all {full} images (a stage's time = fixed + per image, through {small} and {large} images):")
    stages = list({**at_small["first"], **at_large["first"]})
    first = {stage: extrapolate("first", stage) for stage in stages}
    cached = {stage: extrapolate("head", stage) for stage in at_large["head"]}
    for backbone in sorted({stage.partition("@")[2] for stage in stages if "@" in stage}):
        per = {kind: first.get(f"{kind}@{backbone}", 0.0) for kind in ("embed", "train", "evaluate")}
        print(f"    {backbone:14s} embed {per['embed'] / 60:6.1f} min, train {per['train'] / 60:5.1f} min, evaluate {per['evaluate'] / 60:5.1f} min")
    embeds = sum(s for stage, s in first.items() if stage.startswith("embed@"))
    print(f"    main job {sum(first.values()) / 3600:.2f} h; of it the embed stages {embeds / 3600:.2f} h")
    print(f"    head change with the embed cache {sum(cached.values()) / 60:.1f} min; "
          f"without it (every backbone runs again) {(sum(cached.values()) + embeds) / 60:.1f} min")


if __name__ == "__main__":
    main()
