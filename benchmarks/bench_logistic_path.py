"""A backbone's cached embeddings (after `dvc repro`) -> seconds for a logistic head's c_grid fitted cold (each C from
zero) and along the path (warm_start, as pipeline/heads.py does), alternating, with the C each keeps and how far
their validation probabilities differ.

Run by hand from the project root: python benchmarks/bench_logistic_path.py [--backbone resnet50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from pipeline import config
from pipeline.embeddings import Embeddings


def path_fit(z, y, z_val, y_val, c_grid, warm: bool) -> tuple[float, float, np.ndarray]:
    """-> (seconds, the C with the lowest validation log loss, its validation probabilities)."""
    start = time.perf_counter()
    model, best = LogisticRegression(max_iter=2000, warm_start=warm), (np.inf, None, None)
    for c in sorted(c_grid):
        model = model.set_params(C=c).fit(z, y) if warm else LogisticRegression(C=c, max_iter=2000).fit(z, y)
        p_val = model.predict_proba(z_val)[:, 1]
        best = min(best, (log_loss(y_val, p_val, labels=[0, 1]), c, p_val), key=lambda t: t[0])
    return time.perf_counter() - start, best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cfg = config.compose(["preset=offline", f"backbone={args.backbone}"])  # conf/: the head c_grid the pipeline uses
    embeddings = Embeddings.load(Path(cfg.paths.embeddings) / args.backbone)
    scaler = StandardScaler().fit(embeddings.pooled("train", "avg"))
    z, z_val = (scaler.transform(embeddings.pooled(name, "avg")) for name in ("train", "val"))
    y, y_val = embeddings.labels["train"], embeddings.labels["val"]
    print(f"{args.backbone}: {z.shape[0]} training vectors of {z.shape[1]} features, c_grid {list(cfg.head.c_grid)}")
    times = {"cold": [], "warm": []}
    for _ in range(args.rounds):
        results = {name: path_fit(z, y, z_val, y_val, cfg.head.c_grid, warm=name == "warm") for name in times}
        for name, (seconds, c, _) in results.items():
            times[name].append(seconds)
            print(f"  {name}: {seconds:6.1f} s, keeps C={c}  (load average {os.getloadavg()[0]:.2f})", flush=True)
        difference = np.abs(results["cold"][2] - results["warm"][2]).max()
        print(f"  largest difference of a validation probability: {difference:.2e}", flush=True)
    print(f"warm/cold: {min(times['warm']) / min(times['cold']):.2f} of the time (best of {args.rounds} each)")


if __name__ == "__main__":
    main()
