"""Noise: register's promotion rule (a challenger's metrics and a registered champion version -> promoted or
not, and why), and train's spread of a head over seeds (train.seeds)."""

import numpy as np
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from pipeline import config
from pipeline.stages.register import promotion
from pipeline.stages.train import seed_spread


@pytest.fixture(scope="module")
def cfg():
    return config.compose([])


def champion(latency_ms: float) -> ModelVersion:
    return ModelVersion("m", "1", 0, tags=[ModelVersionTag("latency_ms_per_image", str(latency_ms))])


CHALLENGER = {"val_roc_auc": 0.95, "val_roc_auc_low": 0.93, "val_roc_auc_high": 0.97, "latency_ms_per_image": 20.0}


@pytest.mark.parametrize(
    ("old_score", "old_latency", "promoted", "words"),
    [
        (0.90, 20.0, True, "better beyond noise"),  # below the interval: a real gain
        (0.99, 5.0, False, "worse beyond noise"),  # above it: a real loss, however cheap the challenger
        (0.94, 20.0, False, "within noise, and not cheaper"),  # inside: the champion stays...
        (0.96, 30.0, True, "within noise, and cheaper"),  # ...unless the challenger costs clearly less
        (0.96, 21.0, False, "not cheaper"),  # 5% faster is timing noise
    ],
)
def test_a_challenger_is_promoted_only_beyond_noise_or_within_it_and_cheaper(cfg, old_score, old_latency, promoted, words):
    found, why = promotion(cfg, CHALLENGER, "val_roc_auc", old_score, champion(old_latency))
    assert (found, words in why) == (promoted, True), why


def test_no_champion_or_no_interval(cfg):
    assert promotion(cfg, CHALLENGER, "val_roc_auc", None, None)[0]
    found, why = promotion(cfg, {"val_f1": 0.8}, "val_f1", 0.9, champion(1.0))
    assert not found and "no interval" in why  # the point comparison, said so


@pytest.mark.parametrize(("head", "spread"), [("gap_dropout", True), ("logistic", False)])
def test_seeds_give_a_keras_head_a_spread_and_a_logistic_one_none(head, spread):
    """Three real head fits on the same vectors: a Keras-trained head lands differently per seed, scikit-learn's does not."""
    cfg = config.compose([f"head={head}", "train.seeds=3", "train.epochs=3"])
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(100), np.ones(100)].astype("float32")
    x = (rng.normal(0, 1, (200, 16)) + y[:, None]).astype("float32")
    validation = (x[::2], y[::2])
    from pipeline.heads import fit_known_head

    first = fit_known_head(cfg, x, y, validation, verbose=0)[1]
    found = seed_spread(cfg, x, y, validation, first)
    assert found["seeds"] == 3 and 0 <= found["seeds_val_accuracy_mean"] <= 1
    assert (found["seeds_val_loss_std"] > 1e-6) == spread, found
