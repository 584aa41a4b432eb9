"""The plain baseline every comparison carries: cached pooled embeddings + field photos -> baseline_* metrics and its test predictions.

A logistic regression with scikit-learn's defaults (L2, C = 1) on the standardised pooled embedding of
the original training images; "neither" by the distance to the nearer class mean (the
embedding_distance score), its threshold fitted on validation as the pipeline's
(metrics.reject_threshold); photos resized straight to the input size. The simplest recipe on the same frozen
features: the pipeline's own head, "neither" score and photo resizing must beat it on every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pipeline.metrics import binary_metrics, field_metrics, neither_auroc, neither_metrics, reject_threshold
from pipeline.served.scores import DECISION_THRESHOLD, answers, embedding_distance

PREFIX = "baseline_"


def fit(train_vectors: np.ndarray, y_train: np.ndarray):
    """The baseline classifier: pooled embeddings -> P(second class)."""
    with threadpool_limits(1, user_api="blas"):  # twice as fast as two threads, as heads.fit_logistic
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train_vectors, y_train)


def measure(vectors: dict[str, np.ndarray], y: dict[str, np.ndarray], stats: dict, field: tuple | None, classes: list[str], reject_class: str):
    """Fit on train, choose the threshold on val, measure test and the field photos.

    vectors: split -> pooled embeddings (train, val, test, other_val, other_test); y: split -> labels
    (1: second class); field: (pooled embeddings of the photos resized straight, their labels) or None.
    Returns (baseline_* metrics, (p, score) of test then other_test, for compare's bootstrap).
    """
    model = fit(vectors["train"], y["train"])
    p = {name: model.predict_proba(x)[:, 1] for name, x in vectors.items()}
    score = {name: embedding_distance(x, stats) for name, x in vectors.items()}
    right = (p["val"] >= DECISION_THRESHOLD) == (y["val"] == 1)
    threshold = reject_threshold(score["val"], right, y["val"], score["other_val"])
    metrics = {
        **binary_metrics(y["val"], p["val"], "val"),
        **binary_metrics(y["test"], p["test"], "test"),
        "val_neither_auroc": neither_auroc(score["val"], score["other_val"]),
        **neither_metrics(y["test"], p["test"], score["test"], score["other_test"], threshold),
        "neither_threshold": threshold,
    }
    if field is not None:
        embeddings, labels = field
        p_field = model.predict_proba(embeddings)[:, 1]
        found = answers(p_field, embedding_distance(embeddings, stats), threshold, classes)
        metrics.update(field_metrics(labels, found, p_field, classes, reject_class))
    test = (np.r_[p["test"], p["other_test"]], np.r_[score["test"], score["other_test"]])
    return {PREFIX + k: float(v) for k, v in metrics.items()}, test


def predictions(test_rows: pd.DataFrame, test: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    """The baseline's test predictions in evaluate's predictions.csv layout (what compare bootstraps)."""
    p, score = test
    return test_rows.assign(p_positive=p, neither_score=score)[["path", "label", "p_positive", "neither_score"]]
