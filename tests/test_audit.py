"""The label audit's worker (pipeline.audit): real cleanlab over out-of-fold probabilities finds labels flipped on purpose."""

import numpy as np
import pandas as pd
import pytest

from pipeline.audit import ISSUE_COLUMNS, label_issues, out_of_fold_probabilities
from pipeline.errors import UserError
from pipeline.stages.audit import audit_folds

CLASSES = ["airplane", "automobile", "other"]


def test_flipped_labels_come_first():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 60)
    vectors = rng.normal(size=(180, 16)) + 4.0 * np.eye(3, 16)[truth]  # three well-separated clusters
    labels = truth.copy()
    flipped = rng.choice(180, size=6, replace=False)
    labels[flipped] = (truth[flipped] + 1) % 3
    images = pd.DataFrame({"path": [f"data/x/{i}.png" for i in range(180)], "split": "train"})

    issues = label_issues(images, labels, out_of_fold_probabilities(vectors, labels, folds=5, c=0.1, seed=0), CLASSES)

    assert list(issues.columns) == ISSUE_COLUMNS
    assert set(issues.path[:6]) == {f"data/x/{i}.png" for i in flipped}  # every flip, and first
    assert (issues.suggested[:6].to_numpy() == np.array(CLASSES)[truth[np.array([int(p.split("/")[-1][:-4]) for p in issues.path[:6]])]]).all()
    assert issues.label_quality.is_monotonic_increasing


def test_small_classes_get_fewer_folds_and_a_single_image_is_refused():
    assert audit_folds(np.array([0, 0, 0, 1, 1, 1, 2, 2]), CLASSES, folds=5) == 2
    with pytest.raises(UserError, match="other has 1"):
        audit_folds(np.array([0, 0, 1, 1, 2]), CLASSES, folds=5)
