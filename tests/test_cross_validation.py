"""Small data: the cross-validated figures and the champion's choice on them, with the real config and real heads."""

import numpy as np
import pytest

from pipeline import config
from pipeline.choice import choose
from pipeline.cross_validation import corrected_interval, cross_validate, is_small
from pipeline.embeddings import Embeddings
from pipeline.io import write_json
from pipeline.weights import WeightsSource


def test_corrected_interval_is_wider_than_the_plain_one_and_holds_the_mean():
    scores = np.array([0.8, 0.9, 0.85, 0.95, 0.75, 0.9, 0.85, 0.8, 0.9, 0.85])
    mean, low, high = corrected_interval(scores, held_out_share=0.2, photos=1000)
    assert mean == pytest.approx(scores.mean())
    assert low < mean < high <= 1
    plain = 2.262 * scores.std(ddof=1) / np.sqrt(len(scores))  # t(0.975, 9): folds taken as independent
    assert (high - low) / 2 > 1.5 * plain  # the folds share training images: the honest interval is wider


def test_corrected_interval_stays_within_0_and_1():
    assert corrected_interval(np.array([1.0, 0.9, 1.0, 0.7, 1.0]), 0.2, photos=50)[2] == 1.0


def test_perfect_folds_on_few_photos_still_leave_doubt():
    """Every fold at 1.0 has no spread, but 50 photos cannot show a perfect model (Wilson: 0.93)."""
    mean, low, high = corrected_interval(np.ones(15), 0.2, photos=50)
    assert mean == high == 1.0 and 0.9 < low < 0.95


def metrics(tmp_path, backbone: str, **values) -> None:
    write_json(tmp_path / f"{backbone}.json", {"latency_ms_per_image": 10.0, "model_size_mb": 10.0, "val_roc_auc": 0.9, **values})


def small_data_config(tmp_path):
    return config.compose([f"paths.metrics={tmp_path}", "compare=[mobilenet_v2,vgg16]"])


def test_within_noise_the_cheaper_backbone_is_the_champion(tmp_path):
    metrics(tmp_path, "mobilenet_v2", cv_roc_auc=0.95, cv_roc_auc_low=0.90, cv_roc_auc_high=1.0, cv_images=79, latency_ms_per_image=20.0)
    metrics(tmp_path, "vgg16", cv_roc_auc=0.93, cv_roc_auc_low=0.85, cv_roc_auc_high=0.99, cv_images=79, latency_ms_per_image=5.0)
    choice = choose(small_data_config(tmp_path))
    assert (choice.backbone, choice.metric) == ("vgg16", "cv_roc_auc")
    assert "within noise" in choice.reason and "cheaper" in choice.reason and "79 photos" in choice.reason


def test_beyond_noise_the_better_backbone_is_the_champion(tmp_path):
    metrics(tmp_path, "mobilenet_v2", cv_roc_auc=0.97, cv_roc_auc_low=0.95, cv_roc_auc_high=0.99, cv_images=79, latency_ms_per_image=20.0)
    metrics(tmp_path, "vgg16", cv_roc_auc=0.80, cv_roc_auc_low=0.70, cv_roc_auc_high=0.90, cv_images=79, latency_ms_per_image=5.0)
    choice = choose(small_data_config(tmp_path))
    assert choice.backbone == "mobilenet_v2"
    assert "no other backbone within it" in choice.reason


def test_without_cross_validation_the_validation_metric_chooses(tmp_path):
    metrics(tmp_path, "mobilenet_v2", val_roc_auc=0.91, latency_ms_per_image=20.0)
    metrics(tmp_path, "vgg16", val_roc_auc=0.90, latency_ms_per_image=5.0)
    choice = choose(small_data_config(tmp_path))
    assert (choice.backbone, choice.metric) == ("mobilenet_v2", "val_roc_auc")


def tiny_embeddings(per_class: int, seed: int = 0) -> Embeddings:
    """Feature maps of three separable clusters (airplane, automobile, other), 2x2 maps of 8 channels."""
    rng = np.random.default_rng(seed)

    def maps(centre: float, n: int) -> np.ndarray:
        return (rng.normal(0, 1, (n, 2, 2, 8)) + centre * np.eye(8)[int(centre) % 8]).astype("float32")

    features, labels = {}, {}
    for split, n in (("train", per_class), ("val", per_class // 3), ("test", per_class // 3)):
        features[split] = np.concatenate([maps(3, n), maps(6, n)])
        labels[split] = np.r_[np.zeros(n), np.ones(n)].astype("float32")
        features[f"other_{split}"] = maps(9, n)
        labels[f"other_{split}"] = np.zeros(n, "float32")
    return Embeddings(features, labels, views=0, source_size=None, weights=WeightsSource("random"))


def test_cross_validation_refits_the_real_heads_and_reports_intervals():
    cfg = config.compose(["cross_validation.folds=3", "cross_validation.repeats=1", "train.epochs=10", "train.batch_size=8", "train.learning_rate=0.05"])
    embeddings = tiny_embeddings(per_class=24)
    assert is_small(embeddings, cfg)
    found = cross_validate(cfg, embeddings)
    assert found["cv_folds"] == 3 and found["cv_images"] == 3 * (24 + 8)
    for name in ("accuracy", "roc_auc", "neither_auroc_other_probability", "neither_auroc_embedding_distance"):
        assert found[f"cv_{name}_low"] <= found[f"cv_{name}"] <= found[f"cv_{name}_high"], name
    assert found["cv_accuracy"] > 0.8 and found["cv_roc_auc"] > 0.9  # separable clusters: the heads learn them
    assert cross_validate(cfg, embeddings) == found  # seeded per fold: `dvc repro` gets the same figures again
    assert not is_small(embeddings, config.compose(["cross_validation.max_images=50"]))


def test_saved_embeddings_load_memory_mapped_with_their_channel_means(tmp_path):
    """The embed stage's hand-off: maps come back memory-mapped (a head that averages never reads
    them), their channel means come from the saved averages, and both match what was saved."""
    embeddings = tiny_embeddings(per_class=6)
    embeddings.save(tmp_path)
    loaded = Embeddings.load(tmp_path)
    assert isinstance(loaded.features["train"], np.memmap) and loaded.features["train"].dtype == np.float16
    assert set(loaded.features) == set(embeddings.features) and set(loaded.averages) == set(embeddings.features)
    np.testing.assert_allclose(loaded.pooled("val", "avg"), embeddings.features["val"].mean(axis=(1, 2)), atol=2e-3)
    np.testing.assert_allclose(loaded.pooled("val", "flatten"), embeddings.features["val"].reshape(len(embeddings.features["val"]), -1), atol=1e-2)
