"""The embed stage's engines on the same team images -> start-up and images/s of the local engine on Keras and on
OpenVINO, and of Spark local[2] (OpenVINO on its executors); then what a million images cost on N executors.

Each engine embeds the same splits at two sizes, alternating engines, each size's best of --rounds kept; the
per-image cost is the slope between the sizes and the start-up what is left of the smaller run. Run by hand
from the project root (data and weights pulled, Java 17 and requirements-spark.txt installed), on an otherwise
idle machine: python benchmarks/bench_embed_engines.py [--small 10] [--large 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# isort: off
from pipeline import quiet_tensorflow  # noqa: F401  (first: TensorFlow starts up without chatter)
# isort: on
import pandas as pd

from pipeline import config
from pipeline.features import embed_splits
from pipeline.forward import keras_forward, openvino_forward
from pipeline.model import build_backbone, build_extractor
from pipeline.spark_embed import embed_splits_on_spark
from pipeline.stages import ingest, split

ROOT = Path(__file__).resolve().parent.parent
ENGINES = {
    "local, keras": lambda cfg, splits, extractor: embed_splits(cfg, splits, keras_forward(extractor)),
    "local, openvino": lambda cfg, splits, extractor: embed_splits(cfg, splits, openvino_forward(extractor)),  # export and compile timed
    "spark local[2], openvino": embed_splits_on_spark,  # session, shipping the IR, the job and gathering timed
}


def split_of(folder: Path, per_class: int):
    """The offline preset's config and splits.csv for per_class images per folder, under folder."""
    paths = [f"paths.{key}={folder / key}" for key in ("manifest", "ingest_report", "splits", "embeddings")]
    cfg = config.compose(["preset=offline", f"data.max_per_class={per_class}", f"paths.data={ROOT / 'data'}",
                          f"paths.weights={ROOT / 'weights'}", *paths])  # embed.spark_master: local[2], the default
    ingest.run(cfg)
    split.run(cfg)
    return cfg, pd.read_csv(cfg.paths.splits)  # as the embed stage reads it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10, help="images per folder, the smaller size")
    parser.add_argument("--large", type=int, default=200, help="images per folder, the larger size")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        sizes = {n: split_of(Path(tmp) / str(n), n) for n in (args.small, args.large)}
        spec = config.backbone_spec(sizes[args.small][0])
        extractor = build_extractor(spec, build_backbone(spec, ROOT / "weights"))
        print(f"{spec.name} at {spec.input_size} px, batch {sizes[args.small][0].train.extract_batch_size}, {os.cpu_count()} cores", flush=True)
        best = {(engine, n): float("inf") for engine in ENGINES for n in sizes}
        for _ in range(args.rounds):
            for n, (cfg, splits) in sizes.items():
                for engine, run in ENGINES.items():
                    start = time.perf_counter()
                    run(cfg, splits, extractor)
                    seconds = time.perf_counter() - start
                    best[engine, n] = min(best[engine, n], seconds)
                    print(f"  {engine:26s} {len(splits):5d} images {seconds:7.1f} s  (load average {os.getloadavg()[0]:.2f})", flush=True)

    small, large = (len(sizes[n][1]) for n in (args.small, args.large))
    rates = {}
    print(f"\nbest of {args.rounds}; per image: the slope from {small} to {large} images")
    for engine in ENGINES:
        per_image = (best[engine, args.large] - best[engine, args.small]) / (large - small)
        startup = best[engine, args.small] - small * per_image
        rates[engine] = (startup, 1 / per_image)
        print(f"  {engine:26s} start-up {startup:5.1f} s, {1 / per_image:6.1f} images/s")
    keras_rate = rates["local, keras"][1]
    print("  " + ", ".join(f"{engine} {rate / keras_rate:.2f}x" for engine, (_, rate) in rates.items()) + " of local Keras' images/s")

    startup, rate = rates["spark local[2], openvino"]
    print("\n1,000,000 images, executors of this machine's kind (2 cores each, the rate measured on local[2]):")
    for executors in (1, 4, 16, 64):
        print(f"  {executors:3d} executors: {(startup + 1e6 / (rate * executors)) / 3600:6.2f} h")
    print(f"  the local engine on OpenVINO, one machine: {(rates['local, openvino'][0] + 1e6 / rates['local, openvino'][1]) / 3600:.2f} h")


if __name__ == "__main__":
    main()
