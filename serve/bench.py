"""python -m serve.bench PHOTO [--url URL ...] [-n 50] -> median ms per request: in-process pyfunc and each URL, in turns."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from serve import model_uri, use_tracking_store
from serve.client import predict


def median_ms(calls: dict, n: int) -> dict[str, float]:
    """name -> callable; each called n times, in turns, so a load change on the machine hits all alike."""
    times = {name: [] for name in calls}
    for name, call in calls.items():
        call()  # warm-up: first calls build TensorFlow graphs
    for _ in range(n):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--url", action="append", default=[], help="an /invocations URL; repeatable")
    parser.add_argument("-n", type=int, default=50)
    args = parser.parse_args()
    data = args.photo.read_bytes()

    import mlflow.pyfunc
    import pandas as pd

    use_tracking_store()
    model = mlflow.pyfunc.load_model(model_uri())
    frame = pd.DataFrame({"image": [data]})
    calls = {"in-process pyfunc predict": lambda: model.predict(frame)}
    calls.update({f"POST {url}": (lambda url=url: predict(url, [data])) for url in args.url})
    print(f"{args.photo} ({len(data)} bytes), median of {args.n}:")
    for name, ms in median_ms(calls, args.n).items():
        print(f"  {name}: {ms:.1f} ms")


if __name__ == "__main__":
    main()
