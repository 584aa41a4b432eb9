"""embed.engine=spark: splits.csv + the split's image files (Spark's binaryFile) + a frozen extractor -> Embeddings, the images decoded and embedded on Spark's executors.

The driver only ships the extractor (OpenVINO IR, or a .keras file with embed.runtime=keras) and
gathers the maps the executors computed; the cache it returns is the local engine's, so
train and evaluate do not know which engine ran. Executors import this module to run
`embed_partition`: its top imports nothing heavier than NumPy, pandas and Pillow.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import UserError
from pipeline.forward import compile_ir, compiled_forward, keras_forward
from pipeline.served.images import load_image
from pipeline.served.openvino_runtime import export

PANDAS_WARNING = "PySpark does not yet fully support pandas"  # as in serve/batch.py: harmless on this path
MAPS_SCHEMA = "split string, position long, features binary"  # float32 bytes of one image's feature map
# Images per Spark partition: what the driver receives at a time (MobileNetV2's maps at 224 px: 16 MB).
# At 200 a partition (50 MB) its result was once lost from the driver's block manager (TaskResultLost).
IMAGES_PER_PARTITION = 64


class SparkEngineError(UserError, RuntimeError):
    """Spark is missing, cannot start, or cannot read the images; the message says what to do."""


def spark_session(master: str, images_per_batch: int):
    """A Spark session whose Python workers run this interpreter; one Arrow batch is one forward pass."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONWARNINGS", f"ignore:{PANDAS_WARNING}:FutureWarning")
    warnings.filterwarnings("ignore", PANDAS_WARNING, FutureWarning)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local Spark listens on loopback only
    try:
        from pyspark.errors import PySparkRuntimeError
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkEngineError("embed.engine=spark needs PySpark: `pip install -r requirements-spark.txt`, or set embed.engine=local") from None
    builder = SparkSession.builder.appName("airplane-automobile embed").master(master)
    try:
        spark = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", images_per_batch).getOrCreate()
    except PySparkRuntimeError as err:  # no Java, most often
        raise SparkEngineError(
            f"embed.engine=spark could not start Spark at {master} ({str(err).splitlines()[0]}): it needs Java 17 "
            "(Debian: apt-get install openjdk-17-jre-headless), or set embed.engine=local"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_path(path: str) -> str:
    """A splits.csv path as binaryFile's `path` column spells it: local paths become file: URIs."""
    return path if "://" in path else f"file:{os.path.abspath(path)}"


def literal(path: str) -> str:
    """A path for DataFrameReader.load, which reads its paths as globs: "a[1].jpg" is one file here."""
    return re.sub(r"([\[\]{}*?,\\])", r"\\\1", path)


def ship_extractor(spark, extractor, runtime: str, folder: Path) -> str:
    """Write the extractor where every executor can fetch it (SparkContext.addFile) -> its file name."""
    if runtime == "openvino":
        ir = export(extractor, folder)
        spark.sparkContext.addFile(str(ir.with_suffix(".bin")))  # beside the .xml on every executor
        spark.sparkContext.addFile(str(ir))
        return ir.name
    saved = folder / "extractor.keras"
    extractor.save(saved)
    spark.sparkContext.addFile(str(saved))
    return saved.name


@functools.cache  # once per Python worker: Spark reuses workers across tasks
def executor_forward(file_name: str, runtime: str, precision: str, threads: int):
    from pyspark import SparkFiles

    path = SparkFiles.get(file_name)
    if runtime == "openvino":
        import openvino

        return compiled_forward(compile_ir(openvino.Core(), path, precision, threads))
    import keras

    from pipeline.served import keras_runtime  # noqa: F401  (registers the preprocessing layer the file names)

    return keras_forward(keras.saving.load_model(path))


def embed_partition(
    batches: Iterator[pd.DataFrame], file_name: str, runtime: str, precision: str, threads: int, size: int, max_pixels: int,
    view_size: int | None,
) -> Iterator[pd.DataFrame]:
    """On an executor: Arrow batches of (split, position, content) -> (split, position, features)."""
    forward = executor_forward(file_name, runtime, precision, threads)
    for batch in batches:
        if batch.empty:
            continue
        images = np.stack([load_image(bytes(content), size, max_pixels, view_size) for content in batch.content])
        maps = forward(images).astype(np.float32, copy=False)  # both runtimes give float32 already
        yield pd.DataFrame({"split": batch.split.to_numpy(), "position": batch.position.to_numpy(), "features": [m.tobytes() for m in maps]})


def split_index(splits: pd.DataFrame, names) -> pd.DataFrame:
    """(path as Spark spells it, split, position within the split in splits.csv order)."""
    rows = splits[splits.split.isin(names)]
    return pd.DataFrame({"path": rows.path.map(spark_path), "split": rows.split, "position": rows.groupby("split").cumcount()})


def embed_splits_on_spark(cfg, splits: pd.DataFrame, extractor):
    """The local engine's embed_splits, with the decoding and the backbone on Spark's executors."""
    from pyspark.errors import AnalysisException

    # Here, not at the top: the executors import this module and need none of the training code.
    from pipeline.embeddings import SPLITS, Embeddings
    from pipeline.features import built_weights, source_resolution, split_labels, view_size

    source_size = source_resolution(splits, cfg)
    index = split_index(splits, SPLITS)
    map_shape = tuple(extractor.output_shape[1:])
    features = {name: np.empty(((index.split == name).sum(), *map_shape), np.float32) for name in SPLITS}
    spark = spark_session(cfg.embed.spark_master, cfg.train.extract_batch_size)
    try:
        with tempfile.TemporaryDirectory(prefix="embed-spark-") as folder:
            file_name = ship_extractor(spark, extractor, cfg.embed.runtime, Path(folder))
            files = spark.read.format("binaryFile").load([literal(path) for path in sorted(set(index.path))]).select("path", "content")
            work = functools.partial(
                embed_partition, file_name=file_name, runtime=cfg.embed.runtime, precision=cfg.backbone.precision,
                threads=int(spark.conf.get("spark.task.cpus", "1")), size=cfg.backbone.input_size,
                max_pixels=cfg.data.max_pixels, view_size=view_size(cfg, source_size),
            )
            partitions = max(spark.sparkContext.defaultParallelism, -(-len(index) // IMAGES_PER_PARTITION))
            maps = files.join(spark.createDataFrame(index), "path").repartition(partitions).mapInPandas(work, MAPS_SCHEMA)
            gather(maps, features)
    except AnalysisException as err:  # a file splits.csv lists is gone, or an executor cannot see it
        raise SparkEngineError(
            f"embed on Spark could not read the split's images: {str(err).splitlines()[0]}. "
            "Every executor must see paths.data at the same path; after changing the data, `dvc repro` lists it again"
        ) from None
    finally:
        spark.stop()
    labels = {name: split_labels(splits, name, cfg) for name in SPLITS}
    return Embeddings(features, labels, 0, source_size, built_weights(cfg))


def gather(maps, features: dict[str, np.ndarray]) -> None:
    """The executors' maps -> features[split][position], in place.

    All partitions are computed at once, kept on the executors' disks, then streamed to the driver a
    partition at a time: the driver holds the maps, never a collected copy of them (toLocalIterator
    alone would compute the partitions one after the other).
    """
    from pyspark import StorageLevel

    maps = maps.persist(StorageLevel.DISK_ONLY)
    try:
        maps.count()
        seen = {name: np.zeros(len(split), dtype=bool) for name, split in features.items()}
        for row in maps.toLocalIterator():
            features[row.split][row.position] = np.frombuffer(row.features, np.float32).reshape(features[row.split].shape[1:])
            seen[row.split][row.position] = True
    finally:
        maps.unpersist()
    for name, filled in seen.items():  # every position once: a count alone would miss one image twice, another never
        if not filled.all():
            raise RuntimeError(f"embed on Spark: no feature maps came back for {(~filled).sum()} of the {len(filled)} images of split {name}")
