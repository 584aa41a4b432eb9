"""Answers and field metrics: the "neither" rule and how real photos are counted."""

import numpy as np
import pytest

from pipeline.calibration import SCORES, answers, neither_score
from pipeline.metrics import field_metrics

CLASSES = ["airplane", "automobile"]


def test_answer_is_neither_above_the_threshold_else_the_likelier_class():
    got = answers(np.array([0.9, 0.1, 0.9, 0.5]), np.array([0.2, 0.2, 0.8, 0.3]), threshold=0.5, classes=CLASSES)
    assert list(got) == ["automobile", "airplane", "neither", "automobile"]


def test_field_metrics_count_neither_on_a_known_photo_as_wrong():
    labels = np.array(["airplane", "airplane", "automobile", "automobile", "other", "other"])
    given = np.array(["airplane", "neither", "automobile", "airplane", "neither", "automobile"])
    p_automobile = np.array([0.1, 0.2, 0.9, 0.4, 0.5, 0.9])
    metrics = field_metrics(labels, given, p_automobile, CLASSES, "other")
    assert metrics["field_images"] == 6
    assert metrics["field_accuracy"] == 0.75  # the likelier class: right on 3 of 4 known photos
    assert metrics["field_known_answered_right"] == 0.5  # the "neither" on an airplane is wrong
    assert metrics["field_neither_rate_on_other"] == 0.5
    assert metrics["field_three_way_accuracy"] == pytest.approx(3 / 6)


def test_every_neither_score_is_higher_for_the_less_familiar_image():
    stats = {"means": np.array([[0.0, 0.0], [1.0, 1.0]]), "precision": np.eye(2)}
    p_automobile = np.array([0.99, 0.55])  # sure, unsure
    p_other = np.array([0.1, 0.9])
    embeddings = np.array([[1.0, 1.0], [5.0, -5.0]])  # on a class mean, far from both
    for name in SCORES:
        familiar, strange = neither_score(name, p_automobile, p_other, embeddings, stats)
        assert strange > familiar, name
