"""Repeated stratified k-fold over train+val on the cached feature maps: Embeddings + config -> cv_* metrics with 95% intervals.

For small data (cross_validation.max_images): a validation split of a few dozen photos decides
little, so the figures the champion is chosen on come from every train+val image held out in turn.
Each fold refits both heads as train does (early stopping on a part of the fold's training images),
on the cached maps of the original images (no augmentation views: val has none), so it costs head
fits, not backbone runs. The test split is untouched: its figures stay the final word.
"""

from __future__ import annotations

import keras
import numpy as np
from omegaconf import DictConfig
from scipy import stats
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

from pipeline import calibration
from pipeline.embeddings import Embeddings
from pipeline.heads import fit_known_head, fit_other_head
from pipeline.metrics import neither_auroc, proportion_confint
from pipeline.served.scores import DECISION_THRESHOLD, SCORES, neither_score

STOPPING_SHARE = 0.15  # of a fold's training images, held back to stop its heads early (as val does in train)


def is_small(embeddings: Embeddings, cfg: DictConfig) -> bool:
    """Whether train+val (every folder) is small enough for its figures to come from cross-validation."""
    n = sum(len(embeddings.labels[name]) for name in ("train", "val", "other_train", "other_val"))
    return n <= cfg.cross_validation.max_images


def corrected_interval(scores: np.ndarray, held_out_share: float, photos: int) -> tuple[float, float, float]:
    """(mean, low, high): a 95% t-interval of the mean fold score with Nadeau and Bengio's correction,
    never narrower than a proportion's Wilson interval on the photos it rests on.

    The folds share most of their training images, so their scores are correlated and the plain
    standard error is far too small; the corrected variance adds held-out/training to 1/n. And folds
    that all score 1.0 have no spread at all, though 80 photos cannot show a perfect model: the
    Wilson interval says what that many photos can show.
    """
    n, mean = len(scores), float(np.mean(scores))
    variance = (1 / n + held_out_share / (1 - held_out_share)) * np.var(scores, ddof=1)
    half = float(stats.t.ppf(0.975, n - 1) * np.sqrt(variance))
    wilson_low, wilson_high = proportion_confint(mean, photos)
    return mean, max(min(mean - half, wilson_low), 0.0), min(max(mean + half, wilson_high), 1.0)


def cross_validate(cfg: DictConfig, embeddings: Embeddings) -> dict[str, float]:
    """cv_accuracy and cv_roc_auc of the head, and each "neither" score's cv AUROC, with their
    intervals; cv_images and cv_folds say what they rest on."""
    def joined(names: tuple[str, str], pooling: str) -> np.ndarray:
        return np.concatenate([embeddings.pooled(name, pooling) for name in names])

    known, other = ("train", "val"), ("other_train", "other_val")
    y = np.concatenate([embeddings.labels[name] for name in known])
    vectors = {  # pooled once for all folds: what each head and the embedding statistics read
        (side, pooling): joined(names, pooling)
        for side, names in (("known", known), ("other", other))
        for pooling in {cfg.head.pooling, cfg.neither_head.pooling, "avg"}
    }
    n_known = len(y)
    strata = np.r_[y, np.full(len(vectors["other", "avg"]), 2)]  # both known classes and the reject class
    folds = RepeatedStratifiedKFold(n_splits=cfg.cross_validation.folds, n_repeats=cfg.cross_validation.repeats, random_state=cfg.data.seed)

    found: dict[str, list[float]] = {}
    for fold, (fit_rows, held_rows) in enumerate(folds.split(strata, strata)):
        fit_k, held_k = fit_rows[fit_rows < n_known], held_rows[held_rows < n_known]
        fit_o, held_o = fit_rows[fit_rows >= n_known] - n_known, held_rows[held_rows >= n_known] - n_known
        for name, value in score_fold(cfg, vectors, y, (fit_k, held_k, fit_o, held_o), seed=cfg.train.seed + fold).items():
            found.setdefault(name, []).append(value)

    held_out_share = 1 / cfg.cross_validation.folds
    metrics = {"cv_images": float(len(strata)), "cv_folds": float(len(found["accuracy"]))}
    for name, scores in found.items():
        photos = n_known if name in ("accuracy", "roc_auc") else len(strata)  # what the score is measured on
        mean, low, high = corrected_interval(np.array(scores), held_out_share, photos)
        metrics.update({f"cv_{name}": mean, f"cv_{name}_low": low, f"cv_{name}_high": high})
    return metrics


def predict(head, x: np.ndarray) -> np.ndarray:
    """A head's probabilities, called eagerly: predict() would trace a new function for every fold's shape."""
    return np.asarray(head(x, training=False)).ravel()


def score_fold(cfg: DictConfig, vectors: dict, y: np.ndarray, rows: tuple, seed: int) -> dict[str, float]:
    """Fit both heads and the embedding statistics on a fold's training rows -> scores on its held-out rows."""
    fit_k, held_k, fit_o, held_o = rows
    keras.utils.set_random_seed(seed)  # the heads' initial weights and batch order: the same figures on every run

    def stopping_split(indices: np.ndarray, labels: np.ndarray):
        return train_test_split(indices, test_size=STOPPING_SHARE, stratify=labels, random_state=seed)

    head_pooling, other_pooling = cfg.head.pooling, cfg.neither_head.pooling
    train_k, stop_k = stopping_split(fit_k, y[fit_k])
    train_o, stop_o = stopping_split(fit_o, np.zeros(len(fit_o)))
    known_x = vectors["known", head_pooling]
    head, _ = fit_known_head(cfg, known_x[train_k], y[train_k], (known_x[stop_k], y[stop_k]), verbose=0)
    p = predict(head, known_x[held_k])

    known_n, other_n = vectors["known", other_pooling], vectors["other", other_pooling]
    other_head, _ = fit_other_head(cfg, [known_n[train_k]], [other_n[train_o]], known_n[stop_k], other_n[stop_o], verbose=0)
    other_p = {side: predict(other_head, x) for side, x in (("known", known_n[held_k]), ("other", other_n[held_o]))}
    embedding_stats = calibration.fit_embedding_stats(vectors["known", "avg"][fit_k], y[fit_k])

    y_held = y[held_k]
    scores = {
        "accuracy": float(((p >= DECISION_THRESHOLD) == (y_held == 1)).mean()),
        "roc_auc": neither_auroc(p[y_held == 0], p[y_held == 1]),  # the same rank statistic: class 1 above class 0
    }
    p_other = predict(head, vectors["other", head_pooling][held_o])  # max_probability reads it
    for name in SCORES:
        known_scores = neither_score(name, p, other_p["known"], vectors["known", "avg"][held_k], embedding_stats)
        other_scores = neither_score(name, p_other, other_p["other"], vectors["other", "avg"][held_o], embedding_stats)
        scores[f"neither_auroc_{name}"] = neither_auroc(known_scores, other_scores)
    return scores
