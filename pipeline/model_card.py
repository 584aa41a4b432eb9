"""The registered version's description: its config, metrics, comparison rows and runtime checks -> a markdown model card."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from pipeline import config, tracking
from pipeline.io import read_json
from pipeline.served import openvino_runtime
from pipeline.served.settings import ServingSettings
from pipeline.trained import TrainedModel


def runtime_lines(cfg: DictConfig, settings: ServingSettings, checks: dict[str, openvino_runtime.Agreement]) -> str:
    """The model card's runtime section: what computes the answers and how far OpenVINO agreed with the evaluated Keras answers."""
    used = f"OpenVINO at {settings.openvino_precision}" if settings.runtime == "openvino" else "Keras (TensorFlow)"
    lines = [f"- Answers computed by {used} (`model_runtime` in every answer); the reference is Keras' answers as evaluate measured them."]
    for precision, found in checks.items():
        lines.append(
            f"- OpenVINO {precision} against the evaluated Keras answers on {found.images} validation images: probabilities within "
            f"{found.max_probability_difference:.2g}, \"neither\" score within {found.max_neither_score_difference:.2g}, "
            f"{found.flipped_answers} answers flipped (at most {cfg.register.max_flip_rate:.1%} allowed)."
        )
    return "\n".join(lines)


def recipe_lines(cfg: DictConfig, rows: pd.DataFrame) -> str:
    """The model card's recipe section: what was chosen, and its field figures beside the plain baseline's (compare's rows)."""
    head, neither = cfg.head, cfg.neither_head
    lines = [
        f"- Head `{head.name}` ({head.fit}), \"neither\" head fitted {neither.fit}, augmentation `{cfg.augment.name}`,"
        f" photos brought to the input size `{cfg.data.photo_resize}` (data.photo_resize); see benchmarks/README.md, \"Real photos: the ablation\".",
        "",
        "| real photos | binary (likelier class) | own class | \"neither\" on other | three-way (95% interval) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for recipe, name in (("pipeline", "this model"), ("baseline", "plain baseline")):
        r = rows.loc[recipe]
        lines.append(
            f"| {name} | {r.field_accuracy:.3f} | {r.field_known_answered_right:.3f} | {r.field_neither_rate_on_other:.3f} | "
            f"{r.field_three_way_accuracy:.3f} ({r.field_three_way_accuracy_low:.3f} to {r.field_three_way_accuracy_high:.3f}) |"
        )
    return "\n".join(lines)


def model_card(cfg: DictConfig, version: int, splits: pd.DataFrame, settings: ServingSettings, checks: dict) -> str:
    """What a user of this version should know, in markdown: data, metrics with intervals, limits."""
    metrics = read_json(config.metrics_file(cfg, cfg.backbone.name))
    table = pd.read_csv(Path(cfg.paths.comparison) / "comparison.csv")
    rows = table[table.backbone == cfg.backbone.name].set_index("recipe")
    comparison = rows.loc["pipeline"]
    sizes = splits.split.value_counts().to_dict()
    spec = cfg.backbone
    weights = TrainedModel(Path(cfg.paths.models) / spec.name).handover().weights
    warning = (
        ""
        if weights.meaningful
        else ("\n> **Demo model: random-init weights.** Its answers are not meaningful; it only shows that the pipeline runs.\n")
    )
    field = (
        f"- Real photos (`{cfg.paths.field}`, {metrics['field_images']:.0f} photos, never trained or tuned on): "
        f"airplane/automobile photos answered with their own class {metrics['field_known_answered_right']:.0%}, "
        f'`{cfg.data.reject_class}/` photos answered "neither" {metrics["field_neither_rate_on_other"]:.0%}, '
        f"three-way accuracy {metrics['field_three_way_accuracy']:.3f}."
        if "field_images" in metrics
        else "- Real photos: no field set was scored."
    )
    candidates = ", ".join(
        f"`{k.rpartition('val_neither_auroc_')[2]}` (AUROC {v:.3f})" for k, v in metrics.items() if k.startswith("val_neither_auroc_")
    )

    def interval(metric, figures=comparison):
        return f"{figures[metric]:.3f} (95% CI {figures[metric + '_low']:.3f} to {figures[metric + '_high']:.3f})"

    sureness = (
        f"- How sure: these rest on {comparison['test_images']:.0f} test images; the accuracy is known to about "
        f"+-{(comparison['accuracy_high'] - comparison['accuracy_low']) / 2:.3f}."
    )
    if "cv_accuracy" in metrics:
        sureness += (
            f" The data is small, so it was chosen on figures cross-validated over its {metrics['cv_images']:.0f} train+val"
            f" images ({metrics['cv_folds']:.0f} folds): accuracy {interval('cv_accuracy', metrics)}, ROC AUC {interval('cv_roc_auc', metrics)}."
        )

    return f"""# {cfg.mlflow.registered_model} v{version}

Tells **{cfg.data.classes[0]}**, **{cfg.data.classes[1]}** or **neither** from a photo.
{warning}
## Model
- Backbone: {spec.application}, input {spec.input_size}x{spec.input_size}; head `{cfg.head.name}`; augmentation `{cfg.augment.name}`.
- Weights: {weights.describe()}{f"; file `{weights.path}`, sha256 `{weights.sha256}`" if weights.path else ""}.
- Git commit `{tracking.git_commit()}`; data version (DVC) `{tracking.data_version()}`.
- Split sizes: {", ".join(f"{k} {v}" for k, v in sorted(sizes.items()))}.

## Metrics (test split)
- Accuracy {interval("accuracy")}; ROC AUC {interval("roc_auc")}.
- "Neither" AUROC {interval("neither_auroc")}; false-positive rate at 95% true-positive rate {metrics["test_neither_fpr_at_95_tpr"]:.3f}.
- Three-way accuracy {metrics["test_three_way_accuracy"]:.3f}; accuracy on accepted images {metrics["test_accepted_accuracy"]:.3f}.
- Expected calibration error {metrics["test_ece"]:.3f} (raw {metrics["test_ece_raw"]:.3f}); latency {metrics["latency_ms_per_image"]:.1f} ms per image on the build machine.
{field}
{sureness}

## Recipe
{recipe_lines(cfg, rows)}

## Runtime
{runtime_lines(cfg, settings, checks)}

## The "neither" answer
Score `{settings.neither_score}`, threshold {settings.reject_threshold:.4g}: an image scoring above it is answered
"neither". Chosen on validation among {candidates}. The threshold lets {settings.accept_rate:.0%} of {cfg.data.classes[0]}
and {cfg.data.classes[1]} validation images through; on the test split it flagged {metrics["test_neither_rate_on_other"]:.0%} of
`{cfg.data.reject_class}/` images. Probabilities are temperature-scaled (T = {settings.temperature:.3g}, fitted on validation).

## Known limits
- Trained on the images in `data/` only: what is unlike them (drawings, unusual viewpoints, other vehicles such as
  trucks or ships) may be answered with confidence, and "neither" only knows the kinds of image in `{cfg.data.reject_class}/`.
- The team dataset is 32x32 CIFAR-10, upscaled; a photo reaches {spec.input_size} pixels a side as `data.photo_resize`
  says ({cfg.data.photo_resize}: "both" answers with the mean over the photo brought down to the training resolution and resized straight).
- With random-init weights the scores show that the pipeline works, not how good a backbone is.
"""
