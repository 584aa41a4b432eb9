"""A main job's cache -> seconds to fit the logistic head's C path on one and on two BLAS threads, and two paths at once on two threads.

Run by hand from the project root after the offline main job, on an otherwise idle machine:
    python benchmarks/bench_fit_threads.py [backbone]   (default resnet50: 2,048 features, the slowest fit)
"""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from pipeline.embeddings import Embeddings

C_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]  # conf/head/logistic.yaml


def fit_path(x, y) -> int:
    """The warm C path heads.fit_logistic fits -> lbfgs iterations of its last fit."""
    model = LogisticRegression(max_iter=2000, warm_start=True)
    for c in C_GRID:
        model.set_params(C=c).fit(x, y)
    return int(model.n_iter_[0])


def main() -> None:
    backbone = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
    embeddings = Embeddings.load(Path("artifacts/embeddings") / backbone)
    x, y = embeddings.pooled("train", "avg"), embeddings.labels["train"]
    x = (x - x.mean(0)) / (x.std(0) + 1e-3)  # standardised, as the head's first layer does
    print(f"{backbone}: {x.shape[0]} vectors of {x.shape[1]} features, C path {C_GRID}")
    for threads in (1, 2, 1, 2):
        with threadpool_limits(threads, user_api="blas"):
            start = time.perf_counter()
            iterations = fit_path(x, y)
            print(f"  {threads} BLAS thread(s): {time.perf_counter() - start:5.1f} s ({iterations} iterations at C=1)  load {os.getloadavg()[0]:.2f}", flush=True)
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(2) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: fit_path(x, y), range(2)))
        print(f"  two paths at once, one BLAS thread each: {time.perf_counter() - start:5.1f} s  load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
