"""Stage `evaluate@<backbone>`: models/<backbone>/ + splits.csv + data/ -> evaluation/<backbone>/ (metrics.json, calibration.json).

Metrics on validation (what register chooses by) and test (what users read), the "neither"
threshold fitted on validation, and the latency of one image; the same dict goes to metrics.json
(DVC) and to the backbone's MLflow run.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

import pipeline.model  # noqa: F401  registers the custom layers the saved model uses
from pipeline import config, tracking
from pipeline.images import load_batch
from pipeline.io import write_json
from pipeline.metrics import binary_metrics, neither_metrics, reject_threshold
from pipeline.served_model import neither_score

ACCEPT_RATE = 0.95  # share of known-class validation images the "neither" threshold lets through


def latency_ms(model: keras.Model, image: np.ndarray, repeats: int = 20) -> float:
    """Mean wall time of one single-image forward pass, after warm-up, in milliseconds."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    batch = tf.constant(image[None])
    for _ in range(3):
        forward(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        forward(batch).numpy()
    return (time.perf_counter() - start) / repeats * 1000


def evaluate(cfg: DictConfig, model: keras.Model, splits: pd.DataFrame) -> tuple[dict, dict]:
    size, positive = cfg.backbone.input_size, cfg.data.classes[1]
    probabilities, labels, first_image = {}, {}, None
    for name in ("val", "test", "other_val", "other_test"):
        part = splits[splits.split == name]
        images = load_batch(part.path, size, cfg.data.max_pixels, progress=f"decode {name}")
        probabilities[name] = model.predict(images, batch_size=cfg.train.extract_batch_size, verbose=0).ravel()
        labels[name] = (part.label == positive).to_numpy(dtype=int)
        first_image = images[0] if first_image is None else first_image
    threshold = reject_threshold(neither_score(probabilities["val"]), ACCEPT_RATE)
    metrics = {
        **binary_metrics(labels["val"], probabilities["val"], "val"),
        **binary_metrics(labels["test"], probabilities["test"], "test"),
        **neither_metrics(labels["test"], probabilities["test"], probabilities["other_test"], threshold),
        "latency_ms_per_image": latency_ms(model, first_image),
    }
    calibration = {"neither_score": "0.5 - |p - 0.5|", "reject_threshold": threshold, "accept_rate": ACCEPT_RATE}
    return metrics, calibration


def run(cfg: DictConfig) -> dict:
    model_dir = Path(cfg.paths.models) / cfg.backbone.name
    out_dir = Path(cfg.paths.evaluation) / cfg.backbone.name
    model = keras.saving.load_model(model_dir / "model.keras")
    metrics, calibration = evaluate(cfg, model, pd.read_csv(cfg.paths.splits))
    with tracking.backbone_run(cfg, run_file=model_dir / "run.json"):
        mlflow.log_metrics(metrics)
        mlflow.log_dict(calibration, "calibration.json")
    write_json(out_dir / "calibration.json", calibration)
    write_json(out_dir / "metrics.json", metrics)  # last: its presence means the stage finished
    print(f"evaluate: {cfg.backbone.name}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return metrics


def main() -> None:
    run(config.from_argv(description=__doc__))


if __name__ == "__main__":
    main()
