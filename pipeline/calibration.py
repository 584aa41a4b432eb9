"""Fitting what serving applies: validation head outputs and training embeddings -> temperature, embedding statistics, calibration error.

The served side applies them (pipeline/served/scores.py); evaluate fits and measures them here.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from pipeline.served.scores import DECISION_THRESHOLD, EmbeddingStats, apply_temperature


def fit_embedding_stats(embeddings: np.ndarray, labels: np.ndarray) -> EmbeddingStats:
    """Class means and the precision of the shared within-class covariance, shrunk (Ledoit-Wolf)
    because there are often fewer training images than embedding dimensions."""
    from sklearn.covariance import LedoitWolf

    classes = np.unique(labels)
    means = np.stack([embeddings[labels == c].mean(axis=0) for c in classes])
    centred = embeddings - means[np.searchsorted(classes, labels)]
    # The shrunk covariance is positive definite: a plain inverse, not LedoitWolf's eigendecomposition
    # (pinvh), which took 4 s at 2,048 dimensions.
    covariance = LedoitWolf(store_precision=False).fit(centred).covariance_
    return EmbeddingStats(means, np.linalg.inv(covariance))


def fit_temperature(p_positive: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature that minimises the log loss of the validation predictions."""

    def log_loss(log_t: float) -> float:
        p = np.clip(apply_temperature(p_positive, np.exp(log_t)), 1e-7, 1 - 1e-7)
        return -np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))

    return float(np.exp(minimize_scalar(log_loss, bounds=(-3, 3), method="bounded").x))


def expected_calibration_error(y_true: np.ndarray, p_positive: np.ndarray, bins: int = 10) -> float:
    """Mean gap between confidence and accuracy of the predicted class, weighted by bin size."""
    p_positive = np.asarray(p_positive)
    confidence = np.maximum(p_positive, 1 - p_positive)
    correct = (p_positive >= DECISION_THRESHOLD) == (np.asarray(y_true) == 1)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gaps = [abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean() for b in range(bins) if (which == b).any()]
    return float(np.sum(gaps))
