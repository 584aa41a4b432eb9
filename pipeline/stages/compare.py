"""Stage `compare`: evaluation/<backbone>/ + models/<backbone>/ for every compared backbone ->
comparison/ (comparison.csv, comparison.md, comparison.png), also logged to an MLflow run.

Test figures with a 95% confidence interval from a bootstrap over the test set, so a user can see
which differences between backbones are real and which are noise; the real-photo (field) figures;
each backbone's weights source; on small data the cross-validated figures; in words, what the figures
rest on, and which backbone is the champion and why (pipeline/choice.py).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from scipy.stats import rankdata

from pipeline import config, plots, tracking
from pipeline.baseline import PREFIX as BASELINE
from pipeline.choice import Choice, choose
from pipeline.cli import main_of
from pipeline.io import read_json, write_atomic
from pipeline.metrics import proportion_confint
from pipeline.served.scores import DECISION_THRESHOLD
from pipeline.trained import TrainedModel

BOOTSTRAP_SAMPLES = 1000
# Real photos (evaluate's field set): how the team data carries over to photos people take.
FIELD_METRICS = ("field_accuracy", "field_known_answered_right", "field_neither_rate_on_other", "field_three_way_accuracy")
# Small data only (evaluate's cross-validation over train+val): what the champion is chosen on there.
CROSS_VALIDATED = tuple(f"cv_{m}{end}" for m in ("accuracy", "roc_auc") for end in ("", "_low", "_high")) + ("cv_images", "cv_folds")


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half): roc_auc_score's value, without its
    input validation, which took 20 of a bootstrap's 22 seconds."""
    positive = np.asarray(labels) == 1
    n_positive, n_negative = positive.sum(), len(positive) - positive.sum()
    if not n_positive or not n_negative:
        raise ValueError("one class only: no AUC")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def bootstrap_interval(statistic, groups: list[np.ndarray], seed: int) -> tuple[float, float]:
    """95% percentile interval of statistic(*groups), each group resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP_SAMPLES):
        resampled = [g[rng.integers(0, len(g), len(g))] for g in groups]
        try:
            values.append(statistic(*resampled))
        except ValueError:  # a resample with one class only has no AUC
            continue
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def summarise(predictions: pd.DataFrame, positive: str, reject_class: str, seed: int) -> dict[str, float]:
    known = predictions[predictions.label != reject_class]
    other = predictions[predictions.label == reject_class]
    y, p = (known.label == positive).to_numpy(dtype=int), known.p_positive.to_numpy()
    pairs = np.c_[y, p]  # resample label and prediction together

    def accuracy(rows):
        return float(((rows[:, 1] >= DECISION_THRESHOLD) == (rows[:, 0] == 1)).mean())

    def auc(rows):
        return rank_auc(rows[:, 0], rows[:, 1])

    def neither_auc(known_scores, other_scores):
        labels = np.r_[np.zeros(len(known_scores)), np.ones(len(other_scores))]
        return rank_auc(labels, np.r_[known_scores, other_scores])

    row = {}
    for name, statistic, groups in [
        ("accuracy", accuracy, [pairs]),
        ("roc_auc", auc, [pairs]),
        ("neither_auroc", neither_auc, [known.neither_score.to_numpy(), other.neither_score.to_numpy()]),
    ]:
        row[name] = statistic(*groups)
        row[f"{name}_low"], row[f"{name}_high"] = bootstrap_interval(statistic, groups, seed)
    return row


def compare(cfg: DictConfig) -> pd.DataFrame:
    """One row per compared backbone with the pipeline's recipe, then one per backbone with the plain
    baseline on the same embeddings (pipeline/baseline.py; its metrics are evaluate's baseline_*)."""
    rows = []
    for recipe, predictions_file, prefix in (("pipeline", "predictions.csv", ""), ("baseline", "baseline_predictions.csv", BASELINE)):
        for name in cfg.compare:
            evaluation, trained = Path(cfg.paths.evaluation) / name, TrainedModel(Path(cfg.paths.models) / name)
            predictions = pd.read_csv(evaluation / predictions_file)
            row = {"backbone": name, "recipe": recipe, "test_images": len(predictions)}
            row.update(summarise(predictions, cfg.data.classes[1], cfg.data.reject_class, cfg.data.seed))
            metrics = read_json(config.metrics_file(cfg, name))
            row.update({key: metrics.get(prefix + key, float("nan")) for key in (*FIELD_METRICS, "field_images")})
            row["field_three_way_accuracy_low"], row["field_three_way_accuracy_high"] = (
                proportion_confint(row["field_three_way_accuracy"], int(row["field_images"])) if row["field_images"] > 0 else (float("nan"),) * 2
            )
            row.update({key: metrics[key] for key in ("latency_ms_per_image", "model_size_mb")})  # the same network either way
            row.update({key: metrics.get(key, float("nan")) if not prefix else float("nan") for key in CROSS_VALIDATED})
            row["weights"] = trained.handover().weights.describe()
            rows.append(row)
    return pd.DataFrame(rows)


def against_baseline(table: pd.DataFrame, champion: str) -> str:
    """In words: the champion's field three-way accuracy against the baseline's on the same backbone."""
    ours, plain = (table[(table.backbone == champion) & (table.recipe == recipe)].iloc[0] for recipe in ("pipeline", "baseline"))
    if np.isnan(ours.field_three_way_accuracy):
        return "No field photos were scored, so the recipe is not compared with the baseline on real photos."
    figures = f"{interval(ours, 'field_three_way_accuracy')} against the baseline's {interval(plain, 'field_three_way_accuracy')}"
    if ours.field_three_way_accuracy_low > plain.field_three_way_accuracy_high:
        verdict = "beats it beyond both intervals"
    elif ours.field_three_way_accuracy > plain.field_three_way_accuracy:
        verdict = "is ahead of it, the intervals overlapping"
    elif ours.field_three_way_accuracy == plain.field_three_way_accuracy:
        verdict = "ties it"
    else:
        verdict = "is BEHIND it: the recipe does not earn its place on these photos"
    return f"On the field photos the champion ({champion}, the pipeline's recipe) {verdict}: three-way accuracy {figures} (95% Wilson intervals)."


def interval(r, metric: str) -> str:
    return f"{getattr(r, metric):.3f} [{getattr(r, metric + '_low'):.3f}, {getattr(r, metric + '_high'):.3f}]"


def what_it_rests_on(table: pd.DataFrame) -> str:
    """In words: how many photos the figures rest on and how wide their intervals are."""
    widest = (table.accuracy_high - table.accuracy_low).max() / 2
    words = (
        f"The test figures rest on {table.test_images.iloc[0]} test images: a test accuracy is known to about"
        f" +-{widest:.3f} (the widest half-interval above), so smaller differences between backbones are noise."
    )
    if table.cv_accuracy.notna().all():
        cv_widest = (table.cv_accuracy_high - table.cv_accuracy_low).max() / 2
        words += (
            f" The data is small, so the champion is chosen on figures cross-validated over the {table.cv_images.iloc[0]:.0f}"
            f" train+val images ({table.cv_folds.iloc[0]:.0f} folds: each image held out in turn, several times over);"
            f" their intervals (95%, corrected for the folds' overlap) are +-{cv_widest:.3f} at the widest."
            " More photos narrow them: four times as many roughly halves them."
        )
    return words


def markdown(table: pd.DataFrame, choice: Choice) -> str:
    lines = [
        "| backbone | recipe | weights | test accuracy | test ROC AUC | \"neither\" AUROC | field accuracy | field: own class | "
        "field: \"neither\" on other | field three-way | latency ms/image | model MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table.itertuples():
        cells = [interval(r, m) for m in ("accuracy", "roc_auc", "neither_auroc")]
        cells += [f"{getattr(r, m):.3f}" for m in FIELD_METRICS[:-1]] + [interval(r, "field_three_way_accuracy")]
        lines.append(f"| {r.backbone} | {r.recipe} | {r.weights} | {' | '.join(cells)} | {r.latency_ms_per_image:.1f} | {r.model_size_mb:.1f} |")
    pipeline_rows = table[table.recipe == "pipeline"]
    if pipeline_rows.cv_accuracy.notna().all():
        lines += ["", "| backbone | cross-validated accuracy | cross-validated ROC AUC |", "| --- | --- | --- |"]
        lines += [f"| {r.backbone} | {interval(r, 'cv_accuracy')} | {interval(r, 'cv_roc_auc')} |" for r in pipeline_rows.itertuples()]
    return "\n".join(lines) + (
        "\n\nRecipe: `pipeline` is the configured head, \"neither\" score and photo resizing; `baseline` is a plain"
        " logistic regression on the same backbone's pooled embedding, \"neither\" by the distance to the nearer class"
        " mean, photos resized straight (pipeline/baseline.py). Intervals: 95% bootstrap over the test set; the field"
        " three-way accuracy's is a Wilson interval over the photos. Field: the real photos of `paths.field`, scored only"
        " (own class: a known-class photo answered with its class; \"neither\" counts wrong). Random-init"
        " weights make a model whose answers are not meaningful.\n\n"
        f"{what_it_rests_on(pipeline_rows)}\n\n**Champion:** {choice.reason}\n\n{against_baseline(table, choice.backbone)}\n"
    )


def run(cfg: DictConfig) -> pd.DataFrame:
    out_dir = Path(cfg.paths.comparison)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = compare(cfg)
    write_atomic(out_dir / "comparison.csv", table.to_csv(index=False))
    report = markdown(table, choose(cfg))
    write_atomic(out_dir / "comparison.md", report)
    plots.comparison_chart(out_dir / "comparison.png", table)
    experiment_id = tracking.setup(cfg)
    with mlflow.start_run(experiment_id=experiment_id, run_name="comparison", tags={"comparison": ",".join(cfg.compare), **tracking.lineage_tags()}):
        mlflow.log_artifacts(str(out_dir), "comparison")
        mlflow.log_table(table, "comparison/comparison.json")
    print(report)
    return table


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
