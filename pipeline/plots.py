"""Evaluation plots: labels, probabilities, history, images -> PNG files (MLflow artifacts, DVC image
plots) and the CSV data behind the curves (DVC data plots, so `dvc plots diff` compares runs)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    precision_recall_curve,
    roc_curve,
)

from pipeline.served.scores import DECISION_THRESHOLD  # noqa: E402


def save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def curves(out_dir: Path, y_true: np.ndarray, p_positive: np.ndarray, p_uncalibrated: np.ndarray, classes: list[str]) -> None:
    """Confusion matrix, ROC, precision-recall and reliability diagram of the test split."""
    y_pred = (p_positive >= DECISION_THRESHOLD).astype(int)
    names = np.array(classes)
    display = ConfusionMatrixDisplay.from_predictions(names[y_true], names[y_pred], labels=classes, colorbar=False)
    save(display.figure_, out_dir / "confusion_matrix.png")
    pd.DataFrame({"actual": names[y_true], "predicted": names[y_pred]}).to_csv(out_dir / "confusion.csv", index=False)

    save(RocCurveDisplay.from_predictions(y_true, p_positive, name=classes[1]).figure_, out_dir / "roc.png")
    fpr, tpr, _ = roc_curve(y_true, p_positive)
    pd.DataFrame({"fpr": fpr, "tpr": tpr}).to_csv(out_dir / "roc.csv", index=False)

    save(PrecisionRecallDisplay.from_predictions(y_true, p_positive, name=classes[1]).figure_, out_dir / "precision_recall.png")
    precision, recall, _ = precision_recall_curve(y_true, p_positive)
    pd.DataFrame({"recall": recall, "precision": precision}).to_csv(out_dir / "precision_recall.csv", index=False)

    figure, axes = plt.subplots(figsize=(5, 5))
    CalibrationDisplay.from_predictions(y_true, p_uncalibrated, n_bins=10, name="raw", ax=axes)
    CalibrationDisplay.from_predictions(y_true, p_positive, n_bins=10, name="temperature-scaled", ax=axes)
    save(figure, out_dir / "reliability.png")


def training_curves(out_dir: Path, history: pd.DataFrame) -> None:
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(9, 3.5))
    history.plot(x="epoch", y=[c for c in ("loss", "val_loss") if c in history], ax=loss, title="loss")
    history.plot(x="epoch", y=[c for c in ("accuracy", "val_accuracy") if c in history], ax=accuracy, title="accuracy")
    save(figure, out_dir / "training_curves.png")


def worst_mistakes(out_dir: Path, paths: list[str], y_true: np.ndarray, p_positive: np.ndarray, classes: list[str], heatmaps, count: int = 16) -> None:
    """The test images the model got most confidently wrong, with their true and predicted labels and,
    laid over each, where the model looked for its wrong answer (heatmaps(indices, answers): pipeline.gradcam)."""
    from PIL import Image

    from pipeline.gradcam import overlay

    error = np.abs(p_positive - y_true)
    worst = [i for i in np.argsort(-error)[:count] if error[i] > 0.5]
    predicted = [classes[int(p_positive[i] >= DECISION_THRESHOLD)] for i in worst]
    looked = heatmaps(worst, predicted) if worst else []
    columns = 4
    rows = max(1, -(-len(worst) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, i, answer, heatmap in zip(axes.ravel(), worst, predicted, looked):
        with Image.open(paths[i]) as image:
            axis.imshow(overlay(image, heatmap))
        axis.set_title(f"true {classes[y_true[i]]}\npred {answer} ({max(p_positive[i], 1 - p_positive[i]):.2f})", fontsize=8)
    if not worst:
        axes[0, 0].set_title("no mistakes on the test split", fontsize=9)
    save(figure, out_dir / "worst_mistakes.png")


def comparison_chart(path: Path, table: pd.DataFrame) -> None:
    """Each row's (backbone and recipe) test accuracy, ROC AUC and "neither" AUROC with 95% intervals, and each backbone's latency."""
    metrics = ["accuracy", "roc_auc", "neither_auroc"]
    figure, (scores, latency) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(table)
    for i, row in enumerate(table.itertuples()):
        x = np.arange(len(metrics)) + i * width
        values = np.array([getattr(row, m) for m in metrics])
        errors = np.array([[v - getattr(row, m + "_low"), getattr(row, m + "_high") - v] for m, v in zip(metrics, values)]).T
        scores.bar(x, values, width, yerr=errors, capsize=3, label=f"{row.backbone} ({row.recipe})")
    scores.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, ["test accuracy", "test ROC AUC", '"neither" AUROC'])
    scores.set_ylim(0, 1)
    scores.legend(loc="lower right")
    scores.set_title("test set, 95% bootstrap intervals")
    networks = table.drop_duplicates("backbone")  # a backbone's recipes share its network
    latency.bar(networks.backbone, networks.latency_ms_per_image, color="gray")
    latency.set_title("latency ms / image")
    latency.tick_params(axis="x", rotation=30)
    save(figure, path)
