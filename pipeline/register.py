"""Stage `register`: evaluation/*/metrics.json + models/ -> the best model registered in MLflow, champion.json.

The best backbone by a validation metric is logged as a pyfunc model and registered. The alias
`champion` moves to it only if it scores at least as well as the current champion on this same
validation split; the champion is re-scored here rather than trusting a number from another split.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from omegaconf import DictConfig, OmegaConf

from pipeline import config, tracking
from pipeline.io import read_json, write_json
from pipeline.metrics import binary_metrics
from pipeline.served_model import IMAGE_COLUMN, ImageClassifier

SERVING_PACKAGES = ("tensorflow-cpu", "keras", "pillow", "numpy", "pandas", "scikit-learn")


def pick_best(scores: dict[str, float], greater_is_better: bool) -> str:
    return (max if greater_is_better else min)(scores, key=scores.get)


def is_at_least_as_good(new: float, old: float, greater_is_better: bool) -> bool:
    return new >= old if greater_is_better else new <= old


def signature(classes: list[str]) -> ModelSignature:
    outputs = [ColSpec("string", "answer")]
    outputs += [ColSpec("double", f"p_{name}") for name in classes]
    outputs += [ColSpec("double", "neither_score"), ColSpec("double", "neither_threshold")]
    return ModelSignature(inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]), outputs=Schema(outputs))


def score_on_val(model_uri: str, cfg: DictConfig, splits: pd.DataFrame) -> float:
    """The registered model, scored the way the pipeline scores candidates, on this val split."""
    val = splits[splits.split == "val"]
    images = pd.DataFrame({IMAGE_COLUMN: [Path(p).read_bytes() for p in val.path]})
    predictions = mlflow.pyfunc.load_model(model_uri).predict(images)
    y_true = (val.label == cfg.data.classes[1]).to_numpy(dtype=int)
    return binary_metrics(y_true, predictions[f"p_{cfg.data.classes[1]}"].to_numpy(), "val")[cfg.register.metric]


def log_candidate(cfg: DictConfig, model_dir: Path, calibration: dict, example: bytes):
    """Log the candidate as a pyfunc model in its backbone's run and register a new version."""
    info = {
        "classes": list(cfg.data.classes),
        "input_size": cfg.backbone.input_size,
        "max_pixels": cfg.data.max_pixels,
        "reject_threshold": calibration["reject_threshold"],
        "backbone": cfg.backbone.name,
    }
    with tempfile.TemporaryDirectory() as tmp, tracking.backbone_run(cfg, run_file=model_dir / "run.json"):
        info_file = Path(tmp) / "model_info.json"
        info_file.write_text(json.dumps(info, indent=2))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=ImageClassifier(),
            artifacts={
                "keras_model": str(model_dir / "model.keras"),
                "model_info": str(info_file),
                "config": str(model_dir / "config.yaml"),
            },
            code_paths=[str(Path(__file__).parent)],
            signature=signature(list(cfg.data.classes)),
            input_example=pd.DataFrame({IMAGE_COLUMN: [example]}),
            pip_requirements=[f"{name}=={version(name)}" for name in SERVING_PACKAGES],
            registered_model_name=cfg.mlflow.registered_model,
        )


def run(cfg: DictConfig) -> dict:
    if not cfg.register.metric.startswith("val_"):
        raise config.ConfigError(f"register.metric must be a validation metric (val_*), not {cfg.register.metric!r}")
    scores = {
        name: read_json(Path(cfg.paths.evaluation) / name / "metrics.json")[cfg.register.metric]
        for name in cfg.compare
    }
    best = pick_best(scores, cfg.register.greater_is_better)
    cfg = config.validate(OmegaConf.to_container(cfg), best)
    model_dir = Path(cfg.paths.models) / best
    splits = pd.read_csv(cfg.paths.splits)
    calibration = read_json(Path(cfg.paths.evaluation) / best / "calibration.json")
    example = Path(splits[splits.split == "val"].path.iloc[0]).read_bytes()

    tracking.setup(cfg)
    client = MlflowClient()
    name, alias = cfg.mlflow.registered_model, cfg.mlflow.champion_alias
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        champion = None  # first registration: no champion yet
    champion_score = score_on_val(f"models:/{name}@{alias}", cfg, splits) if champion else None

    logged = log_candidate(cfg, model_dir, calibration, example)
    new_version = logged.registered_model_version
    for key, value in {**tracking.run_tags(cfg), cfg.register.metric: scores[best]}.items():
        client.set_model_version_tag(name, new_version, key, str(value))
    promote = champion is None or is_at_least_as_good(scores[best], champion_score, cfg.register.greater_is_better)
    if promote:
        client.set_registered_model_alias(name, alias, new_version)  # last step: the alias only ever names a whole model

    summary = {
        "registered_model": name,
        "version": int(new_version),
        "backbone": best,
        "metric": cfg.register.metric,
        "scores": scores,
        "previous_champion": int(champion.version) if champion else None,
        "previous_champion_score": champion_score,
        "champion": int(new_version) if promote else int(champion.version),
    }
    write_json(cfg.paths.champion, summary)
    verdict = "is the new champion" if promote else f"does not beat champion v{champion.version} ({champion_score:.4g})"
    print(f"register: {best} ({cfg.register.metric}={scores[best]:.4g}) -> {name} v{new_version}, {verdict}")
    return summary


def main() -> None:
    run(config.from_argv(description=__doc__))


if __name__ == "__main__":
    main()
