"""Stage `evaluate@<backbone>`: models/<backbone>/ + embeddings/<backbone>/ + splits.csv + data/ + the field photos ->
metrics/<backbone>.json + evaluation/<backbone>/ (serving/ (the ServingSettings), predictions.csv, field_predictions.csv,
baseline_predictions.csv, plots/).

Fits on validation what serving applies: the temperature that calibrates the probabilities (kept
only if it lowers the calibration error) and the "neither" score and threshold (the score that
best separates the reject-class validation images, the threshold with the best validation three-way
accuracy, each class weighted alike). Then measures everything on test, and on the real photos of paths.field
(field_*), which nothing is fitted or chosen on. The splits are scored by the model's heads on the
embed stage's cached feature maps, so no backbone runs over the team data here. The same metrics dict goes to metrics/<backbone>.json (DVC)
and to the backbone's MLflow run, with the plots as artifacts. On small data (cross_validation.max_images)
it also cross-validates the heads over train+val (cv_*, pipeline/cross_validation.py) and chooses the
"neither" score on that. The plain baseline (pipeline/baseline.py) is measured beside it on the same
cached embeddings (baseline_*), so every comparison shows what the recipe gains over it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

# isort: off
from pipeline import quiet_tensorflow  # noqa: F401  (first: TensorFlow starts up without chatter)

# isort: on
import keras
import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline import baseline, calibration, config, gradcam, plots, store, tracking
from pipeline.cli import main_of
from pipeline.cross_validation import cross_validate, is_small
from pipeline.embeddings import Embeddings
from pipeline.features import decode
from pipeline.io import write_json
from pipeline.metrics import binary_metrics, field_metrics, neither_auroc, neither_metrics, reject_threshold
from pipeline.model import outputs_from_features
from pipeline.served.images import load_batch, load_folder
from pipeline.served.keras_runtime import Predictor
from pipeline.served.scores import DECISION_THRESHOLD, SCORES, apply_temperature, neither_score
from pipeline.served.settings import Outputs, ServingSettings
from pipeline.trained import TrainedModel

SPLITS = ("val", "test", "other_val", "other_test")
CACHE_CHECK_IMAGES = 8  # test images run through the whole saved model to check the cache matches it
CACHE_CHECK_TOLERANCE = 0.02  # largest gap in probability: the cache keeps float16 feature maps


def latency_ms(predictor: Predictor, views: np.ndarray, repeats: int = 20) -> float:
    """Mean wall time of the forward pass over one image's views, as served, after warm-up, in milliseconds."""
    for _ in range(3):
        predictor(views)
    start = time.perf_counter()
    for _ in range(repeats):
        predictor(views)
    return (time.perf_counter() - start) / repeats * 1000


def fit_serving(outputs: dict[str, Outputs], y: dict[str, np.ndarray], stats: dict, cv: dict) -> tuple[dict, dict, dict]:
    """The calibration serving applies, fitted on validation only -> (choices, calibrated p per split, every candidate score per split).

    The temperature is kept only where it lowers the validation calibration error. Of the
    "neither" scores, the one that best separates other_val from val is chosen (on small data: the
    best cross-validated one, cv); each candidate's threshold is fitted on balanced validation
    three-way accuracy by the one-standard-error rule (metrics.reject_threshold).
    """
    p_raw = {name: out.probability for name, out in outputs.items()}
    temperature = calibration.fit_temperature(p_raw["val"], y["val"])
    ece_raw = calibration.expected_calibration_error(y["val"], p_raw["val"])
    if calibration.expected_calibration_error(y["val"], apply_temperature(p_raw["val"], temperature)) >= ece_raw:
        temperature = 1.0
    p = {name: apply_temperature(p_raw[name], temperature) for name in outputs}
    scores = {
        score: {name: neither_score(score, p[name], out.other_probability, out.embedding, stats) for name, out in outputs.items()}
        for score in SCORES
    }
    val_aurocs = {score: neither_auroc(s["val"], s["other_val"]) for score, s in scores.items()}
    right = (p["val"] >= DECISION_THRESHOLD) == (y["val"] == 1)
    choose_on = {score: cv[f"cv_neither_auroc_{score}"] for score in scores} if cv else val_aurocs
    choices = {
        "temperature": temperature,
        "neither_score": max(choose_on, key=choose_on.get),
        "val_aurocs": val_aurocs,
        "thresholds": {score: reject_threshold(s["val"], right, y["val"], s["other_val"]) for score, s in scores.items()},
    }
    return choices, p, scores


def split_outputs(cfg: DictConfig, model: keras.Model, embeddings: Embeddings, splits: pd.DataFrame, predictor: Predictor) -> dict[str, Outputs]:
    """The model's outputs on every split: its heads on the cached feature maps, or, for a
    fine-tuned model (whose backbone no longer matches the cache), the whole model on the images."""
    if cfg.train.fine_tune_layers > 0:
        return {name: predictor(decode(splits, name, cfg, embeddings.source_size)) for name in SPLITS}
    outputs = {
        name: outputs_from_features(model, embeddings.features[name], embeddings.pooled(name, "avg"), cfg.train.extract_batch_size) for name in SPLITS
    }
    # The cache must describe this model: the saved model, images in, has to agree with it.
    whole = predictor(decode(splits, "test", cfg, embeddings.source_size, count=CACHE_CHECK_IMAGES)).probability
    gap = np.abs(whole - outputs["test"].probability[:CACHE_CHECK_IMAGES]).max()
    if gap > CACHE_CHECK_TOLERANCE:
        raise RuntimeError(f"the cached feature maps do not match the model (probabilities differ by {gap:.3f}): run `dvc repro` to embed again")
    return outputs


def evaluate(
    cfg: DictConfig, model: keras.Model, settings: ServingSettings, embeddings: Embeddings, splits: pd.DataFrame, out_dir: Path
) -> tuple[dict, ServingSettings]:
    """Score every split, fit what serving applies, measure it -> (metrics, the fitted settings)."""
    classes = list(cfg.data.classes)
    stats = settings.embedding_stats
    predictor = Predictor(model, cfg.train.extract_batch_size)
    outputs = split_outputs(cfg, model, embeddings, splits, predictor)
    y = {name: embeddings.labels[name].astype(int) for name in SPLITS}
    # Small data: figures over every train+val image held out in turn. Not for a fine-tuned model,
    # whose backbone the cached maps no longer describe.
    cv = cross_validate(cfg, embeddings) if is_small(embeddings, cfg) and not cfg.train.fine_tune_layers else {}
    choices, p, scores = fit_serving(outputs, y, stats, cv)
    chosen = choices["neither_score"]
    threshold = choices["thresholds"][chosen]
    settings = replace(
        settings,
        temperature=choices["temperature"],
        neither_score=chosen,
        reject_threshold=threshold,
        accept_rate=float((scores[chosen]["val"] <= threshold).mean()),
    )

    p_raw = {name: out.probability for name, out in outputs.items()}
    metrics = {
        **cv,
        **binary_metrics(y["val"], p["val"], "val"),
        **binary_metrics(y["test"], p["test"], "test"),
        **{f"{name}_ece_raw": calibration.expected_calibration_error(y[name], p_raw[name]) for name in ("val", "test")},
        **{f"{name}_ece": calibration.expected_calibration_error(y[name], p[name]) for name in ("val", "test")},
        **{f"val_neither_auroc_{score}": auroc for score, auroc in choices["val_aurocs"].items()},
        **{f"test_neither_auroc_{score}": neither_auroc(s["test"], s["other_test"]) for score, s in scores.items()},
        **neither_metrics(y["test"], p["test"], scores[chosen]["test"], scores[chosen]["other_test"], settings.reject_threshold),
        "latency_ms_per_image": latency_ms(predictor, np.repeat(decode(splits, "test", cfg, embeddings.source_size, count=1), len(settings.view_sizes), axis=0)),
    }
    metrics.update(score_field_set(cfg, predictor, settings, choices["thresholds"], out_dir))

    test = pd.concat([splits[splits.split == name] for name in ("test", "other_test")])  # the order of p below
    metrics.update(measure_baseline(cfg, predictor, settings, embeddings, test, out_dir))
    test.assign(
        p_positive=np.r_[p["test"], p["other_test"]],
        neither_score=np.r_[scores[chosen]["test"], scores[chosen]["other_test"]],
    )[["path", "label", "p_positive", "neither_score"]].to_csv(out_dir / "predictions.csv", index=False)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots.curves(plot_dir, y["test"], p["test"], p_raw["test"], classes)
    test_paths = list(splits[splits.split == "test"].path)

    def where_it_looked(indices: list[int], answers: list[str]) -> np.ndarray:
        images = load_batch([test_paths[i] for i in indices], cfg.backbone.input_size, cfg.data.max_pixels, source_size=settings.view_sizes[0])
        return gradcam.heatmaps(model, images, answers, classes)

    plots.worst_mistakes(plot_dir, test_paths, y["test"], p["test"], classes, where_it_looked)
    return metrics, settings


def field_photos(cfg: DictConfig, settings: ServingSettings, view_sizes: list[int | None]):
    """The real photos of paths.field in the known and reject-class folders -> (images (n, views, ...), labels, paths), or None if there are none."""
    field = store.project_root() / cfg.paths.field  # an absolute path stays as it is
    images, labels, paths = load_folder(field, [*cfg.data.classes, cfg.data.reject_class], settings.input_size, view_sizes, settings.max_pixels)
    if not len(images):
        print(f"evaluate: no field photos under {field}: field_* metrics skipped")
        return None
    return images, labels, paths


def score_field_set(cfg: DictConfig, predictor: Predictor, settings: ServingSettings, thresholds: dict, out_dir: Path) -> dict:
    """The real photos of paths.field, answered as served -> field_* metrics and field_predictions.csv.

    Nothing is fitted or chosen on them: this only measures how the team data carries over to
    photos people take. Each candidate "neither" score is also reported with its own validation
    threshold (field_three_way_accuracy_<score>), for comparison.
    """
    photos = field_photos(cfg, settings, settings.view_sizes)
    if photos is None:
        pd.DataFrame(columns=["path", "label", "answer"]).to_csv(out_dir / "field_predictions.csv", index=False)  # a declared output
        return {}
    images, labels, paths = photos
    out = predictor(images.reshape(-1, *images.shape[2:])).mean_over_views(images.shape[1])
    metrics = {}
    for score in SCORES:
        candidate = replace(settings, neither_score=score, reject_threshold=thresholds[score])
        rows = candidate.verdicts(out)
        found = field_metrics(labels, rows.answer, rows[f"p_{settings.classes[1]}"], settings.classes, cfg.data.reject_class)
        metrics[f"field_three_way_accuracy_{score}"] = found["field_three_way_accuracy"]
        if score == settings.neither_score:
            metrics.update(found)
            rows.insert(0, "label", labels)
            rows.insert(0, "path", paths)
            rows.to_csv(out_dir / "field_predictions.csv", index=False)
    return metrics


def measure_baseline(cfg: DictConfig, predictor: Predictor, settings: ServingSettings, embeddings: Embeddings, test_rows: pd.DataFrame, out_dir: Path) -> dict:
    """The plain baseline (pipeline/baseline.py) on the same cached embeddings -> baseline_* metrics and baseline_predictions.csv."""
    photos = field_photos(cfg, settings, [None])  # resized straight to the input size
    field = None if photos is None else (predictor(photos[0][:, 0]).embedding, photos[1])
    names = ("train", *SPLITS)
    stats = settings.embedding_stats
    metrics, test = baseline.measure(
        {name: embeddings.pooled(name, "avg") for name in names}, {name: embeddings.labels[name].astype(int) for name in names},
        stats, field, settings.classes, settings.reject_class,
    )
    baseline.predictions(test_rows, test).to_csv(out_dir / "baseline_predictions.csv", index=False)
    return metrics


def untrained_settings(cfg: DictConfig, trained: TrainedModel) -> ServingSettings:
    """What train handed over (input, weights, embedding statistics), before anything is fitted here."""
    handover = trained.handover()
    weights = handover.weights
    return ServingSettings(
        classes=list(cfg.data.classes),
        reject_class=cfg.data.reject_class,
        input_size=cfg.backbone.input_size,
        source_size=handover.source_size,
        photo_resize=cfg.data.photo_resize,
        max_pixels=cfg.data.max_pixels,
        weights=weights.describe(),
        weights_meaningful=weights.meaningful,
        temperature=1.0,
        neither_score=SCORES[0],
        reject_threshold=float("inf"),
        accept_rate=1.0,
        embedding_stats=trained.embedding_stats(),
    )


def run(cfg: DictConfig) -> dict:
    trained = TrainedModel(Path(cfg.paths.models) / cfg.backbone.name)
    out_dir = Path(cfg.paths.evaluation) / cfg.backbone.name
    out_dir.mkdir(parents=True, exist_ok=True)
    # In the backbone's run from the start: should this stage fail, the run ends FAILED with the error as a tag.
    with tracking.backbone_run(cfg, trained.handover().run_id):
        embeddings = Embeddings.load(Path(cfg.paths.embeddings) / cfg.backbone.name)
        metrics, settings = evaluate(cfg, trained.load_model(), untrained_settings(cfg, trained), embeddings, pd.read_csv(cfg.paths.splits), out_dir)
        metrics["model_size_mb"] = trained.model_file.stat().st_size / 1e6
        plots.training_curves(out_dir / "plots", trained.history())
        settings.save(out_dir / "serving")
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(out_dir / "serving"), "serving")
        mlflow.log_artifacts(str(out_dir / "plots"), "plots")
    write_json(config.metrics_file(cfg, cfg.backbone.name), metrics)  # last: its presence means the stage finished
    print(f"evaluate: {cfg.backbone.name}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return metrics


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
