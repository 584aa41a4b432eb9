"""Stages ingest and split on a small generated data folder."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import encode
from PIL import Image

from pipeline import config
from pipeline.stages import ingest, split

CLASSES = ("airplane", "automobile", "other")


def make_data(root: Path, per_class: int = 30) -> None:
    for c, label in enumerate(CLASSES):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = Image.new("RGB", (16, 16), (c * 100, i * 8 % 256, 7 * i % 256))
            (root / label / f"{label}_{i:03}.png").write_bytes(encode(image, "PNG"))


def compose_in(tmp_path, *overrides):
    """The real config with every path moved under tmp_path."""
    paths = [f"paths.{key}={tmp_path / value}" for key, value in config.compose().paths.items()]
    return config.compose([*paths, *overrides])


@pytest.fixture
def cfg(tmp_path):
    make_data(tmp_path / "data")
    return compose_in(tmp_path)


def test_ingest_reports_and_skips_bad_files_and_duplicates(tmp_path, bad_images):
    make_data(tmp_path / "data")
    cfg = compose_in(tmp_path, "data.max_pixels=1000000")
    airplanes = Path(cfg.paths.data) / "airplane"
    for name, data in bad_images.items():
        (airplanes / f"bad {name}.jpg").write_bytes(data)
    (airplanes / "copy.png").write_bytes((airplanes / "airplane_000.png").read_bytes())
    report = ingest.run(cfg)
    manifest = pd.read_csv(cfg.paths.manifest)
    assert report["images"] == {"airplane": 30, "automobile": 30, "other": 30}
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped_files"]}
    assert reasons["bad empty.jpg"] == "empty file"
    assert "not an image" in reasons["bad not an image.jpg"]
    assert "truncated" in reasons["bad truncated.jpg"]
    assert "over the limit of 1000000" in reasons["bad pixels.jpg"]
    assert reasons["copy.png"].startswith("duplicate of")
    assert manifest.sha256.is_unique
    assert list(manifest.columns) == ingest.MANIFEST_COLUMNS


def test_ingest_fails_clearly_on_a_class_without_images(cfg):
    for file in (Path(cfg.paths.data) / "automobile").iterdir():
        file.write_bytes(b"junk")
    with pytest.raises(ingest.DataError, match="no usable image.*automobile"):
        ingest.run(cfg)


def test_split_is_stratified_leak_free_and_deterministic(cfg):
    ingest.run(cfg)
    first = split.run(cfg)
    again = split.run(cfg)
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again.reset_index(drop=True))
    assert first.groupby("split").sha256.apply(set).pipe(lambda s: sum(map(len, s))) == first.sha256.nunique()
    known = first[first.split.isin(["train", "val", "test"])]
    assert set(known.label) == {"airplane", "automobile"}
    counts = known.groupby(["split", "label"]).size().unstack()
    assert ((counts.airplane - counts.automobile).abs() <= 1).all()  # each split holds both classes alike
    assert set(first[first.label == "other"].split) == {"other_train", "other_val", "other_test"}


def test_max_per_class_takes_a_seeded_subset(cfg, tmp_path):
    ingest.run(cfg)
    manifest = pd.read_csv(cfg.paths.manifest)
    small = compose_in(tmp_path, "data.max_per_class=10").data
    subset = split.assign_splits(manifest, small)
    assert subset.groupby("label").size().to_dict() == {"airplane": 10, "automobile": 10, "other": 10}
    pd.testing.assert_frame_equal(subset, split.assign_splits(manifest, small))
