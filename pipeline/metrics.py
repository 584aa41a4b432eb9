"""Metric definitions shared by evaluate and register: labels + probabilities -> a flat dict."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from pipeline.served.scores import DECISION_THRESHOLD, NEITHER


def binary_metrics(y_true: np.ndarray, p_positive: np.ndarray, prefix: str) -> dict[str, float]:
    """Accuracy, precision, recall, F1, ROC AUC, log loss and the confusion matrix at the decision threshold."""
    y_pred = (p_positive >= DECISION_THRESHOLD).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    values = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, zero_division=0),
        "recall": skm.recall_score(y_true, y_pred, zero_division=0),
        "f1": skm.f1_score(y_true, y_pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y_true, p_positive) if len(set(y_true)) == 2 else float("nan"),
        "log_loss": skm.log_loss(y_true, np.clip(p_positive, 1e-7, 1 - 1e-7), labels=[0, 1]),
        "true_negatives": tn,
        "false_positives": fp,
        "false_negatives": fn,
        "true_positives": tp,
    }
    # 95% intervals of the two scores a champion is chosen on, so a promotion can tell a gain from noise.
    values["accuracy_low"], values["accuracy_high"] = proportion_confint(values["accuracy"], len(y_true))
    values["roc_auc_low"], values["roc_auc_high"] = auc_interval(values["roc_auc"], int((y_true == 1).sum()), int((y_true == 0).sum()))
    return {f"{prefix}_{k}": float(v) for k, v in values.items()}


def auc_interval(auc: float, positives: int, negatives: int, z: float = 1.96) -> tuple[float, float]:
    """Hanley and McNeil's (1982) 95% interval of an ROC AUC from its two class counts, clipped to [0, 1]."""
    if not positives or not negatives or np.isnan(auc):
        return float("nan"), float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    half = z * np.sqrt(max(variance, 0.0))
    return max(auc - half, 0.0), min(auc + half, 1.0)


def reject_threshold(known_scores: np.ndarray, known_right: np.ndarray, known_labels: np.ndarray, other_scores: np.ndarray) -> float:
    """The "neither" threshold: the lowest whose balanced three-way accuracy on validation is within
    one standard error of the best (the one-standard-error rule of CART and glmnet).

    Balanced three-way accuracy is the mean, over each known class and the reject class, of the share
    answered right (a known image must be accepted and classified right, a reject-class one answered
    "neither"); balanced because the classes' shares in the team data are an accident of collection
    (the reject folder is a sixth of it), not what people will send. Its maximum sits on a plateau
    that is flat to within noise (benchmarks/README.md, section 10), so the best point alone is
    chance; of the thresholds validation cannot tell apart, the lowest answers "neither" most, the
    safer mistake for photos of things the model was never shown. The threshold is halfway to the
    next score up, so no validation image sits on it (where a runtime's rounding would flip it).
    """
    candidates = np.unique(np.r_[known_scores, other_scores])
    accepted = known_scores[None, :] <= candidates[:, None]  # (threshold, image)
    per_class = [(accepted[:, known_labels == c] & known_right[known_labels == c]).mean(axis=1) for c in np.unique(known_labels)]
    per_class.append((other_scores[None, :] > candidates[:, None]).mean(axis=1))
    shares = np.stack(per_class)  # (class, threshold)
    counts = np.array([*(np.sum(known_labels == c) for c in np.unique(known_labels)), len(other_scores)])
    balanced = shares.mean(axis=0)
    best = int(np.argmax(balanced))
    standard_error = np.sqrt(np.sum(shares[:, best] * (1 - shares[:, best]) / counts)) / len(counts)
    chosen = int(np.flatnonzero(balanced >= balanced[best] - standard_error)[0])
    if chosen + 1 == len(candidates):
        return float(candidates[chosen])
    return float((candidates[chosen] + candidates[chosen + 1]) / 2)


def proportion_confint(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion p observed on n items."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(centre - half), float(centre + half)


def neither_auroc(known_scores: np.ndarray, other_scores: np.ndarray) -> float:
    """How well a "neither" score ranks reject-class images above known-class ones (0.5: not at all)."""
    is_other = np.r_[np.zeros(len(known_scores)), np.ones(len(other_scores))]
    return float(skm.roc_auc_score(is_other, np.r_[known_scores, other_scores]))


def neither_metrics(
    y_known: np.ndarray, p_known: np.ndarray, known_scores: np.ndarray, other_scores: np.ndarray, threshold: float
) -> dict[str, float]:
    """The three-way answer on known-class test images plus reject-class ones."""
    is_other = np.r_[np.zeros(len(known_scores)), np.ones(len(other_scores))]
    fpr, tpr, _ = skm.roc_curve(1 - is_other, -np.r_[known_scores, other_scores])  # known is the positive class
    accepted = known_scores <= threshold
    known_correct = accepted & ((p_known >= DECISION_THRESHOLD) == (y_known == 1))
    values = {
        "neither_auroc": neither_auroc(known_scores, other_scores),
        "neither_fpr_at_95_tpr": fpr[np.searchsorted(tpr, 0.95)],
        "neither_rate_on_other": (other_scores > threshold).mean(),
        "three_way_accuracy": (known_correct.sum() + (other_scores > threshold).sum()) / len(is_other),
        "accepted_share": accepted.mean(),
        "accepted_accuracy": known_correct.sum() / max(accepted.sum(), 1),
    }
    return {f"test_{k}": float(v) for k, v in values.items()}


def field_metrics(labels: np.ndarray, answers: np.ndarray, p_positive: np.ndarray, classes: list[str], reject_class: str) -> dict[str, float]:
    """Real photos (the field set): how often a person gets the right answer.

    accuracy: the more probable known class is right, on known-class photos; known_answered_right:
    the answer is the photo's own class ("neither" counts wrong); three_way_accuracy: the same over
    all photos, "neither" right for reject-class ones.
    """
    labels, answers = np.asarray(labels), np.asarray(answers)
    known = labels != reject_class
    likelier = np.where(np.asarray(p_positive) >= DECISION_THRESHOLD, classes[1], classes[0])
    values = {
        "images": len(labels),
        "accuracy": (likelier[known] == labels[known]).mean(),
        "known_answered_right": (answers[known] == labels[known]).mean(),
        "neither_rate_on_other": (answers[~known] == NEITHER).mean(),
        "three_way_accuracy": (answers == np.where(known, labels, NEITHER)).mean(),
    }
    return {f"field_{k}": float(v) for k, v in values.items()}
