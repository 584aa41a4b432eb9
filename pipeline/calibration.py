"""Calibrated probabilities and the "neither" score: head outputs + pooled embeddings -> scores.

Used by evaluate (to fit and measure) and by the served model (to apply), so they cannot disagree.
Three "neither" scores are candidates; evaluate keeps the one that separates reject-class images
from known-class ones best on validation, and reports all three:
- max_probability: how unsure the head is, 0.5 - |p - 0.5|. Free, but a head trained on two
  classes is often sure about a third one.
- embedding_distance: Mahalanobis distance of the pooled backbone embedding to the nearest class
  mean (shared, shrunk covariance of the training embeddings). Sees how unlike the training images
  an input is, whatever the head says.
- other_probability: P(reject class) from the "neither" head, trained on reject-class images
  against known ones (outlier exposure). Learns what "neither" looks like, as far as the
  reject-class folder shows it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

SCORES = ("max_probability", "embedding_distance", "other_probability")
NEITHER = "neither"  # the answer for an image above the "neither" threshold
DECISION_THRESHOLD = 0.5  # P(second class) at or above which the answer is the second class


def fit_embedding_stats(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Class means and the precision of the shared within-class covariance, shrunk (Ledoit-Wolf)
    because there are often fewer training images than embedding dimensions."""
    from sklearn.covariance import LedoitWolf

    classes = np.unique(labels)
    means = np.stack([embeddings[labels == c].mean(axis=0) for c in classes])
    centred = embeddings - means[np.searchsorted(classes, labels)]
    # The shrunk covariance is positive definite: a plain inverse, not LedoitWolf's eigendecomposition
    # (pinvh), which took 4 s at 2,048 dimensions.
    covariance = LedoitWolf(store_precision=False).fit(centred).covariance_
    return {"means": means, "precision": np.linalg.inv(covariance)}


def embedding_distance(embeddings: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """Mahalanobis distance to the nearest class mean."""
    distances = []
    for mean in stats["means"]:
        diff = embeddings - mean
        # (diff @ P) * diff summed per row: a BLAS matrix product; einsum over three operands was 100x slower.
        distances.append(np.sum((diff @ stats["precision"]) * diff, axis=1))
    return np.sqrt(np.maximum(np.min(distances, axis=0), 0))


def max_probability(p_positive: np.ndarray) -> np.ndarray:
    return 0.5 - np.abs(np.asarray(p_positive) - 0.5)


def neither_score(
    name: str, p_positive: np.ndarray, other_probability: np.ndarray, embeddings: np.ndarray, stats: dict[str, np.ndarray]
) -> np.ndarray:
    """The named "neither" score of each image: higher means less like the known classes."""
    if name == "max_probability":
        return max_probability(p_positive)
    if name == "other_probability":
        return np.asarray(other_probability, dtype="float64")
    return embedding_distance(embeddings, stats)


def answers(p_positive: np.ndarray, scores: np.ndarray, threshold: float, classes: list[str]) -> np.ndarray:
    """The answer per image: "neither" above the threshold, else the more probable known class."""
    return np.where(scores > threshold, NEITHER, np.where(np.asarray(p_positive) >= DECISION_THRESHOLD, classes[1], classes[0]))


def apply_temperature(p_positive: np.ndarray, temperature: float) -> np.ndarray:
    p = np.clip(np.asarray(p_positive, dtype="float64"), 1e-7, 1 - 1e-7)
    return expit(logit(p) / temperature)


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
