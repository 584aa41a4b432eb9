"""Stage `evaluate@<backbone>`: models/<backbone>/ + splits.csv + data/ -> evaluation/<backbone>/
(metrics.json, calibration.json, predictions.csv, plots/).

Fits on validation what serving applies: the temperature that calibrates the probabilities (kept
only if it lowers the calibration error) and the "neither" score and threshold (the score that
best separates the reject-class validation images, the threshold that accepts ACCEPT_RATE of
known-class ones). Then measures everything on test. The same metrics dict goes to metrics.json
(DVC) and to the backbone's MLflow run, with the plots as artifacts.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline import calibration, config, plots, tracking
from pipeline.images import load_batch
from pipeline.io import write_json
from pipeline.metrics import binary_metrics, neither_auroc, neither_metrics, reject_threshold
from pipeline.model import Predictor

ACCEPT_RATE = 0.95  # share of known-class validation images the "neither" threshold lets through
SPLITS = ("val", "test", "other_val", "other_test")


def latency_ms(predictor: Predictor, image: np.ndarray, repeats: int = 20) -> float:
    """Mean wall time of one single-image forward pass, as served, after warm-up, in milliseconds."""
    for _ in range(3):
        predictor(image[None])
    start = time.perf_counter()
    for _ in range(repeats):
        predictor(image[None])
    return (time.perf_counter() - start) / repeats * 1000


def evaluate(cfg: DictConfig, model: keras.Model, stats: dict, splits: pd.DataFrame, out_dir: Path) -> tuple[dict, dict]:
    size, classes = cfg.backbone.input_size, list(cfg.data.classes)
    images, y, p_raw, pooled = {}, {}, {}, {}
    predictor = Predictor(model, cfg.train.extract_batch_size)
    for name in SPLITS:
        part = splits[splits.split == name]
        images[name] = load_batch(part.path, size, cfg.data.max_pixels, progress=f"decode {name}")
        y[name] = (part.label == classes[1]).to_numpy(dtype=int)
        p_raw[name], pooled[name] = predictor(images[name])

    # Temperature scaling, fitted on validation, kept only where it lowers the calibration error.
    temperature = calibration.fit_temperature(p_raw["val"], y["val"])
    ece = {
        "val_ece_raw": calibration.expected_calibration_error(y["val"], p_raw["val"]),
        "val_ece": calibration.expected_calibration_error(y["val"], calibration.apply_temperature(p_raw["val"], temperature)),
    }
    if ece["val_ece"] >= ece["val_ece_raw"]:
        temperature, ece["val_ece"] = 1.0, ece["val_ece_raw"]
    p = {name: calibration.apply_temperature(p_raw[name], temperature) for name in SPLITS}

    # The "neither" score that best separates other_val from val, and its threshold.
    scores = {
        score: {name: calibration.neither_score(score, p[name], pooled[name], stats) for name in SPLITS}
        for score in calibration.SCORES
    }
    val_aurocs = {score: neither_auroc(s["val"], s["other_val"]) for score, s in scores.items()}
    chosen = max(val_aurocs, key=val_aurocs.get)
    threshold = reject_threshold(scores[chosen]["val"], ACCEPT_RATE)

    metrics = {
        **binary_metrics(y["val"], p["val"], "val"),
        **binary_metrics(y["test"], p["test"], "test"),
        **ece,
        "test_ece_raw": calibration.expected_calibration_error(y["test"], p_raw["test"]),
        "test_ece": calibration.expected_calibration_error(y["test"], p["test"]),
        **{f"val_neither_auroc_{score}": auroc for score, auroc in val_aurocs.items()},
        **neither_metrics(y["test"], p["test"], scores[chosen]["test"], scores[chosen]["other_test"], threshold),
        "latency_ms_per_image": latency_ms(predictor, images["test"][0]),
    }
    fitted = {"temperature": temperature, "neither_score": chosen, "reject_threshold": threshold, "accept_rate": ACCEPT_RATE}

    test = pd.concat([splits[splits.split == name] for name in ("test", "other_test")])  # the order of p below
    test.assign(
        p_positive=np.r_[p["test"], p["other_test"]],
        neither_score=np.r_[scores[chosen]["test"], scores[chosen]["other_test"]],
    )[["path", "label", "p_positive", "neither_score"]].to_csv(out_dir / "predictions.csv", index=False)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots.curves(plot_dir, y["test"], p["test"], p_raw["test"], classes)
    plots.worst_mistakes(plot_dir, images["test"], y["test"], p["test"], classes)
    return metrics, fitted


def run(cfg: DictConfig) -> dict:
    model_dir = Path(cfg.paths.models) / cfg.backbone.name
    out_dir = Path(cfg.paths.evaluation) / cfg.backbone.name
    out_dir.mkdir(parents=True, exist_ok=True)
    model = keras.saving.load_model(model_dir / "model.keras")
    stats = dict(np.load(model_dir / "embedding_stats.npz"))
    metrics, fitted = evaluate(cfg, model, stats, pd.read_csv(cfg.paths.splits), out_dir)
    plots.training_curves(out_dir / "plots", pd.read_csv(model_dir / "history.csv"))
    with tracking.backbone_run(cfg, run_file=model_dir / "run.json"):
        mlflow.log_metrics(metrics)
        mlflow.log_dict(fitted, "calibration.json")
        mlflow.log_artifacts(str(out_dir / "plots"), "plots")
    write_json(out_dir / "calibration.json", fitted)
    write_json(out_dir / "metrics.json", metrics)  # last: its presence means the stage finished
    print(f"evaluate: {cfg.backbone.name}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return metrics


def main() -> None:
    run(config.from_argv(description=__doc__))


if __name__ == "__main__":
    main()
