"""Batch scoring on Spark: image files (a folder, or any path Spark reads) -> verdicts as Parquet, and a summary.

    python -m serve.batch ../shared/photos --output verdicts.parquet      # local Spark, the champion
    python -m serve.batch s3a://bucket/photos/ --output s3a://bucket/verdicts --master spark://host:7077

The champion (or --model-uri) is scored through `mlflow.pyfunc.spark_udf`, as MLflow's own image
example does, with `on_bad_image=report`: a file that is not a usable image gets no answer and its
reason in `refused`, and the job goes on. One row per file: path, answer, both probabilities, the
"neither" score and threshold, the model's name, version, weights and runtime, refused.
Needs requirements-spark.txt and Java 17.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

from pipeline.served.schema import IMAGE_COLUMN, ON_BAD_IMAGE, REFUSED
from serve import model_uri, use_tracking_store

# Images per call of the model in a Python worker (Arrow batch). Spark's default, 10,000, would
# decode 10,000 images into memory at once; this is the REST server's SERVE_MAX_IMAGES.
IMAGES_PER_CALL = 64
PANDAS_WARNING = "PySpark does not yet fully support pandas"


@dataclass
class Summary:
    """What a batch job did: files read, answers counted, and every refused file with its reason."""

    files: int
    answers: dict[str, int]
    refused: list[tuple[str, str]]  # (path, reason)

    def lines(self) -> list[str]:
        answered = ", ".join(f"{answer} {count}" for answer, count in sorted(self.answers.items()))
        lines = [f"{self.files} files: {answered or 'no answers'}; {len(self.refused)} refused"]
        lines += [f"  refused {path}: {reason}" for path, reason in self.refused]
        return lines


def spark_session(master: str):
    """A Spark session whose Python workers run this interpreter (where the model's requirements are)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # PySpark 4.3 warns on pandas 3 in every process; the path used here works (tests/test_batch_spark.py
    # checks its answers against the REST server's), see requirements-spark.txt.
    os.environ.setdefault("PYTHONWARNINGS", f"ignore:{PANDAS_WARNING}:FutureWarning")
    warnings.filterwarnings("ignore", PANDAS_WARNING, FutureWarning)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local Spark listens on loopback only
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("airplane-automobile batch scoring").master(master)
    builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", IMAGES_PER_CALL)
    builder = builder.config("spark.ui.showConsoleProgress", "true")  # the progress bar, on a terminal
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")  # Spark's warnings (a missing path's stack trace) drown the summary
    return spark


def local_model(uri: str, folder: str) -> str:
    """The model fetched into folder. Fetched from its `models:/` URI, it knows its registered name and
    version (MLflow writes them beside it), so every verdict names them; spark_udf ships the folder."""
    import mlflow
    from mlflow.exceptions import MlflowException

    model_dir = mlflow.artifacts.download_artifacts(uri, dst_path=folder)
    params = mlflow.models.get_model_info(model_dir).signature.params
    if params is None or ON_BAD_IMAGE not in [param.name for param in params.params]:
        # Such a model would fail the whole job on the first bad file.
        raise MlflowException(
            f"{uri} was registered before batch scoring (it has no {ON_BAD_IMAGE} parameter): "
            "pass a version registered since with --model-uri, or register one (`dvc repro`)"
        )
    return model_dir


def classifier(spark, model_dir: str):
    """The model as a Spark UDF: a struct column `image` of file bytes -> a struct of the verdict's columns.

    Each Python worker loads the model once per UDF (MLflow caches it), so jobs should share one.
    """
    import mlflow.pyfunc

    return mlflow.pyfunc.spark_udf(spark, model_dir, env_manager="local", params={ON_BAD_IMAGE: "report"})


def score(spark, paths: list[str], classify, output: str) -> None:
    """Every file under paths -> one verdict row per file (classify: a classifier()), written to output as Parquet."""
    from pyspark.sql import functions as F

    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(paths)
    cores = spark.sparkContext.defaultParallelism
    if files.rdd.getNumPartitions() < cores:  # few large partitions would leave cores idle; many need no shuffle
        files = files.repartition(cores)
    verdicts = files.select("path", classify(F.struct(F.col("content").alias(IMAGE_COLUMN))).alias("verdict")).select("path", "verdict.*")
    # The model says "" where it has nothing to say; the Parquet says null: a refused file has no
    # answer or scores (but still names the model that refused it), an answered one no reason.
    answered = F.col(REFUSED) == ""

    def nulled(name: str):
        if name == REFUSED:
            return F.when(~answered, F.col(name)).alias(name)
        return F.col(name) if name == "path" or name.startswith("model_") else F.when(answered, F.col(name)).alias(name)

    verdicts.select(*map(nulled, verdicts.columns)).write.mode("overwrite").parquet(output)


def summarise(spark, output: str) -> Summary:
    """Read back what the job wrote: counts per answer, refused files with their reasons."""
    verdicts = spark.read.parquet(output)
    answers = {row["answer"]: row["count"] for row in verdicts.where("answer IS NOT NULL").groupBy("answer").count().collect()}
    refused = [(row["path"], row[REFUSED]) for row in verdicts.where(f"{REFUSED} IS NOT NULL").orderBy("path").collect()]
    return Summary(files=verdicts.count(), answers=answers, refused=refused)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="folders or files of images, any path Spark reads (subfolders included)")
    parser.add_argument("--output", required=True, help="where the verdicts go, as Parquet (replaced if it exists)")
    parser.add_argument("--model-uri", default=None, help="default: MODEL_URI, else the champion")
    parser.add_argument("--master", default="local[*]", help="Spark master: local[*] (every core here), spark://host:7077, yarn, ...")
    args = parser.parse_args(argv)

    from mlflow.exceptions import MlflowException
    from pyspark.errors import AnalysisException

    store = use_tracking_store()
    uri = args.model_uri or model_uri()
    spark = spark_session(args.master)
    try:
        with tempfile.TemporaryDirectory(prefix="batch-model-") as folder:
            model_dir = local_model(uri, folder)
            print(f"scoring {', '.join(args.paths)} with {uri} (store {store}) on {args.master}", flush=True)
            score(spark, args.paths, classifier(spark, model_dir), args.output)
        summary = summarise(spark, args.output)
    except (MlflowException, AnalysisException, OSError) as err:  # a wrong path or model: say which, no traceback
        print(f"error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    print("\n".join(summary.lines()))
    print(f"verdicts: {args.output}")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run . -e batch`: the summary goes on its run
        log_summary(summary)
    return 0


def log_summary(summary: Summary) -> None:
    """On the run `mlflow run` started (it logged the entry point's parameters already)."""
    import mlflow

    with mlflow.start_run():  # resumes the run MLFLOW_RUN_ID names
        mlflow.log_metrics({"files": summary.files, "refused": len(summary.refused), **{f"answered_{a}": n for a, n in summary.answers.items()}})
        mlflow.log_text("\n".join(summary.lines()) + "\n", "batch_summary.txt")


if __name__ == "__main__":
    sys.exit(main())
