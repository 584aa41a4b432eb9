"""JPEG files from data/ -> images/second of our embedding extraction (decode + pipeline.model.embed) vs a bare compiled backbone forward, per backbone, and their ratio.

Run by hand from the repo root: `python benchmarks/bench_extraction.py [--images 128 --rounds 2 --backbones vgg16 resnet50 inception_v3]`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.config import backbone_spec, compose
from pipeline.forward import embed, keras_forward
from pipeline.model import build_backbone, build_extractor
from pipeline.served.images import load_batch

ROOT = Path(__file__).resolve().parent.parent


def ours(extractor, paths, size: int, batch: int) -> float:
    """Seconds for what pipeline.stages.embed does per split: decode the JPEGs, then embed them."""
    start = time.perf_counter()
    embed(keras_forward(extractor), load_batch(paths, size), batch)
    return time.perf_counter() - start


def bare(forward, inputs: np.ndarray, batch: int) -> float:
    """Seconds for the backbone alone: compiled forward, inputs already decoded and preprocessed in memory."""
    start = time.perf_counter()
    for i in range(0, len(inputs), batch):
        forward(tf.constant(inputs[i : i + batch])).numpy()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=128, help="images per backbone (split over the three classes)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per side; the best is kept")
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "vgg16", "resnet50", "inception_v3"])
    args = parser.parse_args()

    files = [sorted((ROOT / "data" / c).glob("*.jpg")) for c in ("airplane", "automobile", "other")]
    paths = [f for group in zip(*files) for f in group][: args.images]  # classes interleaved
    rows = []
    for name in args.backbones:
        # The backbone's full input size (the offline preset shrinks it), random weights (no download).
        cfg = compose([f"backbone={name}", f"backbones.{name}.weights=null"])
        spec = backbone_spec(cfg)
        batch = cfg.train.extract_batch_size
        keras.utils.set_random_seed(0)
        backbone = build_backbone(spec)
        backbone.trainable = False
        extractor = build_extractor(spec, backbone)
        forward = tf.function(lambda x, backbone=backbone: backbone(x, training=False))

        preprocess = importlib.import_module(f"keras.applications.{spec.module}").preprocess_input
        inputs = preprocess(load_batch(paths, spec.input_size).astype("float32"))
        # Untimed warm-up: trace both sides once, as a long extraction run amortises it.
        embed(keras_forward(extractor), load_batch(paths[:batch], spec.input_size), batch)
        forward(tf.constant(inputs[:batch]))

        times = {"ours": [], "bare": []}
        for _ in range(args.rounds):  # alternate so that load from other processes hits both sides alike
            times["ours"].append(ours(extractor, paths, spec.input_size, batch))
            times["bare"].append(bare(forward, inputs, batch))
        rate = {side: len(paths) / min(t) for side, t in times.items()}
        rows.append((name, spec.input_size, rate["ours"], rate["bare"], rate["ours"] / rate["bare"], times))
        keras.backend.clear_session()

    print(f"\n{len(paths)} images per backbone, batch {batch}, random weights, best of {args.rounds} rounds; "
          f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'backbone':13s} {'size':>4s} {'ours img/s':>10s} {'bare img/s':>10s} {'ours/bare':>9s}  rounds (s)")
    for name, size, mine, theirs, ratio, times in rows:
        detail = "  ".join(f"{k} " + "/".join(f"{t:.1f}" for t in v) for k, v in times.items())
        print(f"{name:13s} {size:4d} {mine:10.1f} {theirs:10.1f} {ratio:9.2f}  {detail}")
    print("target: ours/bare >= 0.90")


if __name__ == "__main__":
    main()
