"""Calibration, answers, metrics, comparison intervals and the serving settings: fast, no TensorFlow."""

import numpy as np
import pandas as pd
import pytest

from pipeline.calibration import expected_calibration_error, fit_temperature
from pipeline.metrics import field_metrics, reject_threshold
from pipeline.served.scores import SCORES, EmbeddingStats, answers, apply_temperature, neither_score
from pipeline.served.settings import Outputs, ServingSettings
from pipeline.stages.compare import summarise

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
    stats = EmbeddingStats(means=np.array([[0.0, 0.0], [1.0, 1.0]]), precision=np.eye(2))
    p_automobile = np.array([0.99, 0.55])  # sure, unsure
    p_other = np.array([0.1, 0.9])
    embeddings = np.array([[1.0, 1.0], [5.0, -5.0]])  # on a class mean, far from both
    for name in SCORES:
        familiar, strange = neither_score(name, p_automobile, p_other, embeddings, stats)
        assert strange > familiar, name


def test_temperature_scaling_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-logits))).astype(int)  # labels drawn from calibrated probabilities
    overconfident = 1 / (1 + np.exp(-3 * logits))  # the same model, three times too sure
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3, rel=0.15)
    assert expected_calibration_error(y, apply_temperature(overconfident, temperature)) < expected_calibration_error(y, overconfident)
    np.testing.assert_allclose(apply_temperature(overconfident, 1.0), overconfident, atol=1e-6)  # clipped at 1e-7


def test_comparison_intervals_hold_the_point_estimate():
    rng = np.random.default_rng(1)
    labels = np.array(["airplane"] * 50 + ["automobile"] * 50 + ["other"] * 30)
    p = np.r_[rng.uniform(0, 0.6, 50), rng.uniform(0.4, 1, 50), rng.uniform(0, 1, 30)]
    score = np.r_[rng.uniform(0, 0.5, 100), rng.uniform(0.3, 1, 30)]
    predictions = pd.DataFrame({"label": labels, "p_positive": p, "neither_score": score})
    row = summarise(predictions, "automobile", "other", seed=0)
    for name in ("accuracy", "roc_auc", "neither_auroc"):
        assert row[f"{name}_low"] <= row[name] <= row[f"{name}_high"], name
        assert row[f"{name}_high"] - row[f"{name}_low"] < 0.4  # 130 images: informative, not a blank


def test_serving_settings_round_trip_and_answer_as_evaluated(tmp_path):
    settings = ServingSettings(
        classes=CLASSES, input_size=224, source_size=32, max_pixels=1000, weights="imagenet (w.h5, sha256 0123)", weights_meaningful=True,
        temperature=2.0, neither_score="other_probability", reject_threshold=0.5, accept_rate=0.95,
        embedding_stats=EmbeddingStats(means=np.zeros((2, 3)), precision=np.eye(3)),
    )
    settings.save(tmp_path / "serving")
    loaded = ServingSettings.load(tmp_path / "serving")
    assert loaded.classes == CLASSES and loaded.temperature == 2.0 and loaded.neither_score == "other_probability"
    np.testing.assert_array_equal(loaded.embedding_stats.precision, np.eye(3))
    rows = loaded.verdicts(Outputs(np.array([0.9, 0.2, 0.9]), np.array([0.1, 0.1, 0.8]), np.zeros((3, 3))))
    assert list(rows.answer) == ["automobile", "airplane", "neither"]
    np.testing.assert_allclose(rows.p_automobile, apply_temperature(np.array([0.9, 0.2, 0.9]), 2.0))
    np.testing.assert_allclose(rows.p_airplane + rows.p_automobile, 1.0)


def test_the_neither_threshold_is_the_lowest_within_a_standard_error_of_the_best_balanced_accuracy():
    known = np.array([0.1, 0.2, 0.3, 0.9, 0.1, 0.2, 0.3, 0.4])  # "neither" scores of airplanes, then automobiles
    labels, right = np.array([0] * 4 + [1] * 4), np.ones(8, dtype=bool)
    other = np.array([0.85])  # one reject-class image weighs as much as each known class
    # Best at 0.4 (airplanes 3/4, automobiles 4/4, other 1/1 -> 0.917, standard error 0.072); 0.3
    # gives 3/4, 3/4, 1/1 -> 0.833, outside it. The threshold is halfway from 0.4 to the next score.
    assert reject_threshold(known, right, labels, other) == pytest.approx(0.625)
    # With many images per class the standard error is small and the best threshold is kept.
    many = np.repeat(known, 100), np.repeat(labels, 100), np.repeat(right, 100)
    assert reject_threshold(many[0], many[2], many[1], np.repeat(other, 100)) == pytest.approx(0.625)


def test_of_thresholds_validation_cannot_tell_apart_the_lowest_is_kept():
    rng = np.random.default_rng(0)
    known = rng.uniform(0, 0.3, 2000)
    labels, right = np.repeat([0, 1], 1000), np.ones(2000, dtype=bool)
    other = np.r_[rng.uniform(0, 0.3, 20), rng.uniform(0.5, 1, 980)]  # 2% of the others look known
    # Every threshold from 0.3 to 0.5 has the same balanced accuracy (1, 1, 0.98): the lowest of that
    # plateau is kept, less the few known images a standard error (0.0015) allows to answer "neither".
    assert 0.29 < reject_threshold(known, right, labels, other) < 0.3


def test_the_bootstraps_rank_auc_is_roc_auc_score():
    from sklearn.metrics import roc_auc_score

    from pipeline.stages.compare import rank_auc

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    for scores in (rng.normal(size=500) + labels, np.round(rng.normal(size=500), 1)):  # the second with many ties
        assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError):
        rank_auc(np.ones(5), np.arange(5))


def test_the_baseline_is_measured_on_every_split_and_the_field_photos():
    from pipeline import baseline
    from pipeline.calibration import fit_embedding_stats

    rng = np.random.default_rng(0)

    def split(n, label):  # class 0 near -1, class 1 near +1, reject class far off
        centre = {0: -1.0, 1: 1.0, 2: 6.0}[label]
        return rng.normal(centre, 1.0, size=(n, 4)), np.full(n, min(label, 1))

    vectors, y = {}, {}
    for name, n in (("train", 200), ("val", 60), ("test", 60)):
        (a, ya), (b, yb) = split(n // 2, 0), split(n // 2, 1)
        vectors[name], y[name] = np.r_[a, b], np.r_[ya, yb]
    for name in ("other_val", "other_test"):
        vectors[name], y[name] = split(30, 2)
    stats = fit_embedding_stats(vectors["train"], y["train"])
    field = (np.r_[split(10, 0)[0], split(10, 1)[0], split(10, 2)[0]], np.array(["airplane"] * 10 + ["automobile"] * 10 + ["other"] * 10))
    metrics, (p, score) = baseline.measure(vectors, y, stats, field, CLASSES, "other")
    assert metrics["baseline_val_accuracy"] > 0.8 and metrics["baseline_test_neither_auroc"] > 0.95
    assert metrics["baseline_field_images"] == 30 and metrics["baseline_field_three_way_accuracy"] > 0.8
    assert len(p) == len(score) == 90  # test, then other_test: the rows of baseline_predictions.csv


def test_auc_interval_is_as_wide_as_the_bootstrap_says():
    """Hanley and McNeil's interval against 2,000 bootstrap resamples of the same scores."""
    from sklearn.metrics import roc_auc_score

    from pipeline.metrics import auc_interval

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(300), np.ones(200)]
    p = np.r_[rng.normal(0, 1, 300), rng.normal(1.2, 1, 200)]
    auc = roc_auc_score(y, p)
    low, high = auc_interval(auc, 200, 300)
    draws = [roc_auc_score(y[i], p[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(2000))]
    boot_low, boot_high = np.percentile(draws, [2.5, 97.5])
    assert low < auc < high
    assert abs((high - low) - (boot_high - boot_low)) < 0.2 * (boot_high - boot_low)
    assert auc_interval(1.0, 10, 10) == (1.0, 1.0) and all(np.isnan(auc_interval(0.7, 0, 10)))
