"""The "neither" score and the answer: calibrated head outputs + pooled embeddings -> scores -> answers.

What the served model applies to the network's outputs; evaluate fits the numbers it takes
(pipeline/calibration.py) and measures with these same functions, so the two cannot disagree.
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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

SCORES = ("max_probability", "embedding_distance", "other_probability")
NEITHER = "neither"  # the answer for an image above the "neither" threshold
DECISION_THRESHOLD = 0.5  # P(second class) at or above which the answer is the second class


@dataclass(frozen=True)
class EmbeddingStats:
    """The training embeddings as the embedding_distance score sees them: train fits them
    (calibration.fit_embedding_stats) -> models/<backbone>/ -> evaluate -> ServingSettings -> the served model."""

    means: np.ndarray  # (classes, channels): each known class's mean pooled embedding
    precision: np.ndarray  # (channels, channels): inverse of the shared within-class covariance

    @property
    def channels(self) -> int:
        return self.means.shape[-1]

    def save(self, path: str | Path) -> None:
        np.savez(path, means=self.means, precision=self.precision)  # the file every version registered so far holds

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingStats:
        arrays = np.load(path)
        return cls(arrays["means"], arrays["precision"])

    @classmethod
    def empty(cls) -> EmbeddingStats:
        return cls(np.empty((0, 0)), np.empty((0, 0)))


def embedding_distance(embeddings: np.ndarray, stats: EmbeddingStats) -> np.ndarray:
    """Mahalanobis distance to the nearest class mean."""
    distances = []
    for mean in stats.means:
        diff = embeddings - mean
        # (diff @ P) * diff summed per row: a BLAS matrix product; einsum over three operands was 100x slower.
        distances.append(np.sum((diff @ stats.precision) * diff, axis=1))
    return np.sqrt(np.maximum(np.min(distances, axis=0), 0))


def max_probability(p_positive: np.ndarray) -> np.ndarray:
    return 0.5 - np.abs(np.asarray(p_positive) - 0.5)


def neither_score(
    name: str, p_positive: np.ndarray, other_probability: np.ndarray, embeddings: np.ndarray, stats: EmbeddingStats
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
