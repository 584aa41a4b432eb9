"""The label audit: labelled feature vectors -> out-of-fold probabilities -> cleanlab's likeliest label errors, as a ranked table and a contact sheet.

Confident learning (cleanlab): an image whose out-of-fold probability for its own label is low,
where the other classes' per-class thresholds say the model is confident of another, is a likely
label error. Out-of-fold, because a model scoring the images it was fitted on agrees with their labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

# label_issues.csv, the audit's hand-off to the page's "Label audit" tab (serve/app.py reads these
# columns): one row per likely label error, likeliest first.
ISSUE_COLUMNS = ["path", "split", "label", "suggested", "label_quality", "suggested_probability"]


def out_of_fold_probabilities(vectors: np.ndarray, labels: np.ndarray, folds: int, c: float, seed: int) -> np.ndarray:
    """(n, classes) probabilities, each row from a fit on the other folds."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    folding = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(1, user_api="blas"):  # one BLAS thread fits faster here (benchmarks/bench_fit_threads.py)
        return cross_val_predict(model, vectors, labels, cv=folding, method="predict_proba")


def label_issues(images: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """images (path, split) with integer labels and their out-of-fold probabilities -> the likely label
    errors (ISSUE_COLUMNS), likeliest first (lowest self-confidence)."""
    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    suggested = probabilities.argmax(axis=1)
    return pd.DataFrame({
        "path": images.path.to_numpy()[ranked],
        "split": images.split.to_numpy()[ranked],
        "label": [classes[k] for k in labels[ranked]],
        "suggested": [classes[k] for k in suggested[ranked]],
        "label_quality": quality[ranked],  # the out-of-fold probability of its own label
        "suggested_probability": probabilities[ranked, suggested[ranked]],
    }, columns=ISSUE_COLUMNS)


def contact_sheet(path: Path, issues: pd.DataFrame, count: int, root: Path) -> None:
    """The first `count` likely label errors in a grid, each with its label and the suggested one."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a build machine
    import matplotlib.pyplot as plt
    from PIL import Image

    shown = issues.head(count)
    columns = 5
    rows = max(1, -(-len(shown) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.3 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for rank, (axis, row) in enumerate(zip(axes.ravel(), shown.itertuples()), 1):
        with Image.open(root / row.path) as image:
            axis.imshow(image.convert("RGB"))
        axis.set_title(f"{rank}. labelled {row.label}\nlikely {row.suggested} ({row.suggested_probability:.2f})", fontsize=7)
    if shown.empty:
        axes[0, 0].set_title("no likely label errors", fontsize=9)
    figure.suptitle(f"The {len(shown)} likeliest label errors of {len(issues)} found (cleanlab, out-of-fold)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
