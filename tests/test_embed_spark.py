"""embed.engine=spark against the local engine: the real ingest, split and embed entry points on a few
dozen team images, MobileNetV2 with its real weights, Spark on local[2]."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import config
from pipeline.embeddings import Embeddings
from pipeline.spark_embed import SparkEngineError
from pipeline.stages import embed, ingest, split

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("pyspark") is None or shutil.which("java") is None, reason="needs PySpark and Java"),
    pytest.mark.skipif(not (ROOT / "data/airplane").is_dir(), reason="needs the team data (dvc pull data.dvc)"),
]


def tiny(tmp_path: Path, *overrides: str):
    """The offline preset on 10 images per folder, every path under tmp_path."""
    paths = {"manifest": "manifest.csv", "ingest_report": "ingest.json", "splits": "splits.csv", "embeddings": "embeddings"}
    return config.compose([
        "preset=offline", "data.max_per_class=10", f"paths.data={ROOT / 'data'}", f"paths.weights={ROOT / 'weights'}",
        *(f"paths.{key}={tmp_path / name}" for key, name in paths.items()), *overrides,
    ])


def test_the_spark_engine_writes_the_local_engines_cache(tmp_path):
    cfg = tiny(tmp_path)
    ingest.run(cfg)
    split.run(cfg)
    local = Embeddings.load(embed.run(cfg))
    spark = Embeddings.load(embed.run(tiny(tmp_path, "embed.engine=spark", f"paths.embeddings={tmp_path / 'spark'}")))

    assert sorted(spark.features) == sorted(local.features) and len(local.features["train"]) > 0
    for name, maps in local.features.items():
        theirs = spark.features[name]
        assert theirs.shape == maps.shape, name
        # Both float16 on disk: ~3 significant digits, of the maps' own scale.
        np.testing.assert_allclose(theirs.astype("float32"), maps.astype("float32"), rtol=2e-3, atol=2e-3 * float(np.abs(maps).max()), err_msg=name)
        np.testing.assert_array_equal(spark.labels[name], local.labels[name])
    assert (spark.source_size, spark.weights, spark.views) == (local.source_size, local.weights, 0)


def test_a_missing_image_is_named_not_a_java_stack_trace(tmp_path):
    cfg = tiny(tmp_path, "embed.engine=spark")
    ingest.run(cfg)
    splits_file = Path(cfg.paths.splits)
    split.run(cfg)
    splits_file.write_text(splits_file.read_text().replace("/airplane/", "/no-such-folder/", 1))
    with pytest.raises(SparkEngineError, match="no-such-folder"):
        embed.run(cfg)
